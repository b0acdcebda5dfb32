use std::fmt;
use std::marker::PhantomData;

use tower_layer::Layer;

use super::recording::{AtEndOfStream, AtResponse};
use super::reject::{With503, WithError};
use super::{CircuitBreaker, CircuitBreakerService};

/// Wraps services in a [`CircuitBreakerService`] that shares one breaker; made by
/// [`CircuitBreaker::layer`] or [`CircuitBreaker::layer_with`].
///
/// Its methods choose the modes:
///
/// | method | what changes |
/// |---|---|
/// | (none) | a rejected call fails with [`CircuitOpen`](super::CircuitOpen); outcomes are recorded when the response arrives |
/// | [`end_of_stream`](Self::end_of_stream) | outcomes are recorded when the response body ends (gRPC trailers, body errors, body deadlines) |
/// | [`respond_503`](Self::respond_503) | a rejected call is answered `503` with `Retry-After`, and the inner error type stays (servers) |
/// | [`backpressure`](Self::backpressure) | an open breaker makes `poll_ready` wait instead of failing calls (load balancers) |
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
pub struct CircuitBreakerLayer<C, R = WithError, P = AtResponse> {
    breaker: CircuitBreaker,
    classifier: C,
    backpressure: bool,
    mode: PhantomData<fn() -> (R, P)>,
}

impl<C> CircuitBreakerLayer<C> {
    /// A layer for `breaker` that classifies results with `classifier`.
    pub fn new(breaker: &CircuitBreaker, classifier: C) -> Self {
        Self {
            breaker: breaker.clone(),
            classifier,
            backpressure: false,
            mode: PhantomData,
        }
    }
}

impl<C, P> CircuitBreakerLayer<C, WithError, P> {
    /// A layer for `breaker` that records in mode `P` with `classifier`.
    #[cfg_attr(not(feature = "tower-http"), allow(dead_code))]
    pub(crate) fn recording_at(breaker: &CircuitBreaker, classifier: C) -> Self {
        Self {
            breaker: breaker.clone(),
            classifier,
            backpressure: false,
            mode: PhantomData,
        }
    }
}

impl<C, R, P> CircuitBreakerLayer<C, R, P> {
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

    /// Answers a rejected call `503 Service Unavailable` with `Retry-After`, instead of an
    /// error: see [`With503`]. The layered service keeps the inner service's error type, so an
    /// axum route stays `Infallible`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use breakwater::CircuitBreaker;
    /// use http_body_util::Empty;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::builder("orders").build()?;
    /// breaker.force_open();
    /// let mut route = breaker.layer().respond_503().layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<bytes::Bytes>::new()))
    /// }));
    /// let response = route.ready().await?.call(http::Request::new(())).await?;
    /// assert_eq!(response.status(), 503);
    /// # Ok(())
    /// # }
    /// ```
    pub fn respond_503(self) -> CircuitBreakerLayer<C, With503, P> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier: self.classifier,
            backpressure: self.backpressure,
            mode: PhantomData,
        }
    }

    /// The breaker the layer shares.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<C, R> CircuitBreakerLayer<C, R, AtResponse> {
    /// Records each call's outcome when its response body ends, not when its head arrives:
    /// see [`AtEndOfStream`]. For gRPC (whose status comes in the trailers), for bodies that may
    /// fail half-way, and for a timeout that covers the body.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("blobs").build()?;
    /// let layer = breaker.layer().end_of_stream();
    /// # let _ = layer;
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn end_of_stream(self) -> CircuitBreakerLayer<C, R, AtEndOfStream> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier: self.classifier,
            backpressure: self.backpressure,
            mode: PhantomData,
        }
    }
}

impl<S, C: Clone, R, P> Layer<S> for CircuitBreakerLayer<C, R, P> {
    type Service = CircuitBreakerService<S, C, R, P>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_mode(
            inner,
            &self.breaker,
            self.classifier.clone(),
            self.backpressure,
        )
    }
}

impl<C: Clone, R, P> Clone for CircuitBreakerLayer<C, R, P> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            backpressure: self.backpressure,
            mode: PhantomData,
        }
    }
}

impl<C: fmt::Debug, R, P> fmt::Debug for CircuitBreakerLayer<C, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker)
            .field("classifier", &self.classifier)
            .field("backpressure", &self.backpressure)
            .field("on_open", &std::any::type_name::<R>())
            .field("record_at", &std::any::type_name::<P>())
            .finish()
    }
}
