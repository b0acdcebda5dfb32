//! A response body with a deadline.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::Elapsed;
use crate::BoxError;

pin_project! {
    /// A response body that must be read before its call's deadline: past it, the body ends
    /// with an [`Elapsed`] error. Made by [`Timeout`](super::Timeout) in the
    /// [`CoveringBody`](super::CoveringBody) mode; its errors are boxed.
    ///
    /// It catches a server that sends its headers and then stalls (or trickles) the body. Its
    /// timer is made the first time the body has nothing to give: a body read at once (a small
    /// answer, already in its buffers) never touches tokio's timer. So the first poll that
    /// finds the body waiting must run inside a tokio runtime with timers, as the call did.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Timer,
        timeout: Duration,
        expired: bool,
    }
}

pin_project! {
    /// The body's timer: a deadline, and a tokio timer once one is needed.
    #[project = TimerProj]
    enum Timer {
        Deadline { at: Instant },
        Armed { #[pin] sleep: Sleep },
    }
}

impl Timer {
    fn deadline(&self) -> Instant {
        match self {
            Timer::Deadline { at } => *at,
            Timer::Armed { sleep } => sleep.deadline(),
        }
    }
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Instant, timeout: Duration) -> Self {
        Self {
            inner,
            timer: Timer::Deadline { at: deadline },
            timeout,
            expired: false,
        }
    }

    /// The body it wraps.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        // What has arrived is delivered, even at the deadline.
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let mut timer = this.timer;
        if let TimerProj::Deadline { at } = timer.as_mut().project() {
            let sleep = sleep_until(*at);
            timer.set(Timer::Armed { sleep });
        }
        let elapsed = match timer.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx).is_ready(),
            // Armed just above.
            TimerProj::Deadline { .. } => false,
        };
        if elapsed {
            *this.expired = true;
            return Poll::Ready(Some(Err(Box::new(Elapsed::new(*this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.expired {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("inner", &self.inner)
            .field("deadline", &self.timer.deadline())
            .field("expired", &self.expired)
            .finish()
    }
}
