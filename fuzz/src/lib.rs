//! What the fuzz targets share: driving everything a loaded registry hands out, and turning
//! bytes into a response head and trailers.

use std::time::Duration;

use breakwater::classify::Outcome;
use breakwater::{CircuitState, Registry};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// Names a fuzzed configuration may well use (short, so the fuzzer finds them), and one no
/// configuration names.
const NAMES: [&str; 5] = ["a", "b", "default", "backendA", "never-configured"];

/// Uses everything a loaded registry gives out, by every name: breakers (driven through a full
/// cycle of states), classifiers, keyed layers (built), chaos layers, time limiters, retry
/// policies (every wait), bulkheads, stacks, health, reload. Any
/// panic is a bug: the loader accepted what it cannot use. Everything built is dropped with
/// the registry, and leak detection is on: a breaker that kept its memory would be reported.
pub fn exercise(registry: &Registry) {
    for name in NAMES {
        let _ = registry.classifier(name);
        let _ = registry.chaos(name);
    }
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("120"));
    for name in NAMES {
        let breaker = registry.circuit_breaker(name);
        let classifier = registry.classifier(name);
        let outcome = classifier.classify_response(status, &headers);
        for _ in 0..3 {
            if let Ok(permit) = breaker.try_acquire() {
                permit.record(outcome);
            }
        }
        for state in [
            CircuitState::HalfOpen,
            CircuitState::Open,
            CircuitState::MetricsOnly,
            CircuitState::Disabled,
            CircuitState::ForcedOpen,
        ] {
            breaker.transition_to(state);
            if let Ok(permit) = breaker.try_acquire() {
                permit.record(Outcome::Failure);
            }
            let _ = breaker.metrics();
        }
        breaker.reset();
        let _ = registry.keyed_layer(name);
        let _ = registry.layer(name);
        let _ = registry.timeout(name);
        let _ = registry.timeout_layer(name);
        if let Some(policy) = registry.retry_policy(name) {
            for n in [0, 1, 2, 64, u32::MAX] {
                let _ = policy.wait_before(n);
            }
        }
        let _ = registry.bulkhead(name);
        let _ = registry.stack(name);
    }
    let _ = registry.health();
    let other = Registry::new();
    let _ = other.reload(registry);
    let _ = registry.reload(&Registry::new());
}

/// What the config targets check of a load of arbitrary text: a registry whose every part
/// works, or an error whose message can be formatted.
pub fn loaded(result: Result<Registry, breakwater::registry::LoadError>) {
    match result {
        Ok(registry) => exercise(&registry),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// A response head and its body's trailers, read from fuzz input:
/// two bytes of status, then `name:value` lines; an empty line starts the trailers.
pub fn response(data: &[u8]) -> Option<(Response<()>, Option<HeaderMap>)> {
    let (status, rest) = data.split_first_chunk::<2>()?;
    let status = StatusCode::from_u16(u16::from_be_bytes(*status)).ok()?;
    let mut head = HeaderMap::new();
    let mut trailers: Option<HeaderMap> = None;
    for line in rest.split(|&b| b == b'\n') {
        if line.is_empty() {
            trailers.get_or_insert_with(HeaderMap::new);
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        match &mut trailers {
            Some(trailers) => trailers.append(name, value),
            None => head.append(name, value),
        };
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = head;
    Some((response, trailers))
}

/// Longest wait a `Retry-After` may set in these targets' classifiers.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3_600);
