//! resilience4j's own demo configuration as users bring it: Java names reported or bound, the
//! time limiter, retry and bulkhead on tower's layers, the composed stack, reloading.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use breakwater::classify::http::HttpClassifier;
use breakwater::classify::{Classify, Outcome};
use breakwater::registry::{Binding, HealthStatus, StackService};
use breakwater::{CircuitOpen, CircuitState, Elapsed, Registry};
use http::{Response, StatusCode};
use tower::load_shed::error::Overloaded;
use tower::retry::budget::TpsBudget;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

const DEMO: &str = include_str!("fixtures/resilience4j-demo.yml");

const BUSINESS: &str = "io.github.robwin.exception.BusinessException";

/// An error type of the application's, for bindings to recognise.
macro_rules! error_type {
    ($name:ident, $text:literal) => {
        #[derive(Debug)]
        struct $name;

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($text)
            }
        }

        impl std::error::Error for $name {}
    };
}

error_type!(BusinessError, "refused by the business rules");
error_type!(Unreachable, "the payment gateway cannot be reached");

fn warnings(registry: &Registry) -> Vec<String> {
    registry
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn classify_error(classifier: &HttpClassifier, error: impl Into<BoxError>) -> Outcome {
    let error: BoxError = error.into();
    Classify::<Response<()>, BoxError>::classify(classifier, Err(&error))
}

fn classify_status(classifier: &HttpClassifier, code: u16) -> Outcome {
    let response = Response::builder().status(code).body(()).unwrap();
    Classify::<Response<()>, BoxError>::classify(classifier, Ok(&response))
}

#[test]
fn the_demo_configuration_loads_unchanged_with_its_warnings() {
    let registry = Registry::from_yaml(DEMO).unwrap();
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.circuitbreaker.configs.default.ignoreExceptions[0] (line 19): \
             \"io.github.robwin.exception.BusinessException\" is not an exception class \
             breakwater understands: ignored (no rule for it: bind the name with `Loader::bind`)",
            "resilience4j.circuitbreaker.instances.backendB.recordFailurePredicate (line 28): \
             \"io.github.robwin.exception.RecordFailurePredicate\" names Java code, which cannot \
             run here: ignored (bind the name with `Loader::bind`, or classify outcomes with \
             `CircuitBreaker::layer_with`)",
            "resilience4j.timelimiter.configs.default.cancelRunningFuture (line 41): false: read \
             as true: a call that runs out of time is dropped, and so cancelled, in Rust",
        ]
    );
    // Every section's configs.default reaches a name the file does not list.
    for name in ["backendA", "backendB", "unlisted"] {
        assert_eq!(
            registry.timeout(name),
            Some(Duration::from_secs(2)),
            "{name}"
        );
        let retry = registry.retry_policy(name).expect("configs.default");
        assert_eq!(retry.max_attempts(), 3, "{name}");
        assert_eq!(retry.wait_before(1), Duration::from_millis(100));
        assert_eq!(
            retry.wait_before(2),
            Duration::from_millis(100),
            "no backoff"
        );
        assert!(registry.bulkhead(name).is_some(), "{name}");
    }
    // The breakers: configs.default's window of 100 with a minimum of 10 for an unlisted name.
    let unlisted = registry.circuit_breaker("unlisted");
    for _ in 0..9 {
        unlisted.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(unlisted.state(), CircuitState::Closed);
    unlisted.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(unlisted.state(), CircuitState::Open);
    // recordExceptions: 5xx and I/O errors fail, 4xx succeeds (it is not recorded), and the
    // unbound BusinessException is left out: a business error is an error like any other.
    let a = registry.classifier("backendA");
    assert_eq!(classify_status(&a, 503), Outcome::Failure);
    assert_eq!(classify_status(&a, 404), Outcome::Success);
    assert_eq!(classify_error(&a, BusinessError), Outcome::Failure);
    // health() lists the warnings (they do not change its status: `unlisted` is open).
    let health = registry.health();
    assert_eq!(health.status, HealthStatus::Down);
    assert_eq!(
        Registry::from_yaml(DEMO).unwrap().health().status,
        HealthStatus::Up
    );
    assert_eq!(health.warnings, warnings(&registry));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["warnings"].as_array().map(Vec::len), Some(3));
    // Strict: the first Java name is an error.
    assert_eq!(
        Registry::from_yaml_strict(DEMO).unwrap_err().key_path(),
        Some("resilience4j.circuitbreaker.configs.default.ignoreExceptions[0]")
    );
    // A file with none has none.
    assert!(
        Registry::from_yaml("resilience4j.circuitbreaker: {}\n")
            .unwrap()
            .warnings()
            .is_empty()
    );
}

#[test]
fn record_exceptions_with_no_class_left_keep_the_default_and_say_so() {
    let registry = Registry::from_yaml(
        "resilience4j.circuitbreaker:
  instances:
    pg:
      recordExceptions:
        - com.acme.PaymentGatewayException
",
    )
    .unwrap();
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.circuitbreaker.instances.pg.recordExceptions[0] (line 5): \
             \"com.acme.PaymentGatewayException\" is not an exception class breakwater \
             understands: ignored (no rule for it: bind the name with `Loader::bind`)",
            "resilience4j.circuitbreaker.instances.pg.recordExceptions (line 5): no class left \
             that breakwater understands: breakwater's default classification applies (5xx and \
             errors fail, 4xx is ignored)",
        ]
    );
    // The default: a 5xx fails, a 4xx is ignored.
    assert_eq!(registry.classifier("pg"), HttpClassifier::new());
}

#[test]
fn bound_names_are_not_warnings_and_change_the_classification() {
    let loader = Registry::loader()
        .bind(
            BUSINESS,
            Binding::errors(<dyn std::error::Error>::is::<BusinessError>),
        )
        .bind(
            // A simple name binds the class of any package.
            "RecordFailurePredicate",
            Binding::errors(<dyn std::error::Error>::is::<Unreachable>)
                .or(Binding::statuses(500..=599)),
        );
    let registry = loader.from_yaml(DEMO).unwrap();
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.timelimiter.configs.default.cancelRunningFuture (line 41): false: read \
          as true: a call that runs out of time is dropped, and so cancelled, in Rust"
        ]
    );
    // ignoreExceptions: a business error is now ignored, other errors still fail.
    let a = registry.classifier("backendA");
    assert_eq!(classify_error(&a, BusinessError), Outcome::Ignored);
    assert_eq!(classify_error(&a, Unreachable), Outcome::Failure);
    assert_eq!(classify_status(&a, 503), Outcome::Failure);
    // Through the breaker: ignored calls are not counted.
    let layered = registry.layer("backendA");
    let breaker = registry.circuit_breaker("backendA");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut service = layered.layer(tower::service_fn(|_: ()| async {
            Err::<Response<()>, BoxError>(BusinessError.into())
        }));
        for _ in 0..20 {
            assert!(service.ready().await.unwrap().call(()).await.is_err());
        }
    });
    assert_eq!(
        breaker.metrics().buffered_calls,
        0,
        "business errors are ignored"
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
    // recordFailurePredicate, bound: what it matches fails, and nothing else does (as in
    // resilience4j, a record rule makes the rest successes); backendB inherits configs.default's
    // ignoreExceptions too.
    let b = registry.classifier("backendB");
    assert_eq!(classify_error(&b, Unreachable), Outcome::Failure);
    assert_eq!(classify_status(&b, 502), Outcome::Failure);
    assert_eq!(classify_error(&b, BusinessError), Outcome::Ignored);
    assert_eq!(
        classify_error(&b, "anything else"),
        Outcome::Failure,
        "IOException: errors"
    );
    assert_eq!(classify_status(&b, 404), Outcome::Success);
    // Unbound, the same file classifies otherwise.
    let unbound = Registry::from_yaml(DEMO).unwrap();
    assert_eq!(
        classify_error(&unbound.classifier("backendB"), BusinessError),
        Outcome::Failure
    );
    // Strict loading with every Java name bound loads (the time limiter's note stays a
    // warning); without the bindings it refuses.
    assert!(loader.clone().strict(true).from_yaml(DEMO).is_ok());
    assert_eq!(
        Registry::loader()
            .bind(BUSINESS, Binding::statuses(409))
            .strict(true)
            .from_yaml(DEMO)
            .unwrap_err()
            .key_path(),
        Some("resilience4j.circuitbreaker.instances.backendB.recordFailurePredicate")
    );
}

#[test]
fn a_status_binding_and_a_result_predicate_shape_responses() {
    let registry = Registry::loader()
        .bind("com.acme.ConflictException", Binding::statuses(409))
        .bind(
            "com.acme.ErrorHeader",
            Binding::responses(|_, headers| headers.contains_key("x-error")),
        )
        .from_yaml(
            "
resilience4j.circuitbreaker:
  instances:
    pg:
      recordExceptions: [com.acme.ConflictException]
    search:
      recordResultPredicate: com.acme.ErrorHeader
",
        )
        .unwrap();
    assert!(registry.warnings().is_empty(), "{:?}", registry.warnings());
    let pg = registry.classifier("pg");
    assert_eq!(classify_status(&pg, 409), Outcome::Failure);
    assert_eq!(
        classify_status(&pg, 500),
        Outcome::Success,
        "only what is recorded fails"
    );
    let search = registry.classifier("search");
    let flagged = Response::builder().header("x-error", "1").body(()).unwrap();
    assert_eq!(
        Classify::<Response<()>, BoxError>::classify(&search, Ok(&flagged)),
        Outcome::Failure
    );
    assert_eq!(classify_status(&search, 200), Outcome::Success);
    assert_eq!(
        classify_status(&search, 500),
        Outcome::Failure,
        "the default stays"
    );
}

/// How many calls one request makes through `name`'s retry policy to a service that answers
/// `status` at once.
async fn attempts(registry: &Registry, name: &str, status: u16) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = tower::retry::RetryLayer::new(registry.retry_policy(name).unwrap())
        .layer(answering(calls.clone(), status, Duration::ZERO));
    service.ready().await.unwrap().call(7).await.unwrap();
    calls.load(Ordering::SeqCst)
}

/// A service that answers `status` after `delay`, counting its calls.
fn answering(
    calls: Arc<AtomicUsize>,
    status: u16,
    delay: Duration,
) -> impl Service<u32, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone {
    tower::service_fn(move |_: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_time_limiter_fires_through_the_registry_and_follows_a_reload() {
    let registry = Registry::from_yaml(DEMO).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(registry.layer("backendA"))
        .layer(registry.timeout_layer("backendA"))
        .service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, BoxError>(Response::new(()))
        });
    let started = tokio::time::Instant::now();
    let error = service
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<Elapsed>().map(Elapsed::timeout),
        Some(Duration::from_secs(2))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let breaker = registry.circuit_breaker("backendA");
    assert_eq!(
        breaker.metrics().failed_calls,
        1,
        "the breaker counts the timeout"
    );

    // A reload with a longer timeout reaches the service already built.
    let longer = DEMO.replace("timeoutDuration: 2s", "timeoutDuration: 5s");
    let changed = registry.reload(&Registry::from_yaml(&longer).unwrap());
    assert_eq!(changed, ["backendA"]);
    assert_eq!(registry.timeout("backendA"), Some(Duration::from_secs(5)));
    let answer = service
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    assert!(answer.is_ok(), "3 s is within 5 s");
    // A reload without a time limiter lifts the limit.
    let none = Registry::from_yaml("resilience4j.circuitbreaker: {}").unwrap();
    registry.reload(&none);
    assert_eq!(registry.timeout("backendA"), None);
    assert_eq!(registry.timeout_layer("backendA").source().get(), None);
}

#[tokio::test(start_paused = true)]
async fn the_stack_retries_5xx_up_to_max_attempts_and_never_4xx_nor_an_open_breaker() {
    let registry = Registry::from_yaml(DEMO).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));

    // 5xx: three calls in all, 100 ms apart; the last answer is returned.
    let mut failing =
        registry
            .stack("backendA")
            .layer(answering(calls.clone(), 503, Duration::ZERO));
    let started = tokio::time::Instant::now();
    let answer = failing.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    let breaker = registry.circuit_breaker("backendA");
    assert_eq!(
        breaker.metrics().failed_calls,
        3,
        "each attempt went through the breaker"
    );

    // 4xx: one call.
    calls.store(0, Ordering::SeqCst);
    let mut refused =
        registry
            .stack("backendA")
            .layer(answering(calls.clone(), 404, Duration::ZERO));
    let answer = refused.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A timeout from the time limiter is a failure, and retried.
    calls.store(0, Ordering::SeqCst);
    let mut slow =
        registry
            .stack("backendB")
            .layer(answering(calls.clone(), 200, Duration::from_secs(3)));
    let started = tokio::time::Instant::now();
    let error = slow.ready().await.unwrap().call(7).await.unwrap_err();
    assert!(error.is::<Elapsed>(), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(3 * 2_000 + 2 * 100)
    );

    // An open breaker: refused once, never retried, the inner service never called.
    calls.store(0, Ordering::SeqCst);
    breaker.force_open();
    let mut open = registry
        .stack("backendA")
        .layer(answering(calls.clone(), 200, Duration::ZERO));
    let error = open.ready().await.unwrap().call(7).await.unwrap_err();
    assert!(error.is::<CircuitOpen>(), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        breaker.metrics().not_permitted_calls,
        1,
        "one refusal: no retry"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_spend_the_budget() {
    let registry = Registry::from_yaml(
        "
resilience4j.retry:
  instances:
    pg:
      maxAttempts: 4
      waitDuration: 100ms
      enableExponentialBackoff: true
      exponentialBackoffMultiplier: 2
      exponentialMaxWaitDuration: 300ms
",
    )
    .unwrap();
    let policy = registry.retry_policy("pg").unwrap();
    let waits: Vec<Duration> = (1..=3).map(|n| policy.wait_before(n)).collect();
    assert_eq!(
        waits,
        [100, 200, 300].map(Duration::from_millis),
        "doubling, capped at 300 ms"
    );
    assert!(
        registry.retry_policy("other").is_none(),
        "no configs.default"
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = tower::retry::RetryLayer::new(policy.clone()).layer(answering(
        calls.clone(),
        500,
        Duration::ZERO,
    ));
    let started = tokio::time::Instant::now();
    service.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(started.elapsed(), Duration::from_millis(600));

    // An empty budget: no retry.
    calls.store(0, Ordering::SeqCst);
    let empty = Arc::new(TpsBudget::new(Duration::from_secs(1), 0, 0.0));
    let mut service = tower::retry::RetryLayer::new(policy.with_budget(empty)).layer(answering(
        calls.clone(),
        500,
        Duration::ZERO,
    ));
    service.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_refuses_calls_beyond_its_limit_across_every_stack_of_the_name() {
    let yaml = "
resilience4j.bulkhead:
  instances:
    db: { maxConcurrentCalls: 2 }
";
    let registry = Registry::from_yaml(yaml).unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (in_flight, most) = (in_flight.clone(), most.clone());
        tower::service_fn(move |_: u32| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(Response::new(()))
            }
        })
    };
    // Five calls at once through two stacks made apart, as two routers would: one limit of
    // two, and the three beyond it refused at once, as resilience4j's bulkhead refuses them.
    let burst = |first: &StackService<_>, second: &StackService<_>| {
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let service = if i % 2 == 0 {
                    first.clone()
                } else {
                    second.clone()
                };
                tokio::spawn(service.oneshot(7))
            })
            .collect();
        async move {
            let (mut served, mut refused) = (0, 0);
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => served += 1,
                    Err(error) => {
                        assert!(error.is::<Overloaded>(), "{error}");
                        refused += 1;
                    }
                }
            }
            (served, refused)
        }
    };
    let first = registry.stack("db").layer(inner.clone());
    let second = registry.stack("db").layer(inner.clone());
    let started = tokio::time::Instant::now();
    assert_eq!(burst(&first, &second).await, (2, 3));
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(1), "no call waited");
    assert!(registry.bulkhead("other").is_none());

    // A reload to three: stacks made after it get three, those in use keep two.
    registry.reload(&Registry::from_yaml(&yaml.replace("2 }", "3 }")).unwrap());
    most.store(0, Ordering::SeqCst);
    assert_eq!(
        burst(&first, &second).await,
        (2, 3),
        "the old stacks keep two"
    );
    let third = registry.stack("db").layer(inner.clone());
    let fourth = registry.stack("db").layer(inner);
    assert_eq!(burst(&third, &fourth).await, (3, 2), "new stacks get three");
}

#[test]
fn unknown_keys_and_sections_without_a_counterpart_are_warnings() {
    let yaml = "
resilience4j:
  ratelimiter:
    instances:
      pg: { limitForPeriod: 10 }
  thread-pool-bulkhead:
    instances:
      pg: { maxThreadPoolSize: 4 }
  retry:
    retryAspectOrder: 399
    instances:
      pg:
        maxAttempts: 2
        intervalBiFunction: com.acme.Backoff
        retryExceptionPredicate: com.acme.RetryOn
  bulkhead:
    instances:
      pg: { maxConcurrentCalls: 10, maxWaitDuration: 500ms }
      db: { maxConcurrentCalls: 10, maxWaitDuration: 0 }
retry:
  the-applications-own: true
";
    let registry = Registry::from_yaml(yaml).unwrap();
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.ratelimiter (line 4): resilience4j's ratelimiter has no counterpart \
             in breakwater or tower here: ignored (breakwater reads circuitbreaker, \
             timelimiter, retry, bulkhead)",
            "resilience4j.thread-pool-bulkhead (line 7): resilience4j's thread-pool-bulkhead \
             has no counterpart in breakwater or tower here: ignored (breakwater reads \
             circuitbreaker, timelimiter, retry, bulkhead)",
            "resilience4j.retry.retryAspectOrder (line 10): 399: ignored: the order of a stack \
             is fixed (`Registry::stack`: retry, circuit breaker, time limiter, bulkhead, from \
             the outside in)",
            "resilience4j.retry.instances.pg.intervalBiFunction (line 14): not a setting of \
             resilience4j's retry that breakwater reads: ignored (it reads base-config, \
             max-attempts, wait-duration, enable-exponential-backoff, \
             exponential-backoff-multiplier, exponential-max-wait-duration, retry-exceptions, \
             ignore-exceptions, retry-exception-predicate, result-predicate, \
             enable-randomized-wait, randomized-wait-factor, fail-after-max-attempts, \
             event-consumer-buffer-size)",
            "resilience4j.retry.instances.pg.retryExceptionPredicate (line 15): \"com.acme.RetryOn\" \
             names Java code, which cannot run here: ignored (bind the name with \
             `Loader::bind`); without a retry-exceptions breakwater can use, no error is retried",
            "resilience4j.bulkhead.instances.pg.maxWaitDuration (line 18): \"500ms\": read as 0: a \
             call beyond max-concurrent-calls is refused at once (tower's LoadShed over its \
             ConcurrencyLimit), where resilience4j would let it wait that long for a permit",
        ]
    );
    assert_eq!(registry.retry_policy("pg").unwrap().max_attempts(), 2);
    // Unknown keys stay warnings when loading strictly; Java names do not.
    let strict = Registry::from_yaml_strict(yaml).unwrap_err();
    assert_eq!(
        strict.key_path(),
        Some("resilience4j.retry.instances.pg.retryExceptionPredicate")
    );
    let without_java = yaml.replace("        retryExceptionPredicate: com.acme.RetryOn\n", "");
    assert_eq!(
        Registry::from_yaml_strict(&without_java)
            .unwrap()
            .warnings()
            .len(),
        5
    );
}

#[test]
fn bad_values_in_the_new_sections_are_errors_naming_the_setting() {
    for (yaml, expected) in [
        (
            "resilience4j.retry.instances.pg.maxAttempts: 0",
            "write this setting nested under `resilience4j.retry`",
        ),
        (
            "resilience4j:\n  retry:\n    instances:\n      pg: { maxAttempts: 0 }\n",
            "resilience4j.retry.instances.pg.maxAttempts (line 4): 0 is not allowed: it must \
             be a whole number from 1 to 4294967295",
        ),
        (
            "resilience4j:\n  timelimiter:\n    configs:\n      default: { timeoutDuration: soon }\n",
            "resilience4j.timelimiter.configs.default.timeoutDuration (line 4): \"soon\" is not \
             allowed",
        ),
        (
            "resilience4j:\n  bulkhead:\n    instances:\n      db: { baseConfig: shared }\n",
            "resilience4j.bulkhead.instances.db.baseConfig (line 4): base-config \"shared\" names \
             no config; the configs are: none",
        ),
        (
            "resilience4j:\n  retry:\n    instances:\n      pg: { exponentialBackoffMultiplier: 0.5 }\n",
            "resilience4j.retry.instances.pg.exponentialBackoffMultiplier (line 4): 0.5 is not \
             allowed: it must be a number from 1",
        ),
    ] {
        let error = Registry::from_yaml(yaml).unwrap_err().to_string();
        assert!(error.contains(expected), "for:\n{yaml}\n{error}");
    }
}

#[test]
fn toml_reads_the_same_sections() {
    let registry = Registry::from_toml(
        r#"
[timelimiter.configs.default]
timeout-duration = "750ms"

[retry.instances.pg]
max-attempts = 5

[bulkhead.instances.pg]
max-concurrent-calls = 8
"#,
    )
    .unwrap();
    assert_eq!(registry.timeout("pg"), Some(Duration::from_millis(750)));
    assert_eq!(registry.retry_policy("pg").unwrap().max_attempts(), 5);
    assert!(registry.bulkhead("pg").is_some());
    assert!(registry.warnings().is_empty());
}

#[tokio::test(start_paused = true)]
async fn retry_settings_reach_the_stacks_made_after_a_reload() {
    let registry = Registry::from_yaml(DEMO).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut before =
        registry
            .stack("backendA")
            .layer(answering(calls.clone(), 500, Duration::ZERO));
    let five = DEMO.replace("maxAttempts: 3", "maxAttempts: 5");
    registry.reload(&Registry::from_yaml(&five).unwrap());
    before.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "a stack keeps its policy");
    calls.store(0, Ordering::SeqCst);
    registry.circuit_breaker("backendA").reset();
    let mut after = registry
        .stack("backendA")
        .layer(answering(calls.clone(), 500, Duration::ZERO));
    after.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

/// The README's migration section: its file loads with the warnings it shows, and the two
/// bindings it makes leave one.
#[test]
fn the_readmes_migration_example_says_what_the_code_does() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("#### Moving from resilience4j").unwrap()..];
    let block = |fence: &str| {
        let start = section.find(fence).unwrap() + fence.len();
        &section[start..start + section[start..].find("```").unwrap()]
    };
    let yaml = block("```yaml\n");
    let shown: Vec<&str> = block("```text\n").lines().collect();
    let registry = Registry::from_yaml(yaml).unwrap();
    assert_eq!(warnings(&registry), shown);
    let bound = Registry::loader()
        .bind(
            BUSINESS,
            Binding::errors(<dyn std::error::Error>::is::<BusinessError>),
        )
        .bind(
            "io.github.robwin.exception.RecordFailurePredicate",
            Binding::statuses(500..=599),
        )
        .from_yaml(yaml)
        .unwrap();
    assert_eq!(warnings(&bound), shown[2..]);
    assert_eq!(bound.timeout("backendA"), Some(Duration::from_secs(2)));
}

/// What `ignore-exceptions` names is ignored even when `record-exceptions` (or a retry's
/// `retry-exceptions`) names a bound predicate, which is consulted before the status rules.
#[tokio::test(start_paused = true)]
async fn ignoring_wins_over_a_bound_record_or_retry_name() {
    let registry = Registry::loader()
        .bind(
            "com.acme.Flaky",
            Binding::errors(<dyn std::error::Error>::is::<Unreachable>),
        )
        .from_yaml(
            "
resilience4j:
  circuitbreaker:
    instances:
      pg:
        recordExceptions: [com.acme.Flaky]
        ignoreExceptions: [java.io.IOException, HttpServerErrorException.ServiceUnavailable]
  retry:
    instances:
      pg:
        maxAttempts: 3
        waitDuration: 10ms
        retryExceptions: [com.acme.Flaky]
        ignoreExceptions: [java.io.IOException]
",
        )
        .unwrap();
    assert!(registry.warnings().is_empty(), "{:?}", registry.warnings());
    let pg = registry.classifier("pg");
    assert_eq!(
        classify_error(&pg, Unreachable),
        Outcome::Ignored,
        "IOException: errors"
    );
    assert_eq!(classify_error(&pg, BusinessError), Outcome::Ignored);
    assert_eq!(classify_status(&pg, 503), Outcome::Ignored);
    assert_eq!(classify_status(&pg, 502), Outcome::Success, "not recorded");

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let mut service = tower::retry::RetryLayer::new(registry.retry_policy("pg").unwrap()).layer(
        tower::service_fn(move |_: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<Response<()>, BoxError>(Unreachable.into()) }
        }),
    );
    assert!(service.ready().await.unwrap().call(7).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "ignored: not retried");
}

/// A retry list naming nothing breakwater can use retries no error (rather than every one),
/// and one naming client errors is told that a 4xx is never retried.
#[tokio::test(start_paused = true)]
async fn retry_lists_retry_only_what_they_name() {
    let registry = Registry::from_yaml(
        "
resilience4j.retry:
  instances:
    unknown:
      retryExceptions: [com.acme.PaymentException]
    throttled:
      retryExceptions:
        - org.springframework.web.client.HttpClientErrorException$TooManyRequests
        - org.springframework.web.client.HttpServerErrorException
",
    )
    .unwrap();
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.retry.instances.unknown.retryExceptions[0] (line 5): \
             \"com.acme.PaymentException\" is not an exception class breakwater understands: \
             ignored (no rule for it: bind the name with `Loader::bind`)",
            "resilience4j.retry.instances.unknown.retryExceptions (line 5): no class left that \
             breakwater understands: no error is retried",
            "resilience4j.retry.instances.throttled.retryExceptions (line 8): names client \
             errors (4xx): a 4xx is never retried (the request is at fault), whatever the file \
             says",
        ]
    );
    let attempts = |name, status| attempts(&registry, name, status);
    assert_eq!(attempts("unknown", 503).await, 1);
    assert_eq!(attempts("throttled", 429).await, 1);
    assert_eq!(attempts("throttled", 503).await, 3);
}

/// Each request deposits into the retry budget once, and every policy of a name spends the
/// same budget.
#[tokio::test(start_paused = true)]
async fn the_retry_budget_is_paid_once_per_request_and_shared_by_the_name() {
    let yaml = "
resilience4j.retry:
  instances:
    pg: { maxAttempts: 2, waitDuration: 0 }
";
    let registry = Registry::from_yaml(yaml).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let run = |policy, requests: usize| {
        let calls = calls.clone();
        let mut service = tower::retry::RetryLayer::new(policy).layer(answering(
            calls.clone(),
            500,
            Duration::ZERO,
        ));
        async move {
            calls.store(0, Ordering::SeqCst);
            for _ in 0..requests {
                service.ready().await.unwrap().call(7).await.unwrap();
            }
            calls.load(Ordering::SeqCst)
        }
    };
    // One retry for two requests (a deposit of 1 each, a withdrawal of 2), nothing in reserve:
    // four requests make six calls; a deposit per attempt would make seven.
    let half = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.5));
    let policy = registry.retry_policy("pg").unwrap().with_budget(half);
    assert_eq!(run(policy, 4).await, 6);

    // tower's default budget: a reserve of 100 retries (10 a second for 10 seconds, 5 units
    // each) and a unit per request. 125 failing requests spend it all, retried each...
    assert_eq!(run(registry.retry_policy("pg").unwrap(), 125).await, 250);
    // ...and a policy handed out later for the name finds it spent.
    assert_eq!(run(registry.retry_policy("pg").unwrap(), 1).await, 1);
    // Another registry, another budget.
    let other = Registry::from_yaml(yaml).unwrap();
    assert_eq!(run(other.retry_policy("pg").unwrap(), 1).await, 2);
}

/// A breaker answering `503` for its refusals (`respond_503`) is not retried either.
#[tokio::test(start_paused = true)]
async fn a_refusal_answered_503_is_not_retried() {
    let registry = Registry::from_yaml(
        "
resilience4j.retry:
  instances:
    pg: { maxAttempts: 3, waitDuration: 10ms }
",
    )
    .unwrap();
    let breaker = registry.circuit_breaker("pg");
    breaker.force_open();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(
            registry.retry_policy("pg").unwrap(),
        ))
        .layer(registry.layer("pg").respond_503())
        .service(answering(calls.clone(), 200, Duration::ZERO));
    let answer = service.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        breaker.metrics().not_permitted_calls,
        1,
        "refused once, not retried"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A reload whose only change is the classification (or bindings made anew by another
/// loader) leaves the breakers as they are: their layers keep the classification they were
/// made with.
#[test]
fn a_reload_that_changes_only_the_classification_resets_no_breaker() {
    let loader = || {
        Registry::loader().bind(
            BUSINESS,
            Binding::errors(<dyn std::error::Error>::is::<BusinessError>),
        )
    };
    let registry = loader().from_yaml(DEMO).unwrap();
    let breaker = registry.circuit_breaker("backendA");
    breaker.force_open();
    assert!(
        registry
            .reload(&loader().from_yaml(DEMO).unwrap())
            .is_empty()
    );
    assert_eq!(breaker.state(), CircuitState::ForcedOpen);
    let recorded = DEMO.replace(
        "          - java.io.IOException\n",
        "          - java.io.IOException\n          - java.net.SocketException\n",
    );
    assert_ne!(recorded, DEMO);
    assert!(
        registry
            .reload(&loader().from_yaml(&recorded).unwrap())
            .is_empty()
    );
    assert_eq!(breaker.state(), CircuitState::ForcedOpen);
}

/// A bound ignore name, and a known one, win over a bound result predicate too; and a retry
/// that records nothing by class still retries what its bound result predicate names, while an
/// empty list is the setting left out.
#[tokio::test(start_paused = true)]
async fn ignoring_wins_over_a_result_predicate_and_result_predicates_survive_an_empty_record() {
    let registry = Registry::loader()
        .bind(
            "com.acme.Bad",
            Binding::responses(|status, _| status.is_client_error() || status.is_server_error()),
        )
        .bind("com.acme.Conflict", Binding::statuses(409))
        .bind("com.acme.Unavailable", Binding::statuses(503))
        .from_yaml(
            "
resilience4j:
  circuitbreaker:
    instances:
      search:
        recordResultPredicate: com.acme.Bad
        ignoreExceptions: [HttpServerErrorException.ServiceUnavailable, com.acme.Conflict]
  retry:
    instances:
      results:
        waitDuration: 10ms
        retryExceptions: [com.acme.PaymentException]
        resultPredicate: com.acme.Unavailable
      empty:
        waitDuration: 10ms
        retryExceptions: []
",
        )
        .unwrap();
    let search = registry.classifier("search");
    assert_eq!(
        classify_status(&search, 503),
        Outcome::Ignored,
        "a known ignore name"
    );
    assert_eq!(
        classify_status(&search, 409),
        Outcome::Ignored,
        "a bound ignore name"
    );
    assert_eq!(classify_status(&search, 500), Outcome::Failure);
    assert_eq!(classify_status(&search, 404), Outcome::Failure);

    let attempts = |name, status| attempts(&registry, name, status);
    assert_eq!(
        attempts("results", 503).await,
        3,
        "the result predicate retries"
    );
    assert_eq!(attempts("results", 500).await, 1, "nothing else");
    assert_eq!(
        attempts("empty", 500).await,
        3,
        "an empty list: every 5xx, as by default"
    );
    assert_eq!(
        warnings(&registry),
        [
            "resilience4j.retry.instances.results.retryExceptions[0] (line 12): \
          \"com.acme.PaymentException\" is not an exception class breakwater understands: \
          ignored (no rule for it: bind the name with `Loader::bind`)",
            "resilience4j.retry.instances.results.retryExceptions (line 12): no class left that \
          breakwater understands: no error is retried"
        ]
    );
}
