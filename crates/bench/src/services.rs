//! The services behind every breaker: one that answers `200` at once (or fails), one that
//! waits once; and the thinnest tower adapters a user would write for failsafe and recloser,
//! which wrap futures and are not tower middleware.
//!
//! Requests and responses are HTTP (`http::Request<()>`, `http::Response<()>`), as in a
//! client or a server: breakwater's default layer classifies them by status, and
//! `tower_http::timeout` needs them.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::Response;
use recloser::AsyncRecloser;
use tower::Service;

use crate::measure::{Req, Res};

/// The error of a failing call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// A service that is always ready and answers at once: `200`, or failing with [`Boom`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bare {
    fail: bool,
}

pub(crate) const OK: Bare = Bare { fail: false };
pub(crate) const FAILING: Bare = Bare { fail: true };

impl Service<Req> for Bare {
    type Response = Res;
    type Error = Boom;
    type Future = Ready<Result<Res, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, _: Req) -> Self::Future {
        ready(if self.fail {
            Err(Boom)
        } else {
            Ok(Response::new(()))
        })
    }
}

/// A service that answers `200` at once, or fails while its switch is on: for a breaker that
/// only trips the service it was layered on (seatbelt makes a circuit per `layer` call), so
/// the service that trips it must be the one measured. An open breaker never calls it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Switched {
    fail: Arc<AtomicBool>,
}

impl Switched {
    pub(crate) fn fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::Relaxed);
    }
}

impl Service<Req> for Switched {
    type Response = Res;
    type Error = Boom;
    type Future = Ready<Result<Res, Boom>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let fail = self.fail.load(Ordering::Relaxed);
        Bare { fail }.call(request)
    }
}

/// A service that is always ready and answers `200` at the second poll: a call that waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitsOnce;

impl Service<Req> for WaitsOnce {
    type Response = Res;
    type Error = Boom;
    type Future = YieldOnce;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, _: Req) -> Self::Future {
        YieldOnce { yielded: false }
    }
}

/// Pending at the first poll (waking itself), ready at the second.
#[derive(Debug)]
pub(crate) struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = Result<Res, Boom>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yielded {
            return Poll::Ready(Ok(Response::new(())));
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// failsafe's breaker made a tower service: the inner service's readiness, and its future
/// handed to the breaker.
#[derive(Clone)]
pub(crate) struct Wrapped<B> {
    pub(crate) breaker: B,
    pub(crate) inner: Bare,
}

impl<B: failsafe::futures::CircuitBreaker> Service<Req> for Wrapped<B> {
    type Response = Res;
    type Error = failsafe::Error<Boom>;
    type Future = failsafe::futures::ResponseFuture<
        Ready<Result<Res, Boom>>,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

/// recloser's adapter: a separate type, as `AsyncRecloser` is not a failsafe breaker.
#[derive(Clone)]
pub(crate) struct Reclosed {
    pub(crate) breaker: AsyncRecloser,
    pub(crate) inner: Bare,
}

impl Service<Req> for Reclosed {
    type Response = Res;
    type Error = recloser::Error<Boom>;
    type Future = recloser::RecloserFuture<Ready<Result<Res, Boom>>, recloser::AnyError>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(recloser::Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}
