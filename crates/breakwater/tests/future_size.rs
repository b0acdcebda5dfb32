//! The response future of a layered service stays small: an async caller moves it (into its
//! own future, and `oneshot` moves it again), so every byte of it is copied on every call.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::mem::size_of;
use std::task::{Context, Poll};

use breakwater::CircuitBreaker;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use tower::{Layer, Service};

/// A service answering an empty `http::Response` at once, as in the benchmark.
#[derive(Debug, Clone, Copy)]
struct Answers;

impl Service<Request<()>> for Answers {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Empty<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(Empty::new())))
    }
}

fn future_size<S: Service<Request<()>>>(_: &S) -> usize {
    size_of::<S::Future>()
}

fn body_size<S, B>(_: &S) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
{
    size_of::<B>()
}

#[test]
fn an_http_classifier_is_16_bytes() {
    use breakwater::classify::http::HttpClassifier;
    // The handle of its rules (8 bytes) and its rules by predicate, if any (one pointer).
    assert_eq!(size_of::<HttpClassifier>(), 16);
}

#[test]
fn the_response_future_adds_40_bytes_and_the_recording_body_64() {
    let breaker = CircuitBreaker::builder("size").build().expect("defaults");
    let inner = size_of::<<Answers as Service<Request<()>>>::Future>();
    let layered = breaker.layer().layer(Answers);
    let ours = future_size(&layered);
    println!("inner future {inner} bytes, layered {ours} bytes");
    assert_eq!(
        ours,
        inner + 40,
        "the closed-path response future is {ours} bytes over an inner future of {inner}"
    );
    // Recording at the end of the body: the future is the same size, and the body adds
    // 64 bytes to the inner body's (the classifier's 16 among them).
    let streamed = breaker.layer().end_of_stream().layer(Answers);
    let ours = future_size(&streamed);
    println!(
        "end of stream: layered {ours} bytes, body {}",
        body_size(&streamed)
    );
    assert_eq!(ours, inner + 40, "end of stream: {ours} bytes over {inner}");
    assert_eq!(body_size(&streamed), size_of::<Empty<Bytes>>() + 64);
}
