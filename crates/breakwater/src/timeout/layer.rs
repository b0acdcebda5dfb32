use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use tower_layer::Layer;

use super::{
    CallOnly, CoveringBody, FromRequest, NoOverride, Respond504, SharedTimeout, Timeout,
    TimeoutSource,
};

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
pub struct TimeoutLayer<M = CallOnly, O = FromRequest, D = Duration> {
    timeout: D,
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

impl TimeoutLayer<CallOnly, FromRequest, SharedTimeout> {
    /// Calls must finish within what `timeout` says when they start: change it and the
    /// services already built follow (see [`SharedTimeout`]).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::TimeoutLayer;
    /// use breakwater::timeout::SharedTimeout;
    ///
    /// let timeout = SharedTimeout::new(Some(Duration::from_secs(2)));
    /// let layer = TimeoutLayer::shared(timeout.clone()).covering_body();
    /// # let _ = layer;
    /// ```
    pub const fn shared(timeout: SharedTimeout) -> Self {
        Self {
            timeout,
            mode: PhantomData,
        }
    }
}

impl<M, O> TimeoutLayer<M, O, SharedTimeout> {
    /// Where its calls read their timeout.
    pub const fn source(&self) -> &SharedTimeout {
        &self.timeout
    }

    fn remode<M2, O2>(self) -> TimeoutLayer<M2, O2, SharedTimeout> {
        TimeoutLayer {
            timeout: self.timeout,
            mode: PhantomData,
        }
    }
}

impl<M> TimeoutLayer<M, FromRequest, SharedTimeout> {
    /// As [`TimeoutLayer::without_override`], for a shared timeout.
    pub fn without_override(self) -> TimeoutLayer<M, NoOverride, SharedTimeout> {
        self.remode()
    }
}

impl<O> TimeoutLayer<CallOnly, O, SharedTimeout> {
    /// As [`TimeoutLayer::covering_body`], for a shared timeout.
    pub fn covering_body(self) -> TimeoutLayer<CoveringBody, O, SharedTimeout> {
        self.remode()
    }

    /// As [`TimeoutLayer::respond_504`], for a shared timeout.
    pub fn respond_504(self) -> TimeoutLayer<Respond504, O, SharedTimeout> {
        self.remode()
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

impl<S, M, O, D: TimeoutSource> Layer<S> for TimeoutLayer<M, O, D> {
    type Service = Timeout<S, M, O, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_mode(inner, self.timeout.clone())
    }
}

impl<M, O, D: Clone> Clone for TimeoutLayer<M, O, D> {
    fn clone(&self) -> Self {
        Self {
            timeout: self.timeout.clone(),
            mode: PhantomData,
        }
    }
}

impl<M, O, D: Copy> Copy for TimeoutLayer<M, O, D> {}

impl<M, O, D: fmt::Debug> fmt::Debug for TimeoutLayer<M, O, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("mode", &std::any::type_name::<M>())
            .field("override", &std::any::type_name::<O>())
            .finish()
    }
}
