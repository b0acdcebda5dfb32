//! Classification of arbitrary statuses, headers and trailers, by the HTTP classifier (plain,
//! and reading `Retry-After`) and the gRPC classifier, recorded into a breaker: no panic, and
//! the HTTP defaults hold (5xx fails, 4xx is ignored, the rest succeeds).
#![no_main]

use std::sync::OnceLock;

use breakwater::CircuitBreaker;
use breakwater::classify::grpc::GrpcClassifier;
use breakwater::classify::http::HttpClassifier;
use breakwater::classify::{Classify, Outcome};
use libfuzzer_sys::fuzz_target;

type Error = std::io::Error;

fuzz_target!(|data: &[u8]| {
    let Some((response, trailers)) = breakwater_fuzz::response(data) else {
        return;
    };
    let status = response.status();
    let plain = HttpClassifier::new();
    let outcome = Classify::<http::Response<()>, Error>::classify(&plain, Ok(&response));
    let expected = if status.is_server_error() {
        Outcome::Failure
    } else if status.is_client_error() {
        Outcome::Ignored
    } else {
        Outcome::Success
    };
    assert_eq!(outcome, expected, "{status}");
    let end =
        Classify::<http::Response<()>, Error>::classify_end(&plain, outcome, trailers.as_ref());
    assert_eq!(end, outcome, "the HTTP classifier reads no trailers");

    let retry = HttpClassifier::new().retry_after(breakwater_fuzz::RETRY_AFTER_CAP);
    let with_retry = retry.classify_response(status, response.headers());
    if let Outcome::FailureFor(wait) = with_retry {
        assert!(wait <= breakwater_fuzz::RETRY_AFTER_CAP, "{wait:?}");
    }

    let grpc = GrpcClassifier::new();
    let head = Classify::<http::Response<()>, Error>::classify(&grpc, Ok(&response));
    let grpc_end =
        Classify::<http::Response<()>, Error>::classify_end(&grpc, head, trailers.as_ref());
    // A body that fails after this head: a failure, whatever the head said, for both.
    let broken = std::io::Error::other("body cut");
    for body_error in [
        Classify::<http::Response<()>, Error>::classify_body_error(&plain, outcome, &broken),
        Classify::<http::Response<()>, Error>::classify_body_error(&grpc, head, &broken),
    ] {
        assert!(body_error.is_failure(), "{status}: {body_error:?}");
    }

    // Every outcome goes into a breaker, as the layer would record it. One breaker for the
    // whole run (a breaker is never freed), reset for each input.
    static BREAKER: OnceLock<CircuitBreaker> = OnceLock::new();
    let breaker = BREAKER.get_or_init(|| {
        CircuitBreaker::builder("fuzz")
            .count_window(2)
            .minimum_calls(1)
            .build()
            .expect("valid settings")
    });
    breaker.reset();
    for outcome in [outcome, with_retry, head, grpc_end] {
        if let Ok(permit) = breaker.try_acquire() {
            permit.record(outcome);
        }
        let _ = breaker.metrics();
    }
});
