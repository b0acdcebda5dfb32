//! The registry: resilience4j's configuration files (YAML and TOML), names, inheritance, errors
//! that name the key, reloading, health.

mod support;

use std::time::Duration;

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::classify::http::HttpClassifier;
use breakwater::clock::ManualClock;
use breakwater::registry::{HealthStatus, LoadError};
use breakwater::{CircuitBreaker, CircuitState, Registry};
use support::{EventLog, call, err, ok};

const SEED_YAML: &str = include_str!("fixtures/application.yml");
const SEED_TOML: &str = include_str!("fixtures/breakers.toml");

fn seed(clock: &ManualClock) -> Registry {
    Registry::from_yaml(SEED_YAML)
        .unwrap()
        .with_clock(clock.clone())
}

/// What the seed asks of `beeceptor-payment`: a window of 10 calls, no rate before 10, open at
/// 50% failures or 50% calls over 5 s, 30 s open, then five probes.
fn behaves_as_the_seed_configures(registry: &Registry, clock: &ManualClock) {
    let pg = registry.circuit_breaker("beeceptor-payment");
    for _ in 0..5 {
        ok(&pg, clock);
    }
    for _ in 0..4 {
        err(&pg, clock);
    }
    assert_eq!(pg.state(), CircuitState::Closed);
    assert_eq!(
        pg.metrics().failure_rate,
        None,
        "9 calls: below the minimum"
    );
    err(&pg, clock);
    assert_eq!(pg.state(), CircuitState::Open);
    assert_eq!(pg.metrics().failure_rate, Some(50.0));

    clock.advance(Duration::from_millis(29_999));
    assert!(pg.try_acquire().is_err(), "still open before 30 s");
    clock.advance(Duration::from_millis(1));
    let probes: Vec<_> = (0..5).map(|_| pg.try_acquire().unwrap()).collect();
    assert_eq!(pg.state(), CircuitState::HalfOpen);
    assert!(pg.try_acquire().is_err(), "a sixth probe");
    for probe in probes {
        probe.record(Outcome::Success);
    }
    assert_eq!(pg.state(), CircuitState::Closed);

    // Slow calls: over 5 s (not at 5 s), failed or not.
    call(&pg, clock, Outcome::Success, Duration::from_millis(5_000));
    for _ in 0..5 {
        call(&pg, clock, Outcome::Success, Duration::from_millis(5_001));
    }
    assert_eq!(pg.metrics().slow_calls, 5);
    let log = EventLog::transitions(&pg);
    for _ in 0..3 {
        ok(&pg, clock);
    }
    assert_eq!(
        pg.state(),
        CircuitState::Closed,
        "9 calls: below the minimum"
    );
    ok(&pg, clock);
    assert_eq!(
        log.kinds(),
        [EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::SlowCallRate(50.0),
        }]
    );
    // Client errors are ignored, as `ignoreExceptions` says.
    assert_eq!(
        registry.classifier("beeceptor-payment"),
        HttpClassifier::new().ignore(400..=499)
    );
}

/// What `configs.default` gives a name the file does not list: a window of 10 (the minimum of
/// 100 calls capped at it), 50%, 10 s open.
fn others_get_the_default(registry: &Registry, clock: &ManualClock) {
    let other = registry.circuit_breaker("search");
    for _ in 0..9 {
        err(&other, clock);
    }
    assert_eq!(other.state(), CircuitState::Closed);
    err(&other, clock);
    assert_eq!(other.state(), CircuitState::Open);
    clock.advance(Duration::from_millis(9_999));
    assert!(other.try_acquire().is_err());
    clock.advance(Duration::from_millis(1));
    assert!(other.try_acquire().is_ok());
    assert_eq!(registry.classifier("search"), HttpClassifier::new());
}

#[test]
fn the_seed_yaml_loads_unchanged_and_its_instance_behaves_as_configured() {
    let clock = ManualClock::new();
    let registry = seed(&clock);
    behaves_as_the_seed_configures(&registry, &clock);
    others_get_the_default(&registry, &clock);
}

#[test]
fn the_same_configuration_in_toml_behaves_the_same() {
    let clock = ManualClock::new();
    let registry = Registry::from_toml(SEED_TOML)
        .unwrap()
        .with_clock(clock.clone());
    behaves_as_the_seed_configures(&registry, &clock);
    others_get_the_default(&registry, &clock);
}

#[test]
fn a_file_is_read_by_its_extension() {
    let dir = std::env::temp_dir().join(format!("breakwater-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("app.yml", SEED_YAML),
        ("app.YAML", SEED_YAML),
        ("app.toml", SEED_TOML),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let clock = ManualClock::new();
        let registry = Registry::from_path(&path)
            .unwrap()
            .with_clock(clock.clone());
        behaves_as_the_seed_configures(&registry, &clock);
    }
    let json = dir.join("app.json");
    std::fs::write(&json, "{}").unwrap();
    let error = Registry::from_path(&json).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot tell the format of {}: its name must end in .yml, .yaml or .toml",
            json.display()
        )
    );
    let missing = dir.join("missing.yml");
    let error = Registry::from_path(&missing).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_name_is_the_same_breaker_from_every_thread() {
    let registry = Registry::from_yaml(SEED_YAML).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| registry.circuit_breaker(&format!("downstream-{}", i % 10)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let seen: Vec<Vec<CircuitBreaker>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for breakers in &seen[1..] {
        assert_eq!(breakers, &seen[0]);
    }
    assert_eq!(registry.breakers().len(), 10);
    assert_eq!(registry.circuit_breaker("downstream-3"), seen[0][3]);
    assert_ne!(seen[0][3], seen[0][4]);
}

#[test]
fn keys_may_be_kebab_camel_or_snake_case_and_durations_take_several_forms() {
    let clock = ManualClock::new();
    for (key, wait) in [
        ("wait-duration-in-open-state", "30000"),
        ("waitDurationInOpenState", "30s"),
        ("wait_duration_in_open_state", "PT30S"),
        ("wait-duration-in-open-state", "'30000'"),
        ("WaitDurationInOpenState", "30000ms"),
    ] {
        let yaml = format!(
            "resilience4j.circuitbreaker:
  instances:
    pg:
      slidingWindowSize: 2
      minimum_number_of_calls: 2
      {key}: {wait}
"
        );
        let registry = Registry::from_yaml(&yaml)
            .unwrap_or_else(|e| panic!("{key}: {wait}: {e}"))
            .with_clock(clock.clone());
        let pg = registry.circuit_breaker("pg");
        err(&pg, &clock);
        err(&pg, &clock);
        assert_eq!(
            pg.metrics().retry_after,
            Some(Duration::from_secs(30)),
            "{key}: {wait}"
        );
    }
}

#[test]
fn a_time_window_and_the_backoff_settings_are_read() {
    let clock = ManualClock::new();
    let registry = Registry::from_yaml(
        "
resilience4j:
  circuitbreaker:
    instances:
      pg:
        sliding-window-type: TIME_BASED
        sliding-window-size: 5
        minimum-number-of-calls: 2
        wait-duration-in-open-state: 1s
        enable-exponential-backoff: true
        exponential-backoff-multiplier: 3
        exponential-max-wait-duration-in-open-state: 5s
        permitted-number-of-calls-in-half-open-state: 1
        max-wait-duration-in-half-open-state: 0
",
    )
    .unwrap()
    .with_clock(clock.clone());
    let pg = registry.circuit_breaker("pg");
    // A time window: calls older than 5 s leave it.
    err(&pg, &clock);
    clock.advance(Duration::from_secs(5));
    err(&pg, &clock);
    assert_eq!(pg.state(), CircuitState::Closed);
    err(&pg, &clock);
    assert_eq!(pg.state(), CircuitState::Open);
    // Waits of 1 s, 3 s, then 5 s (capped), as each probe fails.
    let mut waits = Vec::new();
    for _ in 0..3 {
        let wait = pg.metrics().retry_after.unwrap();
        waits.push(wait);
        clock.advance(wait);
        pg.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(
        waits,
        [
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(5)
        ]
    );
    // No limit in half-open (0): a probe may take as long as it likes.
    clock.advance(Duration::from_secs(5));
    let probe = pg.try_acquire().unwrap();
    clock.advance(Duration::from_secs(3_600));
    assert!(pg.try_acquire().is_err());
    assert_eq!(pg.state(), CircuitState::HalfOpen);
    probe.record(Outcome::Success);
    assert_eq!(pg.state(), CircuitState::Closed);
}

#[test]
fn record_exceptions_count_only_what_they_name_and_ignore_wins() {
    let registry = Registry::from_yaml(
        r"
resilience4j.circuitbreaker:
  configs:
    strict:
      record-exceptions:
        - java.util.concurrent.TimeoutException
        - org.springframework.web.client.HttpServerErrorException$ServiceUnavailable
        - java.net.ConnectException
  instances:
    pg:
      base-config: strict
      ignore-exceptions: java.net.ConnectException, HttpClientErrorException.NotFound
",
    )
    .unwrap();
    let expected = HttpClassifier::new()
        .success(400..=599)
        .failure(503)
        .ignore(404)
        .on_error(Outcome::Ignored)
        .on_timeout(Outcome::Failure);
    assert_eq!(registry.classifier("pg"), expected);
    assert_eq!(
        registry.classifier("other"),
        HttpClassifier::new(),
        "a name the file does not list: the default"
    );
}

#[test]
fn inheritance_follows_chains_and_the_default() {
    let registry = Registry::from_toml(
        r#"
[circuitbreaker.configs.default]
sliding-window-size = 4
minimum-number-of-calls = 4

[circuitbreaker.configs.lenient]
failure-rate-threshold = 100

[circuitbreaker.configs.patient]
base-config = "lenient"
wait-duration-in-open-state = "2m"

[circuitbreaker.instances.pg]
base-config = "patient"
"#,
    )
    .unwrap();
    let pg = registry.circuit_breaker("pg");
    for _ in 0..3 {
        pg.try_acquire().unwrap().record(Outcome::Failure);
    }
    pg.try_acquire().unwrap().record(Outcome::Success);
    // 75% < 100%: lenient's threshold, on default's window of 4.
    assert_eq!(pg.state(), CircuitState::Closed);
    assert_eq!(pg.metrics().buffered_calls, 4);
    for _ in 0..4 {
        pg.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(pg.state(), CircuitState::Open);
    let wait = pg.metrics().retry_after.unwrap();
    // Rounded up to the millisecond.
    assert!(
        wait > Duration::from_secs(119) && wait <= Duration::from_millis(120_001),
        "{wait:?}"
    );
}

#[track_caller]
/// What a strict load refuses (a plain load refuses the same, except what it can leave out
/// with a warning: see `java_names_are_warnings_unless_strict`).
fn refused(yaml: &str) -> LoadError {
    match Registry::from_yaml_strict(yaml) {
        Ok(registry) => panic!("accepted: {registry:?}"),
        Err(error) => error,
    }
}

#[test]
fn a_value_out_of_range_is_named_with_its_key_line_and_what_is_allowed() {
    let error = refused(
        "resilience4j:
  circuitbreaker:
    instances:
      pg:
        failure-rate-threshold: 150
",
    );
    assert_eq!(
        error.to_string(),
        "resilience4j.circuitbreaker.instances.pg.failure-rate-threshold (line 5): 150 is not \
         allowed: it must be a percentage greater than 0 and at most 100"
    );
    assert_eq!(error.line(), Some(5));
    assert_eq!(error.value(), Some("150"));

    // A value inherited from a shared config is blamed where it is written.
    let error = refused(
        "resilience4j.circuitbreaker:
  configs:
    default:
      sliding-window-size: 0
  instances:
    pg: {}
",
    );
    assert_eq!(
        error.to_string(),
        "resilience4j.circuitbreaker.configs.default.sliding-window-size (line 4): 0 is not \
         allowed: it must be from 1 to 65535 calls"
    );

    let error = Registry::from_toml(
        "[circuitbreaker.instances.pg]
failure-rate-threshold = 0
",
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circuitbreaker.instances.pg.failure-rate-threshold (line 2): 0 is not allowed: it \
         must be a percentage greater than 0 and at most 100"
    );
}

#[test]
fn an_unknown_key_or_exception_class_is_named_and_the_known_ones_listed() {
    let error = refused(
        "resilience4j:
  circuitbreaker:
    configs:
      default:
        sliding-windw-size: 10
",
    );
    assert_eq!(
        error.key_path(),
        Some("resilience4j.circuitbreaker.configs.default.sliding-windw-size")
    );
    assert!(
        error.to_string().starts_with(
            "resilience4j.circuitbreaker.configs.default.sliding-windw-size (line 5): unknown \
             setting; the settings are base-config, sliding-window-type, sliding-window-size,"
        ),
        "{error}"
    );

    let error = refused(
        "resilience4j.circuitbreaker:
  instances:
    pg:
      ignore-exceptions:
        - java.lang.String
        - com.example.PaymentDeclinedException
",
    );
    assert_eq!(
        error.key_path(),
        Some("resilience4j.circuitbreaker.instances.pg.ignore-exceptions[0]")
    );
    assert_eq!(error.line(), Some(5));
    assert!(
        error.to_string().contains(
            r#""java.lang.String" is not an exception class breakwater understands; it understands org.springframework.web.client.HttpClientErrorException,"#
        ),
        "{error}"
    );
}

#[test]
fn syntax_errors_give_the_line() {
    let error = refused(
        "resilience4j:
  circuitbreaker:
    instances:
      pg: [
",
    );
    assert!(
        error.to_string().starts_with("YAML syntax error at line "),
        "{error}"
    );
    assert!(error.line().is_some());
    assert_eq!(error.key_path(), None);
    let error = Registry::from_toml("[circuitbreaker.instances.pg\n").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("TOML syntax error at line 1: "),
        "{error}"
    );
}

#[test]
fn every_other_mistake_is_explained() {
    for (yaml, expected) in [
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      sliding-window-size: ten
",
            r#"resilience4j.circuitbreaker.instances.pg.sliding-window-size (line 4): "ten" is not allowed: it must be a whole number from 0 to 4294967295"#,
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      wait-duration-in-open-state: 1.5s
",
            r#"resilience4j.circuitbreaker.instances.pg.wait-duration-in-open-state (line 4): "1.5s" is not allowed: it must be a duration: whole milliseconds (`30000`), a whole number with a unit of ns, us, ms, s, m, h or d (`30s`), or ISO-8601 (`PT30S`)"#,
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      sliding-window-type: SLIDING
",
            r#"resilience4j.circuitbreaker.instances.pg.sliding-window-type (line 4): "SLIDING" is not allowed: it must be COUNT_BASED or TIME_BASED"#,
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      automatic-transition-from-open-to-half-open-enabled: yes please
",
            r#"resilience4j.circuitbreaker.instances.pg.automatic-transition-from-open-to-half-open-enabled (line 4): "yes please" is not allowed: it must be true or false"#,
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      base-config: shared
",
            r#"resilience4j.circuitbreaker.instances.pg.base-config (line 4): base-config "shared" names no config; the configs are: none"#,
        ),
        (
            "resilience4j.circuitbreaker:
  configs:
    a:
      base-config: b
    b:
      base-config: a
",
            "resilience4j.circuitbreaker.configs.b.base-config (line 6): base-config goes round \
             in a circle: a -> b -> a",
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      record-failure-predicate: com.example.Failed
",
            "resilience4j.circuitbreaker.instances.pg.record-failure-predicate (line 4): \
             \"com.example.Failed\" names Java code, which cannot run here: bind the name with \
             `Loader::bind`, or classify outcomes with `CircuitBreaker::layer_with`",
        ),
        (
            "resilience4j.circuitbreaker:
  instancess:
    pg: {}
",
            "resilience4j.circuitbreaker.instancess (line 3): unknown key; a resilience4j \
             section holds `configs` and `instances`",
        ),
        (
            "spring.application.name: payments
",
            "resilience4j.circuitbreaker: missing: the file has no `resilience4j.circuitbreaker` \
             (or `circuitbreaker`) section, no other resilience4j section breakwater reads, nor \
             a `breakwater` section",
        ),
        (
            "resilience4j.circuitbreaker.instances.pg.sliding-window-size: 5
",
            "resilience4j.circuitbreaker.instances.pg.sliding-window-size (line 1): write this \
             setting nested under `resilience4j.circuitbreaker`",
        ),
        (
            "resilience4j.circuitbreaker: {}
---
resilience4j:
  circuitbreaker: {}
",
            "resilience4j.circuitbreaker (line 4): a second circuitbreaker section (the first is \
             at line 1): Spring profiles are not supported, keep one section per file",
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      wait-duration-in-open-state: 0
",
            "resilience4j.circuitbreaker.instances.pg.wait-duration-in-open-state (line 4): 0 is \
             not allowed: it must be a duration of at least 1 ms and at most 365 days",
        ),
        (
            "resilience4j.circuitbreaker:
  instances:
    pg:
      enable-randomized-wait: true
      randomized-wait-factor: 1.5
",
            "resilience4j.circuitbreaker.instances.pg.randomized-wait-factor (line 5): 1.5 is not \
             allowed: it must be a fraction from 0 (inclusive) to 1 (exclusive)",
        ),
    ] {
        assert_eq!(refused(yaml).to_string(), expected, "for:\n{yaml}");
    }
}

#[test]
fn an_empty_section_is_fine_and_every_breaker_gets_the_defaults() {
    let registry = Registry::from_yaml("resilience4j:\n  circuitbreaker:\n").unwrap();
    let b = registry.circuit_breaker("anything");
    for _ in 0..99 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "breakwater's default minimum: 100"
    );
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn reloading_reconfigures_the_breakers_whose_configuration_changed() {
    let clock = ManualClock::new();
    let registry = seed(&clock);
    let pg = registry.circuit_breaker("beeceptor-payment");
    let search = registry.circuit_breaker("search");
    let log = EventLog::transitions(&pg);
    err(&pg, &clock);
    err(&search, &clock);

    let edited = SEED_YAML.replace("minimum-number-of-calls: 10", "minimum-number-of-calls: 2");
    let changed = Registry::from_yaml(&edited).unwrap();
    assert_eq!(registry.reload(&changed), ["beeceptor-payment"]);
    assert_eq!(log.kinds(), [EventKind::Reconfigured]);
    assert_eq!(pg.metrics().buffered_calls, 0, "a fresh window");
    assert_eq!(search.metrics().buffered_calls, 1, "untouched");
    // The same breaker, with the new minimum: two failures open it.
    assert_eq!(registry.circuit_breaker("beeceptor-payment"), pg);
    err(&pg, &clock);
    err(&pg, &clock);
    assert_eq!(pg.state(), CircuitState::Open);

    // Reloading the same file again changes nothing.
    assert!(registry.reload(&changed).is_empty());
    // A new default reaches the breakers that use it, made before or after.
    let edited = edited.replace(
        "sliding-window-size: 10\n        failure-rate-threshold: 50\n        wait-duration-in-open-state: 10000",
        "sliding-window-size: 3\n        failure-rate-threshold: 50\n        wait-duration-in-open-state: 10000",
    );
    assert_eq!(
        registry.reload(&Registry::from_yaml(&edited).unwrap()),
        ["search"]
    );
    let later = registry.circuit_breaker("later");
    for b in [&search, &later] {
        for _ in 0..3 {
            err(b, &clock);
        }
        assert_eq!(b.state(), CircuitState::Open);
    }
}

#[test]
fn reconfigure_replaces_one_instance_from_code() {
    let clock = ManualClock::new();
    let registry = seed(&clock);
    let pg = registry.circuit_breaker("beeceptor-payment");
    registry
        .reconfigure("beeceptor-payment", |b| b.count_window(1).minimum_calls(1))
        .unwrap();
    err(&pg, &clock);
    assert_eq!(pg.state(), CircuitState::Open);
    // Its classification stays the file's.
    assert_eq!(
        registry.classifier("beeceptor-payment"),
        HttpClassifier::new().ignore(400..=499)
    );
    let error = registry
        .reconfigure("beeceptor-payment", |b| b.minimum_calls(0))
        .unwrap_err();
    assert_eq!(error.setting(), "minimum_calls");
    assert_eq!(pg.state(), CircuitState::Open, "unchanged");
    // Not made yet: made with it.
    registry
        .reconfigure("fresh", |b| b.count_window(1).minimum_calls(1))
        .unwrap();
    let fresh = registry.circuit_breaker("fresh");
    err(&fresh, &clock);
    assert_eq!(fresh.state(), CircuitState::Open);
    // A clock of its own is refused, made or not, and changes nothing.
    for name in ["beeceptor-payment", "not-made"] {
        let error = registry
            .reconfigure(name, |b| b.clock(ManualClock::new()))
            .unwrap_err();
        assert_eq!(error.setting(), "clock");
    }
    assert_eq!(pg.state(), CircuitState::Open, "unchanged");
    // Made from the file's default, on the registry's clock (not the refused one).
    let not_made = registry.circuit_breaker("not-made");
    for _ in 0..10 {
        err(&not_made, &clock);
    }
    assert_eq!(not_made.state(), CircuitState::Open);
    clock.advance(Duration::from_secs(10));
    assert!(not_made.try_acquire().is_ok());
    assert_eq!(not_made.state(), CircuitState::HalfOpen);
}

#[test]
fn a_huge_randomized_wait_is_refused_not_a_panic() {
    let error = refused(
        "resilience4j:\n  circuitbreaker:\n    instances:\n      pg:\n        enable-randomized-wait: true\n        wait-duration-in-open-state: 200000000000000d\n",
    );
    assert!(
        error.to_string().contains("wait-duration-in-open-state"),
        "{error}"
    );
}

#[test]
fn the_health_report_covers_every_breaker() {
    let clock = ManualClock::new();
    let registry = seed(&clock);
    assert_eq!(registry.health().status, HealthStatus::Up);
    assert!(registry.health().breakers.is_empty());
    let pg = registry.circuit_breaker("beeceptor-payment");
    let search = registry.circuit_breaker("search");
    for _ in 0..10 {
        err(&pg, &clock);
    }
    clock.advance(Duration::from_millis(1_200));
    assert!(pg.try_acquire().is_err());
    let report = registry.health();
    assert_eq!(report.status, HealthStatus::Down);
    let names: Vec<_> = report.breakers.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["beeceptor-payment", "search"]);
    let b = &report.breakers[0];
    assert_eq!(
        (
            b.state,
            b.failure_rate,
            b.buffered_calls,
            b.failed_calls,
            b.not_permitted_calls
        ),
        (CircuitState::Open, Some(100.0), 10, 10, 1)
    );
    assert_eq!(b.in_state, Duration::from_millis(1_200));
    assert_eq!(b.retry_after, Some(Duration::from_millis(28_800)));

    let json = serde_json::to_value(&report).unwrap();
    let since = json["breakers"][0]["since_unix_ms"].as_u64().unwrap();
    assert!(since > 1_600_000_000_000, "{since}");
    assert_eq!(
        json,
        serde_json::json!({
            "status": "down",
            "breakers": [
                {"name": "beeceptor-payment", "state": "open", "failure_rate": 100.0,
                 "slow_call_rate": 0.0, "buffered_calls": 10, "failed_calls": 10,
                 "slow_calls": 0, "not_permitted_calls": 1, "in_state_ms": 1200,
                 "since_unix_ms": since, "retry_after_ms": 28800},
                {"name": "search", "state": "closed", "failure_rate": null,
                 "slow_call_rate": null, "buffered_calls": 0, "failed_calls": 0,
                 "slow_calls": 0, "not_permitted_calls": 0,
                 "in_state_ms": 1200,
                 "since_unix_ms": json["breakers"][1]["since_unix_ms"],
                 "retry_after_ms": null},
            ]
        })
    );
    search.transition_to(CircuitState::HalfOpen);
    pg.reset();
    assert_eq!(registry.health().status, HealthStatus::Degraded);
}

#[tokio::test]
async fn a_keyed_layer_takes_its_configuration_and_shows_in_the_health_report() {
    use tower::{Layer, Service, ServiceExt};

    let clock = ManualClock::new();
    let registry = seed(&clock);
    let layer = registry.keyed_layer("beeceptor-payment");
    assert_eq!(layer.name(), "beeceptor-payment");
    // Port 9001 fails, port 9002 rejects every request as the caller's mistake.
    let partners = tower::service_fn(|request: http::Request<()>| async move {
        let status = match request.uri().port_u16() {
            Some(9001) => 500,
            _ => 404,
        };
        Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
    });
    let mut svc = layer.layer(partners);
    let get = |port: u16| {
        http::Request::get(format!("http://127.0.0.1:{port}/confirm"))
            .body(())
            .unwrap()
    };
    for _ in 0..20 {
        let response = svc.ready().await.unwrap().call(get(9002)).await.unwrap();
        assert_eq!(response.status(), 404);
    }
    for _ in 0..10 {
        svc.ready().await.unwrap().call(get(9001)).await.unwrap();
    }
    assert!(svc.ready().await.unwrap().call(get(9001)).await.is_err());
    // The same layer for the same name: it holds the keys already.
    assert_eq!(
        registry.keyed_layer("beeceptor-payment").keys(),
        ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    );
    registry.circuit_breaker("search");

    let report = registry.health();
    assert_eq!(report.status, HealthStatus::Down);
    let rows: Vec<_> = report
        .breakers
        .iter()
        .map(|b| (b.name.as_str(), b.key.as_deref(), b.state, b.buffered_calls))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "beeceptor-payment",
                Some("http://127.0.0.1:9001"),
                CircuitState::Open,
                10
            ),
            (
                "beeceptor-payment",
                Some("http://127.0.0.1:9002"),
                CircuitState::Closed,
                0
            ),
            ("search", None, CircuitState::Closed, 0),
        ]
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["breakers"][0]["key"], "http://127.0.0.1:9001");
    assert!(json["breakers"][2].get("key").is_none());
}

#[test]
fn chaos_settings_are_read_beside_the_breakers_in_yaml_and_toml() {
    use breakwater::chaos::{Chaos, FaultKind};

    let yaml = Registry::from_yaml(
        "
resilience4j.circuitbreaker:
  instances:
    pg:
      sliding-window-size: 5
breakwater:
  chaos:
    instances:
      pg-client:
        enabled: true
        seed: 7
        failureRate: 0.25
        response_loss_rate: 0.05
        latency-rate: 0.5
        latency-min: 100ms
        latency-max: PT2S
      database: { seed: 3, failure-rate: 0.3 }
",
    )
    .unwrap();
    let toml = Registry::from_toml(
        "
[breakwater.chaos.instances.pg-client]
enabled = true
seed = 7
failure-rate = 0.25
response-loss-rate = 0.05
latency-rate = 0.5
latency-min = \"100ms\"
latency-max = \"2s\"
",
    )
    .unwrap();
    let expected = Chaos::builder()
        .enabled(true)
        .seed(7)
        .failure_rate(0.25)
        .response_loss_rate(0.05)
        .latency_rate(0.5)
        .latency(Duration::from_millis(100)..=Duration::from_secs(2));
    for registry in [&yaml, &toml] {
        let chaos = registry.chaos("pg-client");
        assert_eq!(chaos.settings(), expected);
        // One Chaos per name: one call counter.
        let again = registry.chaos("pg-client");
        assert_eq!(again.plan(0), chaos.plan(0));
        let reference = expected.build().unwrap();
        let faults = |c: &Chaos| (0..200).map(|n| c.plan(n)).collect::<Vec<_>>();
        assert_eq!(faults(&chaos), faults(&reference));
    }
    // Listed but not enabled, and not listed: both do nothing.
    assert!(!yaml.chaos("database").is_enabled());
    let database = Chaos::builder().seed(3).failure_rate(0.3).build().unwrap();
    let faults = |c: &Chaos| (0..100).map(|n| c.plan(n).fault()).collect::<Vec<_>>();
    assert_eq!(faults(&yaml.chaos("database")), faults(&database));
    assert!(faults(&database).contains(&Some(FaultKind::Failed)));
    assert!(!yaml.chaos("search").is_enabled());
    assert_eq!(yaml.circuit_breaker("pg").name(), "pg");

    // A file with chaos settings only is a registry with default breakers.
    let alone =
        Registry::from_yaml("breakwater.chaos:\n  instances:\n    db:\n      failure-rate: 0.1")
            .unwrap();
    assert_eq!(
        alone.chaos("db").settings(),
        Chaos::builder().failure_rate(0.1)
    );
}

#[test]
fn chaos_mistakes_are_named_with_their_key_line_and_what_is_allowed() {
    let cases = [
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      failure-rate: 1.5\n",
            "breakwater.chaos.instances.pg.failure-rate (line 4): 1.5 is not allowed: it must be \
             a fraction from 0 to 1 (0.3 is 30%)",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      failure-rate: 0.6\n      response-loss-rate: 0.6\n",
            "breakwater.chaos.instances.pg.response-loss-rate (line 5): 0.6 is not allowed: it \
             must be a fraction from 0 to 1 minus failure_rate (0.6): a call fails or loses its \
             response, not both",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      seed: -1\n",
            "breakwater.chaos.instances.pg.seed (line 4): -1 is not allowed: it must be a whole \
             number from 0 to 18446744073709551615",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      latency: 1s\n      latency-max: 2s\n",
            "breakwater.chaos.instances.pg.latency-max (line 5): give `latency` (a fixed latency) \
             or `latency-min` and `latency-max`, not both",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      latency-min: 3s\n      latency-max: 2s\n",
            "breakwater.chaos.instances.pg.latency-max (line 5): 3s..=2s is not allowed: it must \
             be a range whose minimum is at most its maximum",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      latency-min: 3s\n",
            "breakwater.chaos.instances.pg.latency-min (line 4): `latency-min` and `latency-max` \
             go together; for a fixed latency write `latency: 3s`",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      enabled: yes please\n",
            "breakwater.chaos.instances.pg.enabled (line 4): \"yes please\" is not allowed: it \
             must be true or false",
        ),
        (
            "breakwater.chaos:\n  instances:\n    pg:\n      rate: 0.1\n",
            "breakwater.chaos.instances.pg.rate (line 4): unknown setting; the chaos settings \
             are enabled, seed, failure-rate, response-loss-rate, latency-rate, latency, \
             latency-min, latency-max (kebab-case, camelCase or snake_case)",
        ),
        (
            "breakwater.chaos:\n  pg:\n    failure-rate: 0.1\n",
            "breakwater.chaos.pg (line 3): unknown key; the chaos section holds `instances`",
        ),
        (
            "breakwater.chaos.instances.pg.failure-rate: 0.1\n",
            "breakwater.chaos.instances.pg.failure-rate (line 1): write this setting nested \
             under `breakwater.chaos`",
        ),
    ];
    for (yaml, message) in cases {
        assert_eq!(refused(yaml).to_string(), message, "{yaml}");
    }
}

#[test]
fn a_reload_reconfigures_the_chaos_in_use_and_disables_what_is_gone() {
    let registry = Registry::from_yaml(
        "breakwater.chaos:\n  instances:\n    pg: { enabled: true, failure-rate: 1 }",
    )
    .unwrap();
    let pg = registry.chaos("pg");
    let db = registry.chaos("db");
    assert_eq!(
        pg.plan(0).fault(),
        Some(breakwater::chaos::FaultKind::Failed)
    );

    let changed = Registry::from_yaml(
        "breakwater.chaos:\n  instances:\n    db: { enabled: true, latency-rate: 1, latency: 5ms }",
    )
    .unwrap();
    assert_eq!(registry.reload(&changed), ["db", "pg"]);
    assert!(!pg.is_enabled());
    assert!(db.is_enabled());
    assert_eq!(db.plan(0).latency(), Some(Duration::from_millis(5)));
    assert_eq!(registry.reload(&changed), Vec::<String>::new());
}

#[test]
fn breakwater_sections_of_other_crates_are_kept_as_data() {
    let registry = Registry::from_yaml(
        "resilience4j.circuitbreaker:
  instances:
    pg: {}
breakwater:
  chaos:
    instances: {}
  fleet:
    redisUrl: redis://127.0.0.1:6379
    quorum: 2
    heartbeat: 1s
    enabled: true
",
    )
    .unwrap();
    let fleet = registry.section("fleet").unwrap();
    assert_eq!((fleet.path(), fleet.line()), ("breakwater.fleet", 8));
    let keys: Vec<_> = fleet
        .entries()
        .map(breakwater::registry::Entry::key)
        .collect();
    assert_eq!(keys, ["redisUrl", "quorum", "heartbeat", "enabled"]);
    let url = fleet.get("redis-url").unwrap();
    assert_eq!(
        (url.as_str(), url.path(), url.line()),
        (
            Some("redis://127.0.0.1:6379"),
            "breakwater.fleet.redisUrl",
            8
        )
    );
    assert_eq!(fleet.get("quorum").unwrap().as_integer(), Some(2));
    assert_eq!(fleet.get("quorum").unwrap().as_str(), None);
    assert_eq!(
        fleet.get("heartbeat").unwrap().as_duration(),
        Some(Duration::from_secs(1))
    );
    assert_eq!(fleet.get("enabled").unwrap().as_bool(), Some(true));
    assert_eq!(fleet.get("heartbeat").unwrap().display_value(), "\"1s\"");
    // The registry's own section is not handed out; a missing one is None.
    assert!(registry.section("chaos").is_none());
    assert!(registry.section("other").is_none());
    // Dotted, and alone in a file.
    let registry = Registry::from_yaml("breakwater.fleet:\n  quorum: 3\n").unwrap();
    assert_eq!(
        registry.section("fleet").unwrap().path(),
        "breakwater.fleet"
    );
}

#[test]
fn a_breakwater_section_that_is_not_a_map_or_comes_twice_is_refused() {
    let cases = [
        (
            "breakwater:\n  fleet: 3\n",
            "breakwater.fleet (line 2): 3 is not allowed: it must be a map of settings",
        ),
        (
            "breakwater:\n  fleet: {}\nbreakwater.fleet:\n  quorum: 1\n",
            "breakwater.fleet (line 4): a second `breakwater.fleet` section (the first is at line 2)",
        ),
        (
            "breakwater.fleet.quorum: 2\n",
            "breakwater.fleet.quorum (line 1): write this setting nested under `breakwater.fleet`",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(Registry::from_yaml(text).unwrap_err().to_string(), message);
    }
}
