//! What the fuzz targets share: driving everything a loaded registry hands out, and turning
//! bytes into a response head and trailers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use breakwater::classify::Outcome;
use breakwater::{CircuitState, Registry};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// Names a fuzzed configuration may well use (short, so the fuzzer finds them), and one no
/// configuration names.
const NAMES: [&str; 5] = ["a", "b", "default", "backendA", "never-configured"];

/// The memory a fuzzing process lets leaked breakers take. A breaker's core is never freed (by
/// design: calls reach it through a plain `&'static`, see `CircuitBreaker`), and one with a
/// 65,535-call window holds about 1 MiB, so building breakers for every input would exhaust
/// memory within a minute. Past this budget, inputs are still loaded, validated and their
/// errors formatted, and the parts that build no breaker are still used.
const BUDGET: usize = 768 << 20;

/// Bytes allocated and not yet freed, by the counting allocator below.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes so that [`exercise`] can keep to its budget.
struct Counting;

// SAFETY: every call is forwarded to `System` with the caller's own arguments; the counter is
// only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Uses everything a loaded registry gives out, by every name: breakers (driven through a full
/// cycle of states), classifiers, keyed layers (built), chaos layers, health, reload. Any
/// panic is a bug: the loader accepted what it cannot use.
pub fn exercise(registry: &Registry) {
    for name in NAMES {
        let _ = registry.classifier(name);
        let _ = registry.chaos(name);
    }
    if LIVE.load(Ordering::Relaxed) > BUDGET {
        return;
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
