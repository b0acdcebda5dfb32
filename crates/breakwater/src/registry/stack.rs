//! One name's whole resilience4j stack, in resilience4j's order, on tower's own layers.

use tower::layer::util::Stack as Composed;
use tower::limit::{ConcurrencyLimit, GlobalConcurrencyLimitLayer};
use tower::load_shed::{LoadShed, LoadShedLayer};
use tower::retry::{Retry, RetryLayer};
use tower::util::Either;
use tower_layer::Layer;

use super::retry::RetryPolicy;
use crate::circuit_breaker::{CircuitBreakerLayer, CircuitBreakerService};
use crate::classify::http::HttpClassifier;
use crate::timeout::{CallOnly, NoOverride, SharedTimeout, Timeout, TimeoutLayer};

/// A name's bulkhead ([`Registry::bulkhead`](crate::Registry::bulkhead)): tower's
/// `ConcurrencyLimit` on the name's semaphore, under tower's `LoadShed`, so that a call beyond
/// the limit is refused at once (`tower::load_shed::error::Overloaded`), as resilience4j's
/// bulkhead refuses one (`BulkheadFullException`) when its wait is 0, its default.
///
/// One property of tower's pair to know: the limit takes its permit in `poll_ready`, and a
/// service refused while the limit is full keeps its place in the semaphore's queue, so the
/// next permit freed is reserved for that service until it is polled again or dropped. Drop a
/// refused service, or clone one per request (as axum does; tower's `Retry` makes a request's
/// retries through a copy it drops with the request), and the limit keeps its full width; a
/// service kept idle after a refusal holds one permit of it until its next call.
pub type BulkheadLayer = Composed<GlobalConcurrencyLimitLayer, LoadShedLayer>;

/// The time limiter of a [`Stack`].
type TimeLimit<S> = Timeout<S, CallOnly, NoOverride, SharedTimeout>;

/// The service a [`Stack`] makes of `S`: tower's `Retry` around the breaker, around the time
/// limiter, around the bulkhead (tower's `LoadShed` over its `ConcurrencyLimit`, or nothing
/// for a name without one), around `S`.
pub type StackService<S> = Retry<
    RetryPolicy,
    CircuitBreakerService<
        Either<TimeLimit<LoadShed<ConcurrencyLimit<S>>>, TimeLimit<S>>,
        HttpClassifier,
    >,
>;

/// A name's resilience4j stack ([`Registry::stack`](crate::Registry::stack)), in
/// resilience4j's order: retry outside the breaker, the breaker outside the time limiter, the
/// time limiter outside the bulkhead. So a retry is a new call through the breaker (an open
/// breaker's refusal is not retried), and the breaker counts the time limiter's timeouts.
///
/// - Retry: the name's [`RetryPolicy`] in tower's `Retry`; a name without a retry gets a
///   policy of one attempt (no request is copied, no retry budget touched).
/// - Breaker: [`Registry::layer`](crate::Registry::layer).
/// - Time limiter: [`Registry::timeout_layer`](crate::Registry::timeout_layer), without
///   per-request overrides (any request type goes); a name without a time limiter gets no
///   limit (a timer is still armed per call, far in the future), and a reload can give it one.
/// - Bulkhead: [`BulkheadLayer`], its semaphore shared by every stack made for the name
///   ([`Registry::bulkhead`](crate::Registry::bulkhead)); a name without one gets none. A call
///   beyond the limit is refused at once with tower's `Overloaded` error, which the breaker
///   counts as a failure and the retry may retry, as resilience4j's `BulkheadFullException`
///   is.
///
/// Tower's `Retry` needs the inner service and the request to be `Clone`.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "yaml")] {
/// use breakwater::Registry;
/// use tower::ServiceBuilder;
///
/// let registry = Registry::from_yaml(
///     "
/// resilience4j:
///   retry:
///     configs:
///       default: { maxAttempts: 3, waitDuration: 100 }
///   bulkhead:
///     configs:
///       default: { maxConcurrentCalls: 100 }
///   timelimiter:
///     configs:
///       default: { timeoutDuration: 2s }
/// ",
/// )?;
/// let client = ServiceBuilder::new()
///     .layer(registry.stack("backendA"))
///     .service_fn(|order: u32| async move {
///         Ok::<_, std::io::Error>(http::Response::new(order))
///     });
/// # let _ = client;
/// # }
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Stack {
    pub(crate) retry: RetryLayer<RetryPolicy>,
    pub(crate) breaker: CircuitBreakerLayer<HttpClassifier>,
    pub(crate) timeout: TimeoutLayer<CallOnly, NoOverride, SharedTimeout>,
    pub(crate) bulkhead: Option<BulkheadLayer>,
}

impl<S> Layer<S> for Stack {
    type Service = StackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let limited = match &self.bulkhead {
            Some(bulkhead) => Either::Left(self.timeout.clone().layer(bulkhead.layer(inner))),
            None => Either::Right(self.timeout.clone().layer(inner)),
        };
        self.retry.layer(self.breaker.layer(limited))
    }
}
