use tower_layer::Layer;

use super::{CircuitBreaker, CircuitBreakerService};

/// Wraps services in a [`CircuitBreakerService`] that shares one breaker; made by
/// [`CircuitBreaker::layer`] or [`CircuitBreaker::layer_with`].
///
/// # Example
///
/// ```
/// use breakwater::CircuitBreaker;
/// use tower::ServiceBuilder;
///
/// let breaker = CircuitBreaker::builder("pg").build()?;
/// let client = ServiceBuilder::new()
///     .layer(breaker.layer())
///     .service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
/// # let _ = client;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C> {
    breaker: CircuitBreaker,
    classifier: C,
    backpressure: bool,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer for `breaker` that classifies results with `classifier`.
    pub fn new(breaker: &CircuitBreaker, classifier: C) -> Self {
        Self {
            breaker: breaker.clone(),
            classifier,
            backpressure: false,
        }
    }

    /// Backpressure mode, for load balancers: while the breaker rejects calls, `poll_ready` is
    /// `Pending` (and never an error), and wakes when the breaker may let a probe through, a
    /// probe permit is given back, or the breaker is reset, disabled or otherwise moved by hand.
    ///
    /// A balancer such as `tower::balance::p2c` then routes around the endpoint instead of
    /// sending it calls that fail at once. A plain caller would wait out the whole open state:
    /// leave this off for them (the default fails fast). Needs a tokio runtime with its timer.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("replica-3").build()?;
    /// let layer = breaker.layer().backpressure();
    /// # let _ = layer;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn backpressure(mut self) -> Self {
        self.backpressure = true;
        self
    }

    /// The breaker the layer shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(
            inner,
            &self.breaker,
            self.classifier.clone(),
            self.backpressure,
        )
    }
}
