//! A gRPC inventory service, `inventory.Inventory/Reserve`, and a client call for it.
//!
//! The messages are written by hand with prost's derive (no `.proto` compiled, no `protoc`).
//! The service is a plain tower service served by tonic, so that it can put a status where a
//! test needs it: in the response headers (a trailers-only answer, as servers answer most
//! errors) or in the trailers after a message (as a failure late in a stream arrives).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::codegen::Service;
use tonic::server::NamedService;

/// Asks to reserve some units of a product.
#[derive(Clone, PartialEq, Message)]
pub struct ReserveRequest {
    /// The product.
    #[prost(string, tag = "1")]
    pub sku: String,
    /// How many units.
    #[prost(uint32, tag = "2")]
    pub quantity: u32,
}

/// The answer to a [`ReserveRequest`].
#[derive(Clone, PartialEq, Message)]
pub struct ReserveReply {
    /// Whether the units are reserved.
    #[prost(bool, tag = "1")]
    pub reserved: bool,
}

/// The method's path.
pub const RESERVE: &str = "/inventory.Inventory/Reserve";

/// What the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A reply and `OK` in the trailers.
    Reserve,
    /// No message, the status in the response headers.
    TrailersOnly(Code),
    /// A reply, then this status in the trailers.
    AfterMessage(Code),
}

struct Shared {
    verdict: Mutex<Verdict>,
    hits: AtomicU64,
}

/// The inventory service, served by tonic on 127.0.0.1; it stops when dropped.
pub struct InventoryServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl InventoryServer {
    /// Starts the service answering `verdict`.
    pub async fn start(verdict: Verdict) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            verdict: Mutex::new(verdict),
            hits: AtomicU64::new(0),
        });
        let service = Inventory {
            shared: Arc::clone(&shared),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let serve = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        Ok(Self {
            addr,
            shared,
            serve,
        })
    }

    /// Its URL, for a tonic `Channel`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `verdict` from now on.
    pub fn set(&self, verdict: Verdict) {
        *self
            .shared
            .verdict
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = verdict;
    }

    /// How many calls have reached it.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for InventoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryServer")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish()
    }
}

impl Drop for InventoryServer {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

/// Reserves `quantity` units of `sku` through `grpc`: the client side of the method, as tonic's
/// code generator would write it.
pub async fn reserve<T>(
    grpc: &mut tonic::client::Grpc<T>,
    sku: &str,
    quantity: u32,
) -> Result<ReserveReply, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::from_error(e.into()))?;
    let request = ReserveRequest {
        sku: sku.to_owned(),
        quantity,
    };
    let codec = tonic_prost::ProstCodec::<ReserveRequest, ReserveReply>::default();
    let path = http::uri::PathAndQuery::from_static(RESERVE);
    let reply = grpc
        .unary(tonic::Request::new(request), path, codec)
        .await?;
    Ok(reply.into_inner())
}

#[derive(Clone)]
struct Inventory {
    shared: Arc<Shared>,
}

impl NamedService for Inventory {
    const NAME: &'static str = "inventory.Inventory";
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;

impl Service<Request<tonic::body::Body>> for Inventory {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Answer {
        self.shared.hits.fetch_add(1, Ordering::SeqCst);
        let verdict = *self
            .shared
            .verdict
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Box::pin(async move {
            // Read the request to its end before answering, as a unary method does.
            let _ = request.into_body().collect().await;
            let reply = ReserveReply { reserved: true };
            let answer = match verdict {
                Verdict::Reserve => Frames::new(Some(reply), Code::Ok),
                Verdict::AfterMessage(code) => Frames::new(Some(reply), code),
                Verdict::TrailersOnly(code) => {
                    let mut response = grpc_response(Frames::empty());
                    insert_status(response.headers_mut(), code);
                    return Ok(response);
                }
            };
            Ok(grpc_response(answer))
        })
    }
}

fn grpc_response(body: Frames) -> Response<tonic::body::Body> {
    let mut response = Response::new(tonic::body::Body::new(body));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

fn status_value(code: Code) -> HeaderValue {
    HeaderValue::from(code as i32)
}

/// The status's `grpc-status` and, for an error, its `grpc-message`.
fn insert_status(headers: &mut HeaderMap, code: Code) {
    headers.insert("grpc-status", status_value(code));
    if code != Code::Ok {
        let message = format!("the inventory answers {code:?}");
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
    }
}

/// A gRPC response body: at most one message, then the status in the trailers (or nothing at
/// all, for a trailers-only answer).
struct Frames {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Frames {
    fn new(reply: Option<ReserveReply>, code: Code) -> Self {
        let message = reply.map(|reply| {
            let encoded = reply.encode_to_vec();
            let mut frame = BytesMut::with_capacity(5 + encoded.len());
            // Not compressed, then the length, big-endian.
            frame.put_u8(0);
            frame.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
            frame.put_slice(&encoded);
            frame.freeze()
        });
        let mut trailers = HeaderMap::new();
        insert_status(&mut trailers, code);
        Self {
            message,
            trailers: Some(trailers),
        }
    }

    fn empty() -> Self {
        Self {
            message: None,
            trailers: None,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}
