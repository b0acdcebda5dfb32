use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a [`FlakyServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, with a short body.
    Status(u16),
    /// `200`, after this long.
    After(Duration),
    /// `200` headers and a first chunk, then a body that never ends.
    StallBody,
}

struct Shared {
    answer: Mutex<Answer>,
    hits: AtomicU64,
}

/// An HTTP/1 server on 127.0.0.1 whose answer can be switched while it runs; it counts the
/// requests that reach it. It stops when dropped.
pub struct FlakyServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FlakyServer {
    /// Starts a server answering `answer`.
    pub async fn start(answer: Answer) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            answer: Mutex::new(answer),
            hits: AtomicU64::new(0),
        });
        let serving = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(Arc::clone(&shared), request));
                    // A client that goes away mid-response is no concern of the server's.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `answer` from now on.
    pub fn set(&self, answer: Answer) {
        *self
            .shared
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = answer;
    }

    /// How many requests have reached it.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for FlakyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlakyServer")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish()
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn respond(
    shared: Arc<Shared>,
    _request: Request<Incoming>,
) -> Result<Response<Reply>, Infallible> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let answer = *shared.answer.lock().unwrap_or_else(PoisonError::into_inner);
    let (status, body) = match answer {
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Reply::Text(Some(Bytes::from(format!("status {code}")))),
        ),
        Answer::After(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, Reply::Text(Some(Bytes::from_static(b"ok"))))
        }
        Answer::StallBody => (StatusCode::OK, Reply::Stall { sent: false }),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    Ok(response)
}

/// The body of an answer: a text, or a first chunk and then nothing, ever.
enum Reply {
    Text(Option<Bytes>),
    Stall { sent: bool },
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Reply::Text(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
            Reply::Stall { sent: false } => {
                *self = Reply::Stall { sent: true };
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first bytes")))))
            }
            // Never woken: the body stalls until the connection goes away.
            Reply::Stall { sent: true } => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Reply::Text(None))
    }
}
