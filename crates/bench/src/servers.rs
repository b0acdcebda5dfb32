//! The servers of the end-to-end run, on 127.0.0.1, each on a thread of its own with a
//! current-thread runtime; they live as long as the program. Both answer `200 ok`.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use breakwater::CircuitBreaker;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// A hyper server that answers every request `200 ok`.
pub(crate) fn hyper() -> Result<SocketAddr, String> {
    start("e2e-hyper", |listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer)
                    .await;
            });
        }
    })
}

/// An axum server with two routes that answer `200 ok`: `/bare`, and `/breaker` behind
/// `breaker` as a route layer, answering `503` while it is open (`respond_503`, so the route
/// stays `Infallible`, with no `HandleErrorLayer`).
pub(crate) fn axum(breaker: &CircuitBreaker) -> Result<SocketAddr, String> {
    let app = Router::new().route("/bare", get(ok)).merge(
        Router::new()
            .route("/breaker", get(ok))
            .route_layer(breaker.layer().respond_503()),
    );
    start("e2e-axum", |listener| async move {
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        let _ = axum::serve(listener, app).await;
    })
}

async fn ok() -> &'static str {
    "ok"
}

/// Binds 127.0.0.1 and runs `serve` on the listener, on a thread of its own.
fn start<F>(
    name: &str,
    serve: impl FnOnce(tokio::net::TcpListener) -> F + Send + 'static,
) -> Result<SocketAddr, String>
where
    F: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("{name}: binding 127.0.0.1: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{name}: the listener: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("{name}: the listener's address: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("{name}: the server's runtime: {e}"))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    serve(listener).await;
                }
            });
        })
        .map_err(|e| format!("{name}: the server's thread: {e}"))?;
    Ok(address)
}
