//! The future of a call through a [`Timeout`](super::Timeout).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::TimeoutMode;

pin_project! {
    /// The response future of [`Timeout`](super::Timeout): the service's future, raced against
    /// the deadline.
    pub struct ResponseFuture<F, M> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
        // Nanoseconds, not a `Duration`: 8 bytes less to move with every move of the future.
        timeout: u64,
        mode: PhantomData<fn() -> M>,
    }
}

impl<F, M> ResponseFuture<F, M> {
    /// Starts the timer of a call just started, as tower's timeout does (call first, then
    /// timer: the order lets the compiler build the large `Sleep` in place).
    #[inline]
    pub(crate) fn new(future: F, timeout: Duration) -> Self {
        Self {
            future,
            sleep: tokio::time::sleep(timeout),
            timeout: u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
            mode: PhantomData,
        }
    }
}

impl<F, M, T, E> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<T, E>>,
    M: TimeoutMode<T, E>,
{
    type Output = Result<M::Response, M::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The response first, as tower's timeout does: one that is ready wins at the deadline.
        if let Poll::Ready(result) = this.future.poll(cx) {
            let sleep = this.sleep.as_ref();
            return Poll::Ready(match result {
                Ok(response) => M::response(
                    response,
                    || sleep.deadline(),
                    Duration::from_nanos(*this.timeout),
                ),
                Err(error) => Err(M::error(error)),
            });
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(M::elapsed(Duration::from_nanos(*this.timeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F, M> fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &Duration::from_nanos(self.timeout))
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}
