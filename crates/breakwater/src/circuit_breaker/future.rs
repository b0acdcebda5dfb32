//! The future of a call through a [`CircuitBreakerService`](super::CircuitBreakerService).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::recording::Finish;
use super::reject::OnOpen;
use super::{CallPermit, CircuitOpen};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService): the
    /// service's own future, whose result is recorded when it completes (or whose body records
    /// when it ends), or the answer to a rejected call.
    ///
    /// Dropping it before it completes records nothing and gives back a half-open permit.
    pub struct ResponseFuture<F, K, R> {
        #[pin]
        kind: Kind<F, K>,
        mode: PhantomData<fn() -> R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, K> {
        Called {
            #[pin]
            future: F,
            pending: Option<(CallPermit, K)>,
        },
        // Boxed: the box a `BoxError` needs anyway, made once, and one pointer in the future.
        Rejected {
            open: Option<Box<CircuitOpen>>,
        },
    }
}

impl<F, K, R> ResponseFuture<F, K, R> {
    pub(crate) fn called(future: F, permit: CallPermit, call: K) -> Self {
        Self {
            kind: Kind::Called {
                future,
                pending: Some((permit, call)),
            },
            mode: PhantomData,
        }
    }

    pub(crate) fn rejected(open: Box<CircuitOpen>) -> Self {
        Self {
            kind: Kind::Rejected { open: Some(open) },
            mode: PhantomData,
        }
    }
}

impl<F, K, R, T, E> Future for ResponseFuture<F, K, R>
where
    F: Future<Output = Result<T, E>>,
    K: Finish<T, E>,
    R: OnOpen<K::Output, E>,
{
    type Output = Result<K::Output, R::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, pending } => {
                let result = ready!(future.poll(cx));
                // Taken before finishing: should a classifier panic, the permit is dropped (a
                // cancelled call) rather than leaked.
                let (permit, call) = pending
                    .take()
                    .expect("a breakwater ResponseFuture was polled after it completed");
                Poll::Ready(call.finish(permit, result).map_err(R::error))
            }
            KindProj::Rejected { open } => Poll::Ready(R::rejected(
                open.take()
                    .expect("a breakwater ResponseFuture was polled after it completed"),
            )),
        }
    }
}

impl<F, K, R> fmt::Debug for ResponseFuture<F, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Called { pending, .. } => f
                .debug_struct("ResponseFuture")
                .field("permit", &pending.as_ref().map(|(permit, _)| permit))
                .finish_non_exhaustive(),
            Kind::Rejected { open } => f
                .debug_struct("ResponseFuture")
                .field("rejected", open)
                .finish(),
        }
    }
}
