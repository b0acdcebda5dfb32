//! A tonic client over a `Channel`, behind a breaker with gRPC classification, against an
//! in-process tonic server on loopback.

use std::time::Duration;

use breakwater::{CircuitBreaker, CircuitState};
use loopback::inventory::{InventoryServer, Verdict, reserve};
use tonic::Code;
use tonic::transport::Channel;
use tower::ServiceBuilder;

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("inventory")
        .count_window(4)
        .minimum_calls(4)
        .wait_duration_in_open(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A `Channel` behind the breaker's gRPC layer.
type Guarded = breakwater::CircuitBreakerService<
    Channel,
    breakwater::classify::grpc::GrpcClassifier,
    breakwater::circuit_breaker::WithError,
    breakwater::circuit_breaker::AtEndOfStream,
>;

async fn client(
    server: &InventoryServer,
    breaker: &CircuitBreaker,
) -> tonic::client::Grpc<Guarded> {
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(
        ServiceBuilder::new()
            .layer(breaker.grpc_layer())
            .service(channel),
    )
}

#[tokio::test]
async fn unavailable_in_the_trailers_opens_the_breaker() {
    let server = InventoryServer::start(Verdict::AfterMessage(Code::Unavailable))
        .await
        .unwrap();
    let b = breaker();
    let mut grpc = client(&server, &b).await;
    for calls in 1..=4 {
        let status = reserve(&mut grpc, "sku-1", 1).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(b.metrics().failed_calls, calls);
    }
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(server.hits(), 4);
    // Rejected by the breaker: tonic reports UNAVAILABLE (not UNKNOWN), and no call is made.
    let status = reserve(&mut grpc, "sku-1", 1).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "circuit breaker `inventory` rejected the call"
    );
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn invalid_argument_never_opens_it() {
    let server = InventoryServer::start(Verdict::AfterMessage(Code::InvalidArgument))
        .await
        .unwrap();
    let b = breaker();
    let mut grpc = client(&server, &b).await;
    for _ in 0..20 {
        let status = reserve(&mut grpc, "", 0).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().buffered_calls, 0);
    // Trailers-only answers (the status in the headers) are read too.
    server.set(Verdict::TrailersOnly(Code::InvalidArgument));
    for _ in 0..5 {
        assert_eq!(
            reserve(&mut grpc, "", 0).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    assert_eq!(b.metrics().buffered_calls, 0);
    server.set(Verdict::TrailersOnly(Code::Unavailable));
    for _ in 0..4 {
        assert_eq!(
            reserve(&mut grpc, "x", 1).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test]
async fn ok_replies_are_successes() {
    let server = InventoryServer::start(Verdict::Reserve).await.unwrap();
    let b = breaker();
    let mut grpc = client(&server, &b).await;
    for _ in 0..6 {
        assert!(reserve(&mut grpc, "sku-9", 2).await.unwrap().reserved);
    }
    let m = b.metrics();
    assert_eq!((m.successful_calls, m.failed_calls), (4, 0));
}

#[tokio::test]
async fn a_trailers_only_ok_is_a_success() {
    let server = InventoryServer::start(Verdict::TrailersOnly(Code::Ok))
        .await
        .unwrap();
    let b = breaker();
    let mut grpc = client(&server, &b).await;
    for calls in 1..=6u64 {
        // The server said OK but sent no message: tonic's unary client reports that as its
        // own error, yet the call succeeded as far as the server's health goes.
        let status = reserve(&mut grpc, "sku-9", 2).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert_eq!(b.metrics().successful_calls, calls.min(4));
    }
    let m = b.metrics();
    assert_eq!((m.failed_calls, m.buffered_calls), (0, 4));
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(server.hits(), 6);
}
