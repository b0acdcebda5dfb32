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
    /// It catches a server that sends its headers and then stalls (or trickles) the body.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
        expired: bool,
    }
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Instant, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: sleep_until(deadline),
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
        if this.sleep.poll(cx).is_ready() {
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
            .field("deadline", &self.sleep.deadline())
            .field("expired", &self.expired)
            .finish()
    }
}
