//! A timeout for one call, with a per-request override, an option whose deadline also covers
//! the response body, and an option that answers `504 Gateway Timeout`.
//!
//! # Differences from `tower::timeout`
//!
//! - The error, [`Elapsed`], carries the timeout that ran out.
//! - A request can carry its own timeout: a [`RequestTimeout`] in an `http::Request`'s
//!   extensions overrides the layer's.
//! - [`covering_body`](TimeoutLayer::covering_body): the deadline also covers reading the
//!   response body, so a server that sends its headers and then stalls is caught.
//! - [`respond_504`](TimeoutLayer::respond_504): for servers, a call that runs out of time is
//!   answered `504 Gateway Timeout`, and the service keeps its error type.
//!
//! Put the timeout inside the circuit breaker (after it in a `ServiceBuilder`), so the breaker
//! sees the timeouts and counts them as failures.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::{Elapsed, TimeoutLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let mut slow = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(3)))
//!     .service_fn(|_: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(10)).await;
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     });
//!
//! let error = slow.ready().await?.call(http::Request::new(())).await.unwrap_err();
//! assert_eq!(error.downcast_ref::<Elapsed>().map(Elapsed::timeout), Some(Duration::from_secs(3)));
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
pub mod future;
mod layer;
mod shared;

use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use tower_service::Service;

pub use self::body::DeadlineBody;
pub use self::error::Elapsed;
pub use self::layer::TimeoutLayer;
pub use self::shared::{SharedTimeout, TimeoutSource};
use crate::BoxError;
use crate::sealed::Sealed;

/// A timeout for one request, overriding the layer's: put it in an `http::Request`'s
/// extensions.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::timeout::{RequestTimeout, TimeoutOverride};
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(RequestTimeout(Duration::from_millis(250)));
/// assert_eq!(request.timeout_override(), Some(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// A request that may carry its own timeout, overriding the layer's.
///
/// `http::Request` reads a [`RequestTimeout`] from its extensions. For a request type of your
/// own, implement it (with no method, for no override) to put a [`Timeout`] in front of it. For
/// a request type of another crate (a connector's `Uri`, say), use
/// [`TimeoutLayer::without_override`], which needs nothing of the request.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::timeout::TimeoutOverride;
///
/// struct Query { sql: String, budget: Option<Duration> }
///
/// impl TimeoutOverride for Query {
///     fn timeout_override(&self) -> Option<Duration> {
///         self.budget
///     }
/// }
///
/// /// A request that never overrides.
/// struct Ping;
/// impl TimeoutOverride for Ping {}
/// ```
pub trait TimeoutOverride {
    /// This request's own timeout, if it has one.
    fn timeout_override(&self) -> Option<Duration> {
        None
    }
}

impl<B> TimeoutOverride for http::Request<B> {
    #[inline]
    fn timeout_override(&self) -> Option<Duration> {
        self.extensions().get::<RequestTimeout>().map(|t| t.0)
    }
}

/// The default mode: a call that runs out of time fails with a boxed [`Elapsed`]; the error
/// type is [`BoxError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOnly;

/// The deadline also covers reading the response body, which becomes a [`DeadlineBody`]. For
/// HTTP clients. Chosen by [`TimeoutLayer::covering_body`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CoveringBody;

/// A call that runs out of time is answered `504 Gateway Timeout` with an empty body, and the
/// service keeps its error type. For servers. Chosen by [`TimeoutLayer::respond_504`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Respond504;

/// How a [`Timeout`] finds a request's own timeout: [`FromRequest`] (the default) or
/// [`NoOverride`]. You do not implement this trait.
pub trait ReadOverride<Request>: Sealed {
    /// The request's own timeout, if it has one.
    fn read(request: &Request) -> Option<Duration>;
}

/// A request's own timeout comes from [`TimeoutOverride`]: for an `http::Request`, a
/// [`RequestTimeout`] in its extensions. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromRequest;

/// Requests never override the timeout, and may be of any type. Chosen by
/// [`TimeoutLayer::without_override`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOverride;

impl Sealed for FromRequest {}
impl Sealed for NoOverride {}

impl<Request: TimeoutOverride> ReadOverride<Request> for FromRequest {
    #[inline]
    fn read(request: &Request) -> Option<Duration> {
        request.timeout_override()
    }
}

impl<Request> ReadOverride<Request> for NoOverride {
    #[inline]
    fn read(_: &Request) -> Option<Duration> {
        None
    }
}

/// What a [`Timeout`] answers, and its error type, in each mode: [`CallOnly`], [`CoveringBody`]
/// or [`Respond504`]. You do not implement this trait.
pub trait TimeoutMode<T, E>: Sealed {
    /// The layered service's response type.
    type Response;
    /// The layered service's error type.
    type Error;

    /// A response that arrived in time; `deadline` tells when the call's time runs out.
    fn response(
        response: T,
        deadline: impl FnOnce() -> tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Self::Response, Self::Error>;
    /// The answer to a call that ran out of `timeout`.
    fn elapsed(timeout: Duration) -> Result<Self::Response, Self::Error>;
    /// An error of the inner service.
    fn error(error: E) -> Self::Error;
}

impl Sealed for CallOnly {}
impl Sealed for CoveringBody {}
impl Sealed for Respond504 {}

impl<T, E: Into<BoxError>> TimeoutMode<T, E> for CallOnly {
    type Response = T;
    type Error = BoxError;

    #[inline]
    fn response(
        response: T,
        _: impl FnOnce() -> tokio::time::Instant,
        _: Duration,
    ) -> Result<T, BoxError> {
        Ok(response)
    }

    fn elapsed(timeout: Duration) -> Result<T, BoxError> {
        Err(Box::new(Elapsed::new(timeout)))
    }

    #[inline]
    fn error(error: E) -> BoxError {
        error.into()
    }
}

impl<B, E: Into<BoxError>> TimeoutMode<Response<B>, E> for CoveringBody {
    type Response = Response<DeadlineBody<B>>;
    type Error = BoxError;

    fn response(
        response: Response<B>,
        deadline: impl FnOnce() -> tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Self::Response, BoxError> {
        let deadline = deadline();
        Ok(response.map(|body| DeadlineBody::new(body, deadline, timeout)))
    }

    fn elapsed(timeout: Duration) -> Result<Self::Response, BoxError> {
        Err(Box::new(Elapsed::new(timeout)))
    }

    #[inline]
    fn error(error: E) -> BoxError {
        error.into()
    }
}

impl<B: Default, E> TimeoutMode<Response<B>, E> for Respond504 {
    type Response = Response<B>;
    type Error = E;

    #[inline]
    fn response(
        response: Response<B>,
        _: impl FnOnce() -> tokio::time::Instant,
        _: Duration,
    ) -> Result<Response<B>, E> {
        Ok(response)
    }

    fn elapsed(timeout: Duration) -> Result<Response<B>, E> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        response.extensions_mut().insert(Elapsed::new(timeout));
        Ok(response)
    }

    #[inline]
    fn error(error: E) -> E {
        error
    }
}

/// A service whose calls must finish within a timeout; made by [`TimeoutLayer`].
///
/// The timeout runs from `call` (not from `poll_ready`), on tokio's timer: it needs a tokio
/// runtime with timers enabled. See the [module docs](self) for the modes.
pub struct Timeout<S, M = CallOnly, O = FromRequest, D = Duration> {
    inner: S,
    timeout: D,
    mode: PhantomData<fn() -> (M, O)>,
}

impl<S> Timeout<S> {
    /// Bounds the calls of `inner` by `timeout`.
    pub const fn new(inner: S, timeout: Duration) -> Self {
        Self::with_mode(inner, timeout)
    }
}

impl<S, M, O, D> Timeout<S, M, O, D> {
    pub(crate) const fn with_mode(inner: S, timeout: D) -> Self {
        Self {
            inner,
            timeout,
            mode: PhantomData,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, M, O> Timeout<S, M, O> {
    /// The timeout of a call without an override.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, M, O> Timeout<S, M, O, SharedTimeout> {
    /// Where its calls read their timeout.
    pub const fn source(&self) -> &SharedTimeout {
        &self.timeout
    }
}

impl<S, M, O, D, Request> Service<Request> for Timeout<S, M, O, D>
where
    S: Service<Request>,
    D: TimeoutSource,
    M: TimeoutMode<S::Response, S::Error>,
    O: ReadOverride<Request>,
{
    type Response = M::Response;
    type Error = M::Error;
    type Future = future::ResponseFuture<S::Future, M>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(M::error)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        let timeout = O::read(&request).unwrap_or_else(|| self.timeout.current());
        // The request moves straight into the inner service (a move through a helper would
        // copy it once more).
        let future = self.inner.call(request);
        future::ResponseFuture::new(future, timeout)
    }
}

impl<S: Clone, M, O, D: Clone> Clone for Timeout<S, M, O, D> {
    fn clone(&self) -> Self {
        Self::with_mode(self.inner.clone(), self.timeout.clone())
    }
}

impl<S: fmt::Debug, M, O, D: fmt::Debug> fmt::Debug for Timeout<S, M, O, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("mode", &std::any::type_name::<M>())
            .field("override", &std::any::type_name::<O>())
            .finish()
    }
}
