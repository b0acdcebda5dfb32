//! A response body that records the call's outcome when it ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::CallPermit;
use crate::BoxError;
use crate::classify::Outcome;

/// Settles a call's outcome at the end of its response body, once. You do not implement this
/// trait.
pub trait ClassifyEnd: crate::sealed::Sealed {
    /// The body ended, with these trailers if it had any.
    fn classify_end(self, trailers: Option<&HeaderMap>) -> Outcome;
    /// The body failed with this error.
    fn classify_error(self, error: &BoxError) -> Outcome;
    /// What the head said: recorded if the body is dropped before its end.
    fn head(&self) -> Outcome;
}

pin_project! {
    /// A response body that records its call's outcome when it ends or fails; dropped before
    /// its end, it records what its head said (a success head counts as a success), timed to
    /// the drop. Made in the [`AtEndOfStream`](super::AtEndOfStream) mode; its errors are boxed.
    ///
    /// A default body (for a response the breaker answers itself) records nothing.
    pub struct RecordingBody<B, K: ClassifyEnd> {
        #[pin]
        inner: B,
        pending: Pending<K>,
    }
}

/// The call a body still owes its breaker (`None` once recorded); should the body be dropped
/// before its end, what its head said is recorded.
struct Pending<K: ClassifyEnd> {
    call: Option<(CallPermit, K)>,
}

impl<K: ClassifyEnd> Drop for Pending<K> {
    fn drop(&mut self) {
        // Dropped before its end: a reader that stops early says nothing against the
        // downstream, so the head's outcome stands.
        if let Some((permit, end)) = self.call.take() {
            permit.record(end.head());
        }
    }
}

impl<B: Body, K: ClassifyEnd> RecordingBody<B, K> {
    /// A body that records when it ends. The caller records at once a body already at its end
    /// (with the head's headers as trailers).
    pub(crate) fn new(inner: B, permit: CallPermit, end: K) -> Self {
        Self {
            inner,
            pending: Pending {
                call: Some((permit, end)),
            },
        }
    }
}

impl<B, K: ClassifyEnd> RecordingBody<B, K> {
    /// A body whose call is already recorded.
    pub(crate) fn recorded(inner: B) -> Self {
        Self {
            inner,
            pending: Pending { call: None },
        }
    }

    /// The body it wraps.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

fn settle<K: ClassifyEnd>(pending: &mut Pending<K>, outcome: impl FnOnce(K) -> Outcome) {
    if let Some((permit, end)) = pending.call.take() {
        permit.record(outcome(end));
    }
}

impl<B, K> Body for RecordingBody<B, K>
where
    B: Body,
    B::Error: Into<BoxError>,
    K: ClassifyEnd,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    settle(this.pending, |end| end.classify_end(Some(trailers)));
                } else if this.inner.is_end_stream() {
                    // The last frame: whoever reads this body may stop polling now.
                    settle(this.pending, |end| end.classify_end(None));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error = error.into();
                settle(this.pending, |end| end.classify_error(&error));
                Poll::Ready(Some(Err(error)))
            }
            None => {
                settle(this.pending, |end| end.classify_end(None));
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Default, K: ClassifyEnd> Default for RecordingBody<B, K> {
    fn default() -> Self {
        Self::recorded(B::default())
    }
}

impl<B: fmt::Debug, K: ClassifyEnd> fmt::Debug for RecordingBody<B, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingBody")
            .field("inner", &self.inner)
            .field("recorded", &self.pending.call.is_none())
            .finish()
    }
}
