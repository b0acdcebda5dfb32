//! Run with: cargo run -p example-tonic-client
//!
//! A tonic client over a `Channel`, behind a breaker with gRPC classification, against an
//! in-process tonic server on 127.0.0.1 (messages written by hand with prost: no `protoc`).
//!
//! The server's `INVALID_ARGUMENT` answers are the caller's business and never count; its
//! `UNAVAILABLE` answers (in the trailers, after a message) do, and open the breaker. The next
//! calls are rejected without reaching the server, and tonic reports them as `UNAVAILABLE`.

use std::time::Duration;

use breakwater::{BoxError, CircuitBreaker, CircuitState};
use loopback::inventory::{InventoryServer, Verdict, reserve};
use tonic::Code;
use tonic::transport::Channel;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = InventoryServer::start(Verdict::Reserve).await?;
    let breaker = CircuitBreaker::builder("inventory")
        .count_window(5)
        .minimum_calls(5)
        .wait_duration_in_open(Duration::from_secs(30))
        .build()?;
    breaker.on_state_transition(|event| println!("    -> {:?}", event.kind()));

    let channel = Channel::from_shared(server.url())?.connect().await?;
    // `grpc_layer` records each call when its response ends, where gRPC puts its status.
    let mut inventory = tonic::client::Grpc::new(
        ServiceBuilder::new()
            .layer(breaker.grpc_layer())
            .service(channel),
    );

    println!("1. reservations go through");
    for _ in 0..3 {
        show(reserve(&mut inventory, "sku-42", 2).await);
    }
    println!("2. unknown products: INVALID_ARGUMENT, ignored by the breaker");
    server.set(Verdict::AfterMessage(Code::InvalidArgument));
    for _ in 0..10 {
        let _ = reserve(&mut inventory, "no-such-sku", 1).await;
    }
    println!("    {:?}", breaker.metrics());
    println!("3. the server is in trouble: UNAVAILABLE, in the trailers");
    server.set(Verdict::AfterMessage(Code::Unavailable));
    for _ in 0..4 {
        show(reserve(&mut inventory, "sku-42", 2).await);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    println!("4. rejected without a call; tonic says UNAVAILABLE");
    let hits = server.hits();
    show(reserve(&mut inventory, "sku-42", 2).await);
    assert_eq!(server.hits(), hits);
    Ok(())
}

fn show(result: Result<loopback::inventory::ReserveReply, tonic::Status>) {
    match result {
        Ok(reply) => println!("    reserved: {}", reply.reserved),
        Err(status) => println!("    {:?}: {}", status.code(), status.message()),
    }
}
