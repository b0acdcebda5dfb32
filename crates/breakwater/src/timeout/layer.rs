use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use tower_layer::Layer;

use super::{CallOnly, CoveringBody, FromRequest, NoOverride, Respond504, Timeout};

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
pub struct TimeoutLayer<M = CallOnly, O = FromRequest> {
    timeout: Duration,
    mode: PhantomData<fn() -> (M, O)>,
}

impl TimeoutLayer {
    /// Calls must finish within `timeout`, unless the request says otherwise (see
    /// [`RequestTimeout`](super::RequestTimeout)). The request type must implement
    /// [`TimeoutOverride`](super::TimeoutOverride), as `http::Request` does; for any other,
    /// see [`without_override`](Self::without_override).
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            mode: PhantomData,
        }
    }
}

impl<M> TimeoutLayer<M> {
    /// Ignores per-request overrides, and so accepts requests of any type, like
    /// `tower::timeout` (a hyper connector's `Uri`, for a connect timeout).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::TimeoutLayer;
    /// use tower::{Layer, service_fn};
    ///
    /// let connect = service_fn(|uri: http::Uri| async move { Ok::<_, std::io::Error>(uri) });
    /// let connect = TimeoutLayer::new(Duration::from_secs(1)).without_override().layer(connect);
    /// # let _ = connect;
    /// ```
    pub const fn without_override(self) -> TimeoutLayer<M, NoOverride> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }
}

impl<O> TimeoutLayer<CallOnly, O> {
    /// The deadline also covers reading the response body: past it, the body ends with an
    /// [`Elapsed`](super::Elapsed) error. For HTTP clients, against servers that send their
    /// headers and then stall.
    pub const fn covering_body(self) -> TimeoutLayer<CoveringBody, O> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }

    /// A call that runs out of time is answered `504 Gateway Timeout` (an empty body, the
    /// [`Elapsed`](super::Elapsed) in the response's extensions), and the service keeps its
    /// error type: for servers, such as an axum route that must stay `Infallible`.
    pub const fn respond_504(self) -> TimeoutLayer<Respond504, O> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }
}

impl<M, O> TimeoutLayer<M, O> {
    /// The timeout of a call without an override.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, M, O> Layer<S> for TimeoutLayer<M, O> {
    type Service = Timeout<S, M, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_mode(inner, self.timeout)
    }
}

impl<M, O> Clone for TimeoutLayer<M, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M, O> Copy for TimeoutLayer<M, O> {}

impl<M, O> fmt::Debug for TimeoutLayer<M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("mode", &std::any::type_name::<M>())
            .field("override", &std::any::type_name::<O>())
            .finish()
    }
}
