//! Driving a breaker with tower-http's classifiers (feature `tower-http`).
//!
//! Any [`MakeClassifier`] of tower-http drives a breaker through
//! [`CircuitBreaker::tower_http_layer`](crate::CircuitBreaker::tower_http_layer): a classifier
//! is made from each request, a response it classifies at once is recorded at once, and one
//! that needs the end of the stream is recorded when the body ends.
//!
//! tower-http has no "ignored" class: a response is a success or a failure. So with
//! `ServerErrorsAsFailures`, a `4xx` counts as a **success** here, where breakwater's own
//! [`HttpClassifier`](crate::classify::http::HttpClassifier) ignores it. Every error is a failure.
//!
//! # Example
//!
//! ```
//! use breakwater::CircuitBreaker;
//! use tower_http::classify::ServerErrorsAsFailures;
//!
//! let breaker = CircuitBreaker::builder("search").build()?;
//! let layer = breaker.tower_http_layer(ServerErrorsAsFailures::make_classifier());
//! # let _ = layer;
//! # Ok::<(), breakwater::ConfigError>(())
//! ```

use std::fmt;

use http::{HeaderMap, Request, Response};
use http_body::Body;
use tower_http::classify::{ClassifiedResponse, ClassifyEos, ClassifyResponse, MakeClassifier};

use super::{CallPermit, ClassifyEnd, Finish, RecordAt, RecordingBody};
use crate::BoxError;
use crate::classify::Outcome;

/// The mode of a breaker layer driven by a tower-http [`MakeClassifier`]; chosen by
/// [`CircuitBreaker::tower_http_layer`](crate::CircuitBreaker::tower_http_layer).
#[derive(Debug, Clone, Copy, Default)]
pub struct TowerHttp;

/// One call, with the classifier made from its request.
pub struct TowerHttpCall<C>(C);

impl<C> fmt::Debug for TowerHttpCall<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TowerHttpCall")
    }
}

impl crate::sealed::Sealed for TowerHttp {}
impl<C> crate::sealed::Sealed for TowerHttpCall<C> {}
impl<K> crate::sealed::Sealed for TowerHttpEnd<K> {}

impl<M, ReqB, B, E> RecordAt<M, Request<ReqB>, Response<B>, E> for TowerHttp
where
    M: MakeClassifier,
    B: Body,
    E: fmt::Display + 'static,
{
    type Call = TowerHttpCall<M::Classifier>;

    fn start(make: &M, request: &Request<ReqB>) -> Self::Call {
        TowerHttpCall(make.make_classifier(request))
    }
}

impl<C, B, E> Finish<Response<B>, E> for TowerHttpCall<C>
where
    C: ClassifyResponse,
    B: Body,
    E: fmt::Display + 'static,
{
    type Output = Response<RecordingBody<B, TowerHttpEnd<C::ClassifyEos>>>;

    fn finish(self, permit: CallPermit, result: Result<Response<B>, E>) -> Result<Self::Output, E> {
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                permit.record(Outcome::Failure);
                return Err(error);
            }
        };
        match self.0.classify_response(&response) {
            ClassifiedResponse::Ready(class) => {
                permit.record(if class.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                });
                Ok(response.map(RecordingBody::recorded))
            }
            ClassifiedResponse::RequiresEos(eos) if response.body().is_end_stream() => {
                // A trailers-only answer: its headers are its trailers.
                permit.record(TowerHttpEnd(eos).classify_end(Some(response.headers())));
                Ok(response.map(RecordingBody::recorded))
            }
            ClassifiedResponse::RequiresEos(eos) => {
                Ok(response.map(|body| RecordingBody::new(body, permit, TowerHttpEnd(eos))))
            }
        }
    }
}

/// A tower-http end-of-stream classifier, settling a call when its body ends.
pub struct TowerHttpEnd<K>(K);

impl<K> fmt::Debug for TowerHttpEnd<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TowerHttpEnd")
    }
}

impl<K: ClassifyEos> ClassifyEnd for TowerHttpEnd<K> {
    fn classify_end(self, trailers: Option<&HeaderMap>) -> Outcome {
        match self.0.classify_eos(trailers) {
            Ok(()) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    fn classify_error(self, _: &BoxError) -> Outcome {
        Outcome::Failure
    }

    /// tower-http classified nothing at the head, only asked for the end: the head was no
    /// failure, so a body dropped before its end counts as a success.
    fn head(&self) -> Outcome {
        Outcome::Success
    }
}
