//! When a call's outcome is recorded: as its response arrives, or when the response body ends.

use std::fmt;
use std::marker::PhantomData;

use http::Response;
use http_body::Body;

use super::CallPermit;
use super::body::{ClassifyEnd, RecordingBody};
use crate::classify::{Classify, Outcome};
use crate::sealed::Sealed;

/// When a layer records a call's outcome, with a classifier `C`: the mode `P` of
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer) and
/// [`CircuitBreakerService`](super::CircuitBreakerService).
///
/// [`AtResponse`] (the default) records when the response (or error) arrives;
/// [`AtEndOfStream`] records when the response body ends. With the `tower-http` feature,
/// `tower_http::TowerHttp` makes a tower-http classifier per request. You do not implement this trait; it appears in the bounds of the layered service.
pub trait RecordAt<C, Req, Res, E>: Sealed {
    /// What travels with one call, from its request to its result.
    type Call: Finish<Res, E>;

    /// Starts a call with this request.
    fn start(classifier: &C, request: &Req) -> Self::Call;
}

/// The end of a call: records its outcome now, or arranges for it to be recorded later (by
/// wrapping the response body). See [`RecordAt`].
pub trait Finish<Res, E>: Sealed {
    /// What the caller gets: the response itself, or the response with a recording body.
    type Output;

    /// Records (or arranges to record) the outcome of this result on `permit`.
    fn finish(self, permit: CallPermit, result: Result<Res, E>) -> Result<Self::Output, E>;
}

/// Records a call's outcome when its response (or error) arrives: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtResponse;

/// One call recorded when its response arrives: the classifier.
#[derive(Debug)]
pub struct ResponseCall<C>(C);

impl Sealed for AtResponse {}
impl Sealed for AtEndOfStream {}
impl<C> Sealed for ResponseCall<C> {}
impl<C, E> Sealed for EndOfStreamCall<C, E> {}
impl<C> Sealed for HeadOutcome<C> {}

impl<C, Req, Res, E> RecordAt<C, Req, Res, E> for AtResponse
where
    C: Classify<Res, E>,
{
    type Call = ResponseCall<C>;

    #[inline]
    fn start(classifier: &C, _: &Req) -> Self::Call {
        ResponseCall(classifier.for_call())
    }
}

impl<C, Res, E> Finish<Res, E> for ResponseCall<C>
where
    C: Classify<Res, E>,
{
    type Output = Res;

    #[inline]
    fn finish(self, permit: CallPermit, result: Result<Res, E>) -> Result<Res, E> {
        permit.record(self.0.classify(result.as_ref()));
        result
    }
}

/// Records a call's outcome when its response body ends, not when its head arrives; chosen
/// by [`CircuitBreakerLayer::end_of_stream`](super::CircuitBreakerLayer::end_of_stream).
///
/// The head is classified as usual. A head that is already a failure (a `5xx`, a gRPC error in
/// the headers) is recorded at once: whatever the body does, the call failed, and a client that
/// drops the body of an error response still has it counted. Otherwise, when the body ends,
/// the classifier's [`classify_end`](Classify::classify_end) sees the trailers (gRPC puts its
/// status there), and when the body fails (a reset stream, a body deadline),
/// [`classify_body_error`](Classify::classify_body_error) decides (a failure by default: only
/// in this mode do body errors count). The call's duration, for slow-call detection, runs to
/// the end of the body. A body dropped before its end records what its head said, timed to
/// the drop: a client that reads part of a `200` and stops says nothing against the
/// downstream, so the call counts as a success (recording nothing would leave only the
/// failures, and push the failure rate up). A body already at its end when the head arrives (`204`, the answer to a `HEAD` request, a
/// trailers-only gRPC answer) is recorded at once, with the head's headers as its trailers. A
/// half-open permit is held until the outcome is known.
///
/// The response body becomes a [`RecordingBody`], whose errors are boxed.
///
/// # Example
///
/// ```
/// use breakwater::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder("downloads").build()?;
/// // A download that fails half-way counts as a failure.
/// let layer = breaker.layer().end_of_stream();
/// # let _ = layer;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AtEndOfStream;

/// One call recorded at the end of its body: the classifier, until the response arrives.
pub struct EndOfStreamCall<C, E>(C, PhantomData<fn() -> E>);

impl<C, E> fmt::Debug for EndOfStreamCall<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndOfStreamCall")
    }
}

impl<C, Req, B, E> RecordAt<C, Req, Response<B>, E> for AtEndOfStream
where
    C: Classify<Response<B>, E>,
    B: Body,
{
    type Call = EndOfStreamCall<C, E>;

    #[inline]
    fn start(classifier: &C, _: &Req) -> Self::Call {
        EndOfStreamCall(classifier.for_call(), PhantomData)
    }
}

impl<C, B, E> Finish<Response<B>, E> for EndOfStreamCall<C, E>
where
    C: Classify<Response<B>, E>,
    B: Body,
{
    type Output = Response<RecordingBody<B, HeadOutcome<C>>>;

    fn finish(self, permit: CallPermit, result: Result<Response<B>, E>) -> Result<Self::Output, E> {
        let classifier = self.0;
        match result {
            Ok(response) => {
                let head = Classify::<Response<B>, E>::classify(&classifier, Ok(&response));
                if head.is_failure() {
                    // Whatever the body does, the call failed; and a client that drops the body
                    // of an error response must still have it counted.
                    permit.record(head);
                    return Ok(response.map(RecordingBody::recorded));
                }
                if response.body().is_end_stream() {
                    // Nothing will be polled (a 204, a trailers-only gRPC answer): the head's
                    // headers are all the trailers there are.
                    let end = Classify::<Response<B>, E>::classify_end(
                        &classifier,
                        head,
                        Some(response.headers()),
                    );
                    permit.record(end);
                    return Ok(response.map(RecordingBody::recorded));
                }
                let end = HeadOutcome {
                    classifier,
                    head,
                    settle: |classifier, head, ending| match ending {
                        Ending::Trailers(trailers) => {
                            Classify::<Response<B>, E>::classify_end(classifier, head, trailers)
                        }
                        Ending::Error(error) => {
                            Classify::<Response<B>, E>::classify_body_error(classifier, head, error)
                        }
                    },
                };
                Ok(response.map(|body| RecordingBody::new(body, permit, end)))
            }
            Err(error) => {
                permit.record(Classify::<Response<B>, E>::classify(
                    &classifier,
                    Err(&error),
                ));
                Err(error)
            }
        }
    }
}

/// The outcome of a response head, and the classifier that will settle it at the end of the
/// body.
///
/// The classifier's methods are resolved when the head arrives, where the classifier's
/// bounds are known, and kept as one function pointer: the body's type then carries no bound
/// on the response or error types, so a future reading the body stays provably `Send` (a
/// bound like `E: 'static` on a boxed error, proven inside an `async` block, would not be).
pub struct HeadOutcome<C> {
    classifier: C,
    head: Outcome,
    settle: fn(&C, Outcome, Ending<'_>) -> Outcome,
}

/// How a body ended: with its trailers (if any), or failing.
enum Ending<'a> {
    Trailers(Option<&'a http::HeaderMap>),
    Error(&'a (dyn std::error::Error + 'static)),
}

impl<C> fmt::Debug for HeadOutcome<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadOutcome")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<C> ClassifyEnd for HeadOutcome<C> {
    fn classify_end(self, trailers: Option<&http::HeaderMap>) -> Outcome {
        (self.settle)(&self.classifier, self.head, Ending::Trailers(trailers))
    }

    fn classify_error(self, error: &crate::BoxError) -> Outcome {
        (self.settle)(&self.classifier, self.head, Ending::Error(&**error))
    }

    fn head(&self) -> Outcome {
        self.head
    }
}
