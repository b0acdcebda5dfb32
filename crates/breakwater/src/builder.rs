//! `ServiceBuilder` methods for breakwater's layers.

use std::time::Duration;

use tower::ServiceBuilder;
use tower_layer::Stack;

use crate::classify::http::HttpClassifier;
use crate::{CircuitBreaker, CircuitBreakerLayer, TimeoutLayer};

/// Adds breakwater's layers to a [`ServiceBuilder`], so that a stack reads as it runs.
///
/// `deadline` is breakwater's [`TimeoutLayer`] (`ServiceBuilder` already has a `timeout`, from
/// tower).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::{BreakwaterExt, CircuitBreaker};
/// use tower::ServiceBuilder;
///
/// let breaker = CircuitBreaker::builder("pg").build()?;
/// let client = ServiceBuilder::new()
///     .circuit_breaker(&breaker)
///     .deadline(Duration::from_secs(3))
///     .service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
/// # let _ = client;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
pub trait BreakwaterExt<L> {
    /// Adds `breaker`'s HTTP layer ([`CircuitBreaker::layer`]): 5xx and errors fail, 4xx is
    /// ignored. For another classifier or mode, `.layer(breaker.layer_with(..))`.
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<HttpClassifier>, L>>;

    /// Adds a [`TimeoutLayer`] of `timeout`.
    fn deadline(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>>;
}

impl<L> BreakwaterExt<L> for ServiceBuilder<L> {
    fn circuit_breaker(
        self,
        breaker: &CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<HttpClassifier>, L>> {
        self.layer(breaker.layer())
    }

    fn deadline(self, timeout: Duration) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(timeout))
    }
}
