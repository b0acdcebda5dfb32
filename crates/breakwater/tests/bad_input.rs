//! Bad input everywhere: every public constructor and loader either accepts a value or returns
//! an error that names the setting, the value and what is allowed; none panics. Whatever is
//! accepted is then used to its limits (a breaker driven through every state with its clock
//! moved by extreme amounts, a timeout of any length, chaos at any accepted rate), and that
//! must not panic either.
//!
//! Random values come from proptest, with the edges always in the mix: zero, one, the largest
//! value, NaN, the infinities, negative numbers, `Duration::MAX`, sub-millisecond durations.
//! The configuration files get the same treatment key by key (and random text in the fuzz
//! targets, see TESTING.md).

use std::cell::Cell;
use std::time::Duration;

use breakwater::chaos::Chaos;
use breakwater::circuit_breaker::{Builder, ExponentialBackoff};
use breakwater::classify::Outcome;
use breakwater::classify::http::HttpClassifier;
use breakwater::clock::ManualClock;
use breakwater::timeout::RequestTimeout;
use breakwater::{CircuitBreaker, CircuitState, Registry, TimeoutLayer};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tower::{Layer, Service, ServiceExt};

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(100.0),
        Just(100.000_000_1),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        -1e3..1e3f64,
        0.0..=1.0f64,
        any::<f64>(),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_micros(999)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(365 * 24 * 3600)),
        Just(Duration::from_secs(365 * 24 * 3600) + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX / 2)),
        Just(Duration::MAX),
        (0u64..100_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(1_023),
        Just(1_024),
        Just(65_535),
        Just(65_536),
        Just(u32::MAX),
        any::<u32>(),
        0u32..200,
    ]
}

#[derive(Debug, Clone)]
enum Window {
    Count(u32),
    Time(Duration),
}

#[derive(Debug, Clone)]
struct Settings {
    name: String,
    window: Option<Window>,
    minimum_calls: Option<u32>,
    failure_rate: Option<f64>,
    slow_duration: Option<Duration>,
    slow_rate: Option<f64>,
    wait: Option<Duration>,
    backoff: Option<(Duration, Duration, f64, f64)>,
    permits: Option<u32>,
    max_half_open: Option<Duration>,
    automatic: bool,
}

/// A setting left at its default, given a plausible value, or (one time in four) a hostile one:
/// enough of the combinations are valid for the accepted breakers to be driven too.
fn setting<T: std::fmt::Debug + Clone>(
    valid: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(0.4, prop_oneof![3 => valid, 1 => hostile])
}

fn settings() -> impl Strategy<Value = Settings> {
    let name = prop_oneof![
        8 => Just("payment".to_owned()),
        1 => Just(String::new()),
        1 => Just(" \t".to_owned()),
        1 => ".{0,12}",
    ];
    let window = setting(
        prop_oneof![
            (1u32..=100).prop_map(Window::Count),
            (1u64..=60).prop_map(|s| Window::Time(Duration::from_secs(s))),
        ],
        prop_oneof![
            count().prop_map(Window::Count),
            duration().prop_map(Window::Time),
        ],
    );
    let wait = || (1u64..=10_000).prop_map(Duration::from_millis);
    let backoff = setting(
        (wait(), wait(), 1.0..4.0f64, 0.0..0.9f64)
            .prop_map(|(a, b, m, j)| (a.min(b), a.max(b), m, j)),
        (duration(), duration(), float(), float()),
    );
    (
        (
            name,
            window,
            setting(1u32..=100, count()),
            setting(1.0..=100.0f64, float()),
            setting(wait(), duration()),
            setting(1.0..=100.0f64, float()),
        ),
        (
            setting(wait(), duration()),
            backoff,
            setting(1u32..=10, count()),
            setting(wait(), duration()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (name, window, minimum_calls, failure_rate, slow_duration, slow_rate),
                (wait, backoff, permits, max_half_open, automatic),
            )| Settings {
                name,
                window,
                minimum_calls,
                failure_rate,
                slow_duration,
                slow_rate,
                wait,
                backoff,
                permits,
                max_half_open,
                automatic,
            },
        )
}

/// `b` with every setting `s` has.
fn configure(mut b: Builder, s: &Settings) -> Builder {
    match s.window {
        Some(Window::Count(n)) => b = b.count_window(n),
        Some(Window::Time(span)) => b = b.time_window(span),
        None => {}
    }
    if let Some(n) = s.minimum_calls {
        b = b.minimum_calls(n);
    }
    if let Some(rate) = s.failure_rate {
        b = b.failure_rate_threshold(rate);
    }
    if let Some(d) = s.slow_duration {
        b = b.slow_call_duration_threshold(d);
    }
    if let Some(rate) = s.slow_rate {
        b = b.slow_call_rate_threshold(rate);
    }
    if let Some(wait) = s.wait {
        b = b.wait_duration_in_open(wait);
    }
    if let Some((initial, max, multiplier, jitter)) = s.backoff {
        b = b.wait_backoff_in_open(
            ExponentialBackoff::new(initial, max)
                .multiplier(multiplier)
                .jitter(jitter),
        );
    }
    if let Some(n) = s.permits {
        b = b.permitted_calls_in_half_open(n);
    }
    if let Some(d) = s.max_half_open {
        b = b.max_wait_in_half_open(d);
    }
    b.automatic_transition_from_open_to_half_open(s.automatic)
}

/// An error must say which setting, which value, and what is allowed.
fn assert_clear(error: &breakwater::ConfigError) {
    let message = error.to_string();
    assert!(!error.setting().is_empty(), "{message}");
    assert!(!error.allowed().is_empty(), "{message}");
    assert!(message.contains(error.setting()), "{message}");
    assert!(message.contains(error.value()), "{message}");
    assert!(message.contains(error.allowed()), "{message}");
}

/// Uses an accepted breaker to its limits: fails it open, waits (by extreme amounts too),
/// probes, every manual state, metrics all along.
fn drive(breaker: &CircuitBreaker, clock: &ManualClock, step: Duration) {
    for round in 0..3 {
        for i in 0..150 {
            if let Ok(permit) = breaker.try_acquire() {
                permit.record(match i % 4 {
                    0 => Outcome::Success,
                    1 => Outcome::Ignored,
                    2 => Outcome::FailureFor(step),
                    _ => Outcome::Failure,
                });
            }
        }
        let _ = breaker.metrics();
        clock.advance(if round == 0 { step } else { Duration::MAX });
        let _ = breaker.try_acquire().map(|p| p.record(Outcome::Success));
        let _ = breaker.metrics();
    }
    for state in [
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
        CircuitState::Closed,
    ] {
        breaker.transition_to(state);
        let _ = breaker.try_acquire().map(|p| p.record(Outcome::Failure));
        let _ = breaker.metrics();
    }
    breaker.reset();
}

/// One breaker setting and the edges of its use: returns whether the settings were accepted.
fn one_breaker(s: &Settings, step: Duration, keys: usize, idle: Duration) -> bool {
    let clock = ManualClock::new();
    let builder = || {
        configure(
            CircuitBreaker::builder(s.name.clone()).clock(clock.clone()),
            s,
        )
    };
    // The same settings for a keyed layer, with its own two.
    match builder().keyed().max_keys(keys).idle_timeout(idle).build() {
        Ok(layer) => drop(layer),
        Err(error) => assert_clear(&error),
    }
    // And for a reconfiguration of a breaker that exists.
    let existing = CircuitBreaker::builder("existing")
        .clock(clock.clone())
        .build()
        .unwrap();
    match existing.reconfigure(|b| configure(b, s)) {
        Ok(()) => drive(&existing, &clock, step),
        Err(error) => assert_clear(&error),
    }
    match builder().build() {
        Ok(breaker) => {
            drive(&breaker, &clock, step);
            true
        }
        Err(error) => {
            assert_clear(&error);
            false
        }
    }
}

#[test]
fn every_breaker_setting_is_accepted_or_refused_clearly() {
    let config = ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let keys = prop_oneof![
        Just(0usize),
        Just(1),
        Just(65_536),
        Just(65_537),
        1usize..100,
        any::<usize>()
    ];
    let (accepted, refused) = (Cell::new(0), Cell::new(0));
    proptest::test_runner::TestRunner::new(config)
        .run(
            &(settings(), duration(), keys, duration()),
            |(s, step, keys, idle)| {
                let tally = if one_breaker(&s, step, keys, idle) {
                    &accepted
                } else {
                    &refused
                };
                tally.set(tally.get() + 1);
                Ok(())
            },
        )
        .unwrap();
    // Both sides were well exercised.
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted > 500 && refused > 500,
        "accepted {accepted}, refused {refused}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_chaos_setting_is_accepted_or_refused_clearly(
        failure in float(),
        loss in float(),
        latency_rate in float(),
        min in duration(),
        max in duration(),
        seed in any::<u64>(),
    ) {
        let chaos = Chaos::builder()
            .seed(seed)
            .failure_rate(failure)
            .response_loss_rate(loss)
            .latency_rate(latency_rate)
            .latency(min..=max);
        match chaos.build() {
            Ok(chaos) => {
                let _ = chaos.reconfigure(&Chaos::builder().failure_rate(failure));
                let _ = chaos.settings();
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.contains(error.setting()), "{}", message);
                prop_assert!(message.contains(error.value()), "{}", message);
                prop_assert!(message.contains(error.allowed()), "{}", message);
            }
        }
    }

    #[test]
    fn a_retry_after_of_any_text_and_any_cap_is_a_bounded_wait(
        cap in duration(),
        value in prop_oneof![
            Just("18446744073709551616".to_owned()),
            Just("99999999999999999999999".to_owned()),
            Just("-1".to_owned()),
            Just("0".to_owned()),
            Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
            "[0-9]{1,25}",
            "[ -~]{0,30}",
        ],
        status in prop_oneof![Just(429u16), Just(503), 100u16..=999],
    ) {
        let classifier = HttpClassifier::new().retry_after(cap);
        let mut headers = http::HeaderMap::new();
        let sent = http::HeaderValue::from_str(&value).is_ok();
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(http::header::RETRY_AFTER, value);
        }
        let status = http::StatusCode::from_u16(status).unwrap();
        // What RFC 9110's delta-seconds form asks for, capped; a date, garbage or zero is no
        // wait of its own, and the status alone decides.
        let digits = value.trim();
        let asks = sent
            && matches!(status.as_u16(), 429 | 503)
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.bytes().any(|b| b != b'0');
        let expected = if asks {
            let seconds = digits.parse::<u64>().unwrap_or(u64::MAX);
            Outcome::FailureFor(Duration::from_secs(seconds).min(cap))
        } else {
            HttpClassifier::new().classify_status(status)
        };
        let outcome = classifier.classify_response(status, &headers);
        prop_assert_eq!(outcome, expected);
        if let Outcome::FailureFor(wait) = outcome {
            // And a breaker takes it, whatever its length.
            let breaker = CircuitBreaker::builder("retry-after").build().unwrap();
            breaker.try_acquire().unwrap().record(Outcome::FailureFor(wait));
            prop_assert_eq!(breaker.state(), CircuitState::Open);
        }
    }
}

/// A timeout of any length, the request's own override of any length, over a call that
/// answers after a while: an answer or `Elapsed`, never a panic (a deadline past the end of
/// time is no deadline).
#[tokio::test(start_paused = true)]
async fn a_timeout_of_any_length_times_out_or_answers() {
    let lengths = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(5),
        Duration::from_secs(365 * 24 * 3600),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ];
    for timeout in lengths {
        for own in std::iter::once(None).chain(lengths.map(Some)) {
            let slow = tower::service_fn(|_: http::Request<()>| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            });
            let mut request = http::Request::new(());
            if let Some(own) = own {
                request.extensions_mut().insert(RequestTimeout(own));
            }
            let effective = own.unwrap_or(timeout);
            let answered = TimeoutLayer::new(timeout)
                .covering_body()
                .layer(slow)
                .ready()
                .await
                .unwrap()
                .call(request)
                .await
                .is_ok();
            assert_eq!(
                answered,
                effective > Duration::from_millis(10),
                "timeout {timeout:?}, the request's own {own:?}"
            );
        }
    }
}

/// Every setting key of the configuration files, in YAML and TOML, with hostile values:
/// accepted and usable, or refused with the key named.
#[test]
fn every_configuration_key_takes_hostile_values_without_a_panic() {
    const KEYS: [&str; 20] = [
        "sliding-window-type",
        "sliding-window-size",
        "minimum-number-of-calls",
        "failure-rate-threshold",
        "slow-call-duration-threshold",
        "slow-call-rate-threshold",
        "wait-duration-in-open-state",
        "permitted-number-of-calls-in-half-open-state",
        "max-wait-duration-in-half-open-state",
        "automatic-transition-from-open-to-half-open-enabled",
        "enable-exponential-backoff",
        "exponential-backoff-multiplier",
        "exponential-max-wait-duration-in-open-state",
        "enable-randomized-wait",
        "randomized-wait-factor",
        "base-config",
        "ignore-exceptions",
        "record-exceptions",
        "event-consumer-buffer-size",
        "register-health-indicator",
    ];
    const CHAOS_KEYS: [&str; 7] = [
        "enabled",
        "seed",
        "failure-rate",
        "response-loss-rate",
        "latency-rate",
        "latency-min",
        "latency-max",
    ];
    const VALUES: [&str; 16] = [
        "-1",
        "0",
        "1e400",
        "-1e400",
        ".nan",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "\"PT99999999999999999H\"",
        "\"999999999999999999999ms\"",
        "\"-5s\"",
        "\"\"",
        "[]",
        "{}",
        "null",
        "\"TIME_BASED\"",
        "\"x\"",
    ];
    // resilience4j's other sections: (section, key).
    const LIMITER_KEYS: [(&str, &str); 13] = [
        ("timelimiter", "timeout-duration"),
        ("timelimiter", "cancel-running-future"),
        ("retry", "max-attempts"),
        ("retry", "wait-duration"),
        ("retry", "enable-exponential-backoff"),
        ("retry", "exponential-backoff-multiplier"),
        ("retry", "exponential-max-wait-duration"),
        ("retry", "retry-exceptions"),
        ("retry", "ignore-exceptions"),
        ("retry", "randomized-wait-factor"),
        ("retry", "base-config"),
        ("bulkhead", "max-concurrent-calls"),
        ("bulkhead", "max-wait-duration"),
    ];
    let mut refused = 0;
    let mut accepted = 0;
    // Each key with the YAML path of its section and the TOML table.
    let keys: Vec<(&str, String, String)> = KEYS
        .iter()
        .map(|k| {
            (
                *k,
                "resilience4j:\n  circuitbreaker".to_owned(),
                "circuitbreaker.instances.a".to_owned(),
            )
        })
        .chain(CHAOS_KEYS.iter().map(|k| {
            (
                *k,
                "breakwater:\n  chaos".to_owned(),
                "breakwater.chaos.instances.a".to_owned(),
            )
        }))
        .chain(LIMITER_KEYS.iter().map(|(section, k)| {
            (
                *k,
                format!("resilience4j:\n  {section}"),
                format!("{section}.instances.a"),
            )
        }))
        .collect();
    for value in VALUES {
        for (key, yaml_section, toml_section) in &keys {
            let (yaml, toml_value) = (value, value.replace(".nan", "nan").replace("null", "\"\""));
            let yaml_text =
                format!("{yaml_section}:\n    instances:\n      a:\n        {key}: {yaml}\n");
            let toml_text = format!("[{toml_section}]\n{key} = {toml_value}\n");
            for loaded in [
                Registry::from_yaml(&yaml_text),
                Registry::from_toml(&toml_text),
            ] {
                match loaded {
                    Ok(registry) => {
                        accepted += 1;
                        let clock = ManualClock::new();
                        let registry = registry.with_clock(clock.clone());
                        drive(
                            &registry.circuit_breaker("a"),
                            &clock,
                            Duration::from_secs(1),
                        );
                        let _ = registry.chaos("a");
                        let _ = registry.keyed_layer("a");
                        let _ = registry.timeout("a");
                        let _ = registry.timeout_layer("a");
                        if let Some(policy) = registry.retry_policy("a") {
                            for n in [0, 1, 2, 64, u32::MAX] {
                                let _ = policy.wait_before(n);
                            }
                        }
                        let _ = registry.bulkhead("a");
                        let _ = registry.stack("a");
                    }
                    Err(error) => {
                        refused += 1;
                        let message = error.to_string();
                        assert!(message.contains(key), "{key} = {value}: {message}");
                    }
                }
            }
        }
    }
    // Most of these values are wrong for most keys: a loader that accepted them all would be
    // reading nothing.
    assert!(refused > accepted, "refused {refused}, accepted {accepted}");
}

/// Nesting deeper than any configuration needs: a syntax error, not a stack overflow.
#[test]
fn deeply_nested_input_is_a_syntax_error() {
    for depth in [1_000, 100_000] {
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        let yaml = Registry::from_yaml(&format!("a: {open}{close}")).unwrap_err();
        assert!(
            yaml.to_string().starts_with("YAML syntax error at line 1"),
            "{yaml}"
        );
        let toml = Registry::from_toml(&format!("a = {open}{close}")).unwrap_err();
        assert!(
            toml.to_string().starts_with("TOML syntax error at line 1"),
            "{toml}"
        );
    }
}

/// Files that are not configurations: a clear error each, naming the path.
#[test]
fn a_path_that_is_no_configuration_file_is_refused_clearly() {
    let dir = std::env::temp_dir().join(format!("breakwater-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.yml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let unknown = dir.join("settings.ini");
    std::fs::write(&unknown, "a = 1").unwrap();
    let missing = dir.join("missing.yml");
    for path in [&binary, &unknown, &missing, &dir] {
        let error = Registry::from_path(path).unwrap_err();
        let message = error.to_string();
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(message.contains(&*name), "{path:?}: {message}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
