//! A hostile PG: a raw TCP server on loopback that answers the PG client with garbage JSON, a
//! 100 MB body (declared, and streamed without a length), headers and then a stalled body, a
//! trickle of bytes, and connection resets before and during the answer. Each gives the client
//! a clear error and is counted by the breaker as a failed call (a rejected 4xx is not). How
//! far an endless body is read is measured exactly in `pg_answer`'s own test; here, the server
//! sees the client stop reading.
//!
//! The read timeout is 300 ms for the stalled and trickling answers, which end by it (a real
//! timer against a real socket; the server is real, so tokio's paused clock cannot stand in
//! for it), and 10 s for the others, which must not end by it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breakwater::CircuitBreaker;
use payment_gateway::pg_client::{ConfirmCommand, FailureCause};
use payment_gateway::{PG_BREAKER, PgClient, PgError, PgSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: usize = 64 * 1024;
const RECEIPT: &str = r#"{"paymentKey":"pk-1","orderId":"order-1","status":"DONE","method":"CARD","approveNo":"00000001","totalAmount":25000,"message":"ok"}"#;

/// How the server answers every request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// A `200` with this body.
    Ok(&'static str),
    /// A `400` with this body.
    BadRequest(&'static str),
    /// A `200` declaring 100 MB, and sending it.
    Declared100Mb,
    /// A `200` sent chunked, 100 MB of it, with no length given.
    Chunked100Mb,
    /// The head of a 1,000-byte answer, then nothing.
    Stall,
    /// The head of a 1,000-byte answer, then one byte every 20 ms.
    Trickle,
    /// The request is read, then the connection is reset.
    ResetBeforeHead,
    /// The head and half the body, then the connection is reset.
    ResetMidBody,
}

/// The hostile PG; `written` counts the body bytes it managed to send.
struct Hostile {
    url: String,
    written: Arc<AtomicU64>,
}

impl Hostile {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&written);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer, Arc::clone(&count)));
            }
        });
        Self { url, written }
    }

    fn client(&self, read_timeout: Duration) -> (PgClient, CircuitBreaker) {
        let registry = support::registry();
        let settings = PgSettings {
            read_timeout,
            max_body: LIMIT,
            ..PgSettings::new(&self.url)
        };
        let client = PgClient::new(&registry, settings);
        (client, registry.circuit_breaker(PG_BREAKER))
    }
}

/// Reads one request (head and `Content-Length` body), then answers as told.
async fn serve(mut stream: TcpStream, answer: Answer, written: Arc<AtomicU64>) {
    if read_request(&mut stream).await.is_none() {
        return;
    }
    let head = |status: &str, length: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{length}\r\n")
    };
    let result: std::io::Result<()> = async {
        match answer {
            Answer::Ok(body) | Answer::BadRequest(body) => {
                let status = match answer {
                    Answer::Ok(_) => "200 OK",
                    _ => "400 Bad Request",
                };
                let length = format!("content-length: {}\r\n", body.len());
                stream.write_all(head(status, &length).as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
            }
            Answer::Declared100Mb | Answer::Chunked100Mb => {
                let chunked = matches!(answer, Answer::Chunked100Mb);
                let length = if chunked {
                    "transfer-encoding: chunked\r\n".to_owned()
                } else {
                    format!("content-length: {}\r\n", 100 << 20)
                };
                stream.write_all(head("200 OK", &length).as_bytes()).await?;
                let block = vec![b'x'; 64 * 1024];
                for _ in 0..1600 {
                    if chunked {
                        stream.write_all(b"10000\r\n").await?;
                    }
                    stream.write_all(&block).await?;
                    if chunked {
                        stream.write_all(b"\r\n").await?;
                    }
                    written.fetch_add(block.len() as u64, Ordering::SeqCst);
                }
            }
            Answer::Stall | Answer::Trickle => {
                stream
                    .write_all(head("200 OK", "content-length: 1000\r\n").as_bytes())
                    .await?;
                stream.write_all(b"{\"paymentKey\":").await?;
                for _ in 0..1000 {
                    if matches!(answer, Answer::Trickle) {
                        stream.write_all(b" ").await?;
                        written.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Answer::ResetBeforeHead => reset(stream),
            Answer::ResetMidBody => {
                let length = format!("content-length: {}\r\n", RECEIPT.len());
                stream.write_all(head("200 OK", &length).as_bytes()).await?;
                stream
                    .write_all(&RECEIPT.as_bytes()[..RECEIPT.len() / 2])
                    .await?;
                stream.flush().await?;
                // Let the half reach the client before the reset discards it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                reset(stream);
            }
        }
        Ok(())
    }
    .await;
    // A client that gave up closes the connection: the server's write fails, as it should.
    drop(result);
}

/// Closes with a reset (`SO_LINGER` of zero): the peer gets `ECONNRESET`, not an end of file.
#[allow(deprecated)] // a zero linger never blocks on drop: it resets at once
fn reset(stream: TcpStream) {
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&buf[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap_or(0));
    while read.len() < head_end + length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&buf[..n]);
    }
    Some(())
}

fn command() -> ConfirmCommand {
    ConfirmCommand {
        payment_key: "pk-1".into(),
        order_id: "order-1".into(),
        amount: 25_000,
    }
}

/// Confirms once and returns the error's cause and detail, after checking how the breaker
/// counted the call.
async fn failure(answer: Answer) -> (FailureCause, String, Hostile) {
    let pg = Hostile::start(answer).await;
    let read_timeout = match answer {
        Answer::Stall | Answer::Trickle => Duration::from_millis(300),
        _ => Duration::from_secs(10),
    };
    let (client, breaker) = pg.client(read_timeout);
    let error = client.confirm(&command()).await.unwrap_err();
    let PgError::ExternalApiFailed { cause, detail } = error else {
        panic!("{answer:?}: expected a failure of the PG, got {error:?}");
    };
    let m = breaker.metrics();
    assert_eq!(
        (m.buffered_calls, m.failed_calls),
        (1, 1),
        "{answer:?}: the breaker counts one failed call"
    );
    (cause, detail, pg)
}

#[tokio::test]
async fn a_well_formed_answer_is_a_success_the_control() {
    let pg = Hostile::start(Answer::Ok(RECEIPT)).await;
    let (client, breaker) = pg.client(Duration::from_secs(10));
    let receipt = client.confirm(&command()).await.unwrap();
    assert_eq!(receipt.approve_no, "00000001");
    let m = breaker.metrics();
    assert_eq!((m.buffered_calls, m.failed_calls), (1, 0));
}

#[tokio::test]
async fn garbage_json_is_a_malformed_answer_and_a_failure() {
    let (cause, detail, _pg) = failure(Answer::Ok("{\"paymentKey\": [garbage")).await;
    assert_eq!(cause, FailureCause::Malformed);
    assert!(
        detail.starts_with("/v1/payments/confirm: the PG's answer is not a payment: "),
        "{detail}"
    );
}

#[tokio::test]
async fn json_of_another_shape_and_an_empty_body_are_failures_too() {
    for body in ["{\"ok\":true}", ""] {
        let (cause, detail, _pg) = failure(Answer::Ok(body)).await;
        assert_eq!(cause, FailureCause::Malformed, "{body:?}");
        assert!(detail.contains("is not a payment"), "{detail}");
    }
}

#[tokio::test]
async fn a_garbage_rejection_is_still_a_rejection_and_not_counted() {
    let pg = Hostile::start(Answer::BadRequest("<html>nope")).await;
    let (client, breaker) = pg.client(Duration::from_secs(10));
    let error = client.confirm(&command()).await.unwrap_err();
    assert_eq!(
        error,
        PgError::Rejected {
            status: 400,
            code: "400".into(),
            message: "<html>nope".into(),
        }
    );
    assert_eq!(breaker.metrics().buffered_calls, 0, "a 4xx is ignored");
}

#[tokio::test]
async fn a_declared_100_mb_body_is_refused_before_it_is_read() {
    let (cause, detail, _pg) = failure(Answer::Declared100Mb).await;
    assert_eq!(cause, FailureCause::Malformed);
    assert_eq!(
        detail,
        "/v1/payments/confirm: the PG's answer is too large: at least 104857600 bytes, over the \
         limit of 65536 bytes (max_body)"
    );
}

#[tokio::test]
async fn a_streamed_100_mb_body_is_cut_at_the_limit() {
    let (cause, detail, pg) = failure(Answer::Chunked100Mb).await;
    assert_eq!(cause, FailureCause::Malformed);
    assert!(detail.contains("too large"), "{detail}");
    assert!(detail.contains("over the limit of 65536 bytes"), "{detail}");
    // The client stopped reading and closed the connection: the server could send no more
    // than the socket buffers hold, far from the 100 MB it meant to.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let written = pg.written.load(Ordering::SeqCst);
    assert!(written < 16 << 20, "the server wrote {written} bytes");
}

#[tokio::test]
async fn headers_then_a_stalled_body_end_by_the_read_timeout() {
    let (cause, detail, _pg) = failure(Answer::Stall).await;
    assert_eq!(cause, FailureCause::Timeout);
    assert!(detail.contains("300ms"), "{detail}");
}

#[tokio::test]
async fn a_trickle_of_bytes_ends_by_the_read_timeout() {
    let (cause, detail, pg) = failure(Answer::Trickle).await;
    assert_eq!(cause, FailureCause::Timeout);
    assert!(detail.contains("300ms"), "{detail}");
    // Bytes did arrive, slower than the deadline allows: the deadline covers the whole body.
    assert!(pg.written.load(Ordering::SeqCst) >= 5);
}

#[tokio::test]
async fn a_reset_before_the_answer_is_a_transport_failure() {
    let (cause, detail, _pg) = failure(Answer::ResetBeforeHead).await;
    assert_eq!(cause, FailureCause::Transport);
    // The request was sent; the answer never came.
    assert!(
        detail.starts_with("/v1/payments/confirm: client error (SendRequest): ")
            && detail.ends_with("Connection reset by peer (os error 104)"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_reset_in_the_middle_of_the_body_is_a_transport_failure() {
    let (cause, detail, _pg) = failure(Answer::ResetMidBody).await;
    assert_eq!(cause, FailureCause::Transport);
    // The head arrived: the body broke.
    assert_eq!(
        detail,
        "/v1/payments/confirm: error reading a body from connection: Connection reset by peer \
         (os error 104)"
    );
}
