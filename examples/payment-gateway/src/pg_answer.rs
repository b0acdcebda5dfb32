//! The PG's answers are read inside the breaker, so that an answer the client cannot use counts
//! as a failed call, like a 5xx:
//!
//! - a body over the size limit ([`PgSettings::max_body`](crate::PgSettings::max_body)), of
//!   any status, fails as soon as it is known: from its `Content-Length`, or as soon as the
//!   bytes read pass the limit. The body is read no further than the frame that passes the
//!   limit, and what is kept stays under the limit (plus the buffer's own growth), whatever
//!   the PG sends. An oversized `4xx` is therefore a failure of the PG, not a rejection;
//! - a `2xx` whose body is not a payment nor a billing key (garbage, truncated JSON, another
//!   shape) fails at its end.
//!
//! The breaker records at the end of the body (its end-of-stream mode), where a body error is a
//! failure; the error names the limit or what the JSON parser said.
//!
//! ```text
//! CircuitBreakerLayer   ← sees the body fail
//! CheckAnswers          ← the limit and the check
//! TimeoutLayer          ← covering the body: a stalled or trickling answer is a timeout
//! ...
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use breakwater::BoxError;
use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

use crate::pg_client::check_answer;

/// Why an answer cannot be used.
#[derive(Debug)]
pub enum AnswerError {
    /// The body is longer than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// How long the body is, at least, in bytes: its `Content-Length`, or what was read.
        at_least: u64,
    },
    /// A `2xx` whose body is not a payment nor a billing key.
    NotAPayment(serde_json::Error),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::TooLarge { limit, at_least } => write!(
                f,
                "the PG's answer is too large: at least {at_least} bytes, over the limit of \
                 {limit} bytes (max_body)"
            ),
            AnswerError::NotAPayment(error) => {
                write!(f, "the PG's answer is not a payment: {error}")
            }
        }
    }
}

impl std::error::Error for AnswerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AnswerError::TooLarge { .. } => None,
            AnswerError::NotAPayment(error) => Some(error),
        }
    }
}

/// The service that checks the PG's answers: see the [module docs](self).
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use payment_gateway::pg_answer::CheckAnswers;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A PG that answers a 200 that is not a payment.
/// let pg = service_fn(|_: ()| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("<html>"))))
/// });
/// let response = CheckAnswers::new(pg, 64 * 1024).oneshot(()).await.unwrap();
/// let error = response.into_body().collect().await.unwrap_err();
/// assert!(error.to_string().starts_with("the PG's answer is not a payment"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CheckAnswers<S> {
    inner: S,
    limit: usize,
}

impl<S> CheckAnswers<S> {
    /// Checks the answers of `inner`, reading at most `limit` bytes of each.
    pub fn new(inner: S, limit: usize) -> Self {
        Self { inner, limit }
    }
}

impl<S, Req, B> Service<Req> for CheckAnswers<S>
where
    S: Service<Req, Response = Response<B>>,
{
    type Response = Response<CheckedBody<B>>;
    type Error = S::Error;
    type Future = CheckFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        CheckFuture {
            inner: self.inner.call(request),
            limit: self.limit,
        }
    }
}

pin_project! {
    /// The response future of [`CheckAnswers`].
    #[derive(Debug)]
    pub struct CheckFuture<F> {
        #[pin]
        inner: F,
        limit: usize,
    }
}

impl<F, B, E> Future for CheckFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CheckedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let payment = response.status().is_success();
        let limit = *this.limit;
        Poll::Ready(Ok(response.map(|body| CheckedBody {
            inner: body,
            read: BytesMut::new(),
            limit,
            payment,
            done: false,
        })))
    }
}

pin_project! {
    /// An answer's body, held whole (up to the limit) and checked at its end; it yields one data
    /// frame. Trailers are dropped: the PG's API has none.
    #[derive(Debug)]
    pub struct CheckedBody<B> {
        #[pin]
        inner: B,
        read: BytesMut,
        limit: usize,
        // A 2xx: its body must be a payment.
        payment: bool,
        done: bool,
    }
}

impl<B> Body for CheckedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let declared = this.inner.size_hint().lower();
        if declared > *this.limit as u64 {
            *this.done = true;
            return Poll::Ready(Some(Err(too_large(*this.limit, declared))));
        }
        loop {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    let total = this.read.len() + data.len();
                    if total > *this.limit {
                        *this.done = true;
                        this.read.clear();
                        return Poll::Ready(Some(Err(too_large(*this.limit, total as u64))));
                    }
                    this.read.extend_from_slice(&data);
                }
                Some(Err(error)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => {
                    *this.done = true;
                    let read = std::mem::take(this.read).freeze();
                    if *this.payment {
                        if let Err(error) = check_answer(&read) {
                            return Poll::Ready(Some(Err(Box::new(AnswerError::NotAPayment(
                                error,
                            )))));
                        }
                    }
                    return Poll::Ready((!read.is_empty()).then(|| Ok(Frame::data(read))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A 2xx with no body is checked too (it is not a payment): it must be polled. Bytes
        // already read are still to be yielded.
        self.done || (!self.payment && self.read.is_empty() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        // What was read and what is to come, never more than the limit: a body declaring more
        // yields nothing but its error.
        let inner = self.inner.size_hint();
        let read = self.read.len() as u64;
        let limit = self.limit as u64;
        let mut hint = SizeHint::new();
        hint.set_lower((read + inner.lower()).min(limit));
        hint.set_upper(
            inner
                .upper()
                .map_or(limit, |upper| (read + upper).min(limit)),
        );
        hint
    }
}

fn too_large(limit: usize, at_least: u64) -> BoxError {
    Box::new(AnswerError::TooLarge { limit, at_least })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// 100 MB, made lazily in 16 KiB frames, counting what is taken from it.
    struct Endless {
        taken: std::sync::Arc<std::sync::atomic::AtomicU64>,
        left: u64,
    }

    const FRAME: usize = 16 * 1024;

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= FRAME as u64;
            self.taken
                .fetch_add(FRAME as u64, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; FRAME])))))
        }
        // No size hint: a chunked answer.
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_read_no_further_than_the_limit() {
        for status in [http::StatusCode::OK, http::StatusCode::BAD_REQUEST] {
            let taken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counter = taken.clone();
            let pg = tower::service_fn(move |_: ()| {
                let mut response = Response::new(Endless {
                    taken: counter.clone(),
                    left: 100 << 20,
                });
                *response.status_mut() = status;
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let limit = 64 * 1024;
            let response = tower::ServiceExt::oneshot(CheckAnswers::new(pg, limit), ())
                .await
                .unwrap();
            assert_eq!(response.body().size_hint().upper(), Some(limit as u64));
            let error = response.into_body().collect().await.unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "the PG's answer is too large: at least {} bytes, over the limit of \
                     {limit} bytes (max_body)",
                    limit + FRAME
                ),
                "{status}"
            );
            // The frame that passed the limit, and not one more.
            let taken = taken.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(taken, (limit + FRAME) as u64, "{status}");
        }
    }
}
