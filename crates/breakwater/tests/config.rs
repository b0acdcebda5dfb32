//! Every out-of-range setting gives a clear `ConfigError`; every edge of an allowed range builds.

use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::circuit_breaker::{Builder, ExponentialBackoff};

fn error(builder: Builder) -> (String, String, String) {
    let e = builder.build().expect_err("an out-of-range setting");
    assert_eq!(e.breaker(), "pg");
    assert_eq!(
        e.to_string(),
        format!(
            "circuit breaker `pg`: {} is {}, but it must be {}",
            e.setting(),
            e.value(),
            e.allowed()
        )
    );
    (e.setting().into(), e.value().into(), e.allowed().into())
}

fn pg() -> Builder {
    CircuitBreaker::builder("pg")
}

fn t(setting: &str, value: &str, allowed: &str) -> (String, String, String) {
    (setting.into(), value.into(), allowed.into())
}

const PERCENT: &str = "a percentage greater than 0 and at most 100";
const WAIT: &str = "a duration of at least 1 ms and at most 365 days";
const SECONDS: &str = "a whole number of seconds from 1 s to 3600 s";

#[test]
fn window_sizes_out_of_range_are_rejected() {
    let calls = "from 1 to 65535 calls";
    assert_eq!(error(pg().count_window(0)), t("count_window", "0", calls));
    assert_eq!(
        error(pg().count_window(65_536)),
        t("count_window", "65536", calls)
    );
    assert_eq!(
        error(pg().time_window(Duration::ZERO)),
        t("time_window", "0ns", SECONDS)
    );
    assert_eq!(
        error(pg().time_window(Duration::from_millis(1_500))),
        t("time_window", "1.5s", SECONDS)
    );
    assert_eq!(
        error(pg().time_window(Duration::from_secs(3_601))),
        t("time_window", "3601s", SECONDS)
    );
    assert_eq!(
        error(pg().minimum_calls(0)),
        t("minimum_calls", "0", "at least 1 call")
    );
}

#[test]
fn percentages_out_of_range_are_rejected() {
    for (value, text) in [
        (0.0, "0"),
        (-5.0, "-5"),
        (100.5, "100.5"),
        (150.0, "150"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
    ] {
        assert_eq!(
            error(pg().failure_rate_threshold(value)),
            t("failure_rate_threshold", text, PERCENT)
        );
        assert_eq!(
            error(pg().slow_call_rate_threshold(value)),
            t("slow_call_rate_threshold", text, PERCENT)
        );
    }
}

#[test]
fn durations_out_of_range_are_rejected() {
    assert_eq!(
        error(pg().slow_call_duration_threshold(Duration::ZERO)),
        t(
            "slow_call_duration_threshold",
            "0ns",
            "a duration greater than zero"
        )
    );
    for (wait, text) in [
        (Duration::ZERO, "0ns"),
        (Duration::from_micros(999), "999µs"),
        (Duration::from_secs(366 * 24 * 3600), "31622400s"),
    ] {
        assert_eq!(
            error(pg().wait_duration_in_open(wait)),
            t("wait_duration_in_open", text, WAIT)
        );
        assert_eq!(
            error(pg().max_wait_in_half_open(wait)),
            t("max_wait_in_half_open", text, WAIT)
        );
    }
    let calls = "from 1 to 1023 calls";
    assert_eq!(
        error(pg().permitted_calls_in_half_open(0)),
        t("permitted_calls_in_half_open", "0", calls)
    );
    assert_eq!(
        error(pg().permitted_calls_in_half_open(1_024)),
        t("permitted_calls_in_half_open", "1024", calls)
    );
}

#[test]
fn backoffs_out_of_range_are_rejected() {
    let secs = Duration::from_secs;
    let backoff = |initial, max| pg().wait_backoff_in_open(ExponentialBackoff::new(initial, max));
    assert_eq!(
        error(backoff(Duration::ZERO, secs(1))),
        t("wait_backoff_in_open.initial", "0ns", WAIT)
    );
    assert_eq!(
        error(backoff(secs(10), secs(5))),
        t(
            "wait_backoff_in_open.max",
            "5s",
            "a duration no shorter than the initial wait"
        )
    );
    let with = |b: ExponentialBackoff| pg().wait_backoff_in_open(b);
    let base = ExponentialBackoff::new(secs(1), secs(60));
    assert_eq!(
        error(with(base.multiplier(0.5))),
        t(
            "wait_backoff_in_open.multiplier",
            "0.5",
            "a finite number of at least 1"
        )
    );
    assert_eq!(
        error(with(base.multiplier(f64::NAN))),
        t(
            "wait_backoff_in_open.multiplier",
            "NaN",
            "a finite number of at least 1"
        )
    );
    for (jitter, text) in [(1.0, "1"), (-0.1, "-0.1")] {
        assert_eq!(
            error(with(base.jitter(jitter))),
            t(
                "wait_backoff_in_open.jitter",
                text,
                "a fraction from 0 (inclusive) to 1 (exclusive)"
            )
        );
    }
}

#[test]
fn an_empty_name_is_rejected() {
    let e = CircuitBreaker::builder("  ").build().unwrap_err();
    assert_eq!(
        (e.setting(), e.value(), e.allowed()),
        ("name", "\"  \"", "a non-empty name")
    );
}

#[test]
fn every_edge_of_the_allowed_ranges_builds() {
    let secs = Duration::from_secs;
    for builder in [
        pg().count_window(1).minimum_calls(1),
        pg().count_window(65_535).minimum_calls(u32::MAX),
        pg().time_window(secs(1)),
        pg().time_window(secs(3_600)),
        pg().failure_rate_threshold(100.0)
            .slow_call_rate_threshold(0.001),
        pg().slow_call_duration_threshold(Duration::from_nanos(1)),
        pg().wait_duration_in_open(Duration::from_millis(1))
            .max_wait_in_half_open(secs(365 * 24 * 3600)),
        pg().permitted_calls_in_half_open(1),
        pg().permitted_calls_in_half_open(1_023),
        pg().wait_backoff_in_open(
            ExponentialBackoff::new(Duration::from_millis(1), Duration::from_millis(1))
                .multiplier(1.0)
                .jitter(0.999),
        ),
    ] {
        let description = format!("{builder:?}");
        builder
            .build()
            .unwrap_or_else(|e| panic!("{description}: {e}"));
    }
}

#[test]
fn the_first_bad_setting_is_named_and_nothing_panics() {
    let e = pg()
        .count_window(0)
        .failure_rate_threshold(500.0)
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "count_window");
    // The last window setting wins: a time window replaces a bad count window.
    assert!(
        pg().count_window(0)
            .time_window(Duration::from_secs(10))
            .build()
            .is_ok()
    );
}
