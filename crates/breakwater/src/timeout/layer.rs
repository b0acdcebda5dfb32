use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use tower_layer::Layer;

use super::{CallOnly, CoveringBody, Respond504, Timeout};

/// Bounds each call of a service by a timeout: see the [module docs](super).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::{CircuitBreaker, TimeoutLayer};
/// use tower::ServiceBuilder;
///
/// let breaker = CircuitBreaker::builder("pg").build()?;
/// let client = ServiceBuilder::new()
///     .layer(breaker.layer())
///     // Inside the breaker, so that it counts timeouts; a stalled body is caught too.
///     .layer(TimeoutLayer::new(Duration::from_secs(3)).covering_body())
///     .service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::io::Error>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
///     });
/// # let _ = client;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
pub struct TimeoutLayer<M = CallOnly> {
    timeout: Duration,
    mode: PhantomData<fn() -> M>,
}

impl TimeoutLayer {
    /// Calls must finish within `timeout`, unless the request says otherwise (see
    /// [`RequestTimeout`](super::RequestTimeout)).
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            mode: PhantomData,
        }
    }

    /// The deadline also covers reading the response body: past it, the body ends with an
    /// [`Elapsed`](super::Elapsed) error. For HTTP clients, against servers that send their
    /// headers and then stall.
    pub const fn covering_body(self) -> TimeoutLayer<CoveringBody> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }

    /// A call that runs out of time is answered `504 Gateway Timeout` (an empty body, the
    /// [`Elapsed`](super::Elapsed) in the response's extensions), and the service keeps its
    /// error type: for servers, such as an axum route that must stay `Infallible`.
    pub const fn respond_504(self) -> TimeoutLayer<Respond504> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }
}

impl<M> TimeoutLayer<M> {
    /// The timeout of a call without an override.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, M> Layer<S> for TimeoutLayer<M> {
    type Service = Timeout<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_mode(inner, self.timeout)
    }
}

impl<M> Clone for TimeoutLayer<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for TimeoutLayer<M> {}

impl<M> fmt::Debug for TimeoutLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("mode", &std::any::type_name::<M>())
            .finish()
    }
}
