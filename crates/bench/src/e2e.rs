//! End to end: a hyper-util client against a hyper server on 127.0.0.1, bare and behind the
//! full stack (breaker recording at the end of each body, and a timeout covering the body).
//!
//! The server runs on a thread of its own with a current-thread runtime, the client on
//! another, so each has one of the machine's two cores. Rounds alternate bare and stack, so a
//! drift of the machine's speed touches both alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use breakwater::{BoxError, CircuitBreaker, CircuitState, TimeoutLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::measure::median;

/// How much load, for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Rounds of each side; each round is bounded by `requests` and by `limit`.
    pub(crate) rounds: usize,
    pub(crate) requests: u64,
    pub(crate) limit: Duration,
    /// Requests in flight at once (one connection each).
    pub(crate) concurrency: usize,
}

/// What one side measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side {
    /// The median over rounds of requests per second.
    pub(crate) per_second: f64,
    /// The median over rounds of this side's requests per second over the bare client's in the
    /// same round: a drift of the machine's speed between rounds cancels out.
    pub(crate) of_bare: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) requests: u64,
}

/// The sides of the end-to-end run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) bare: Side,
    /// The breaker alone (`breaker.layer()`), recording at the response headers.
    pub(crate) breaker: Side,
    /// The timeout alone (`TimeoutLayer::new(5 s)`), up to the response headers.
    pub(crate) timeout: Side,
    /// The full stack: the breaker recording at the end of each body, over a timeout covering
    /// the body.
    pub(crate) stack: Side,
}

pub(crate) fn run(load: Load) -> Result<Outcome, String> {
    let address = start_server()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the client's runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, measure(address, load))
}

async fn measure(address: SocketAddr, load: Load) -> Result<Outcome, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.concurrency)
        .build::<_, Empty<Bytes>>(connector);
    let breakers = [
        CircuitBreaker::builder("e2e-breaker").build(),
        CircuitBreaker::builder("e2e-stack").build(),
    ];
    let [Ok(alone), Ok(full)] = breakers else {
        return Err("breakwater's defaults were refused".into());
    };
    let breaker = ServiceBuilder::new()
        .layer(alone.layer())
        .service(client.clone());
    let timeout = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(client.clone());
    let stack = ServiceBuilder::new()
        .layer(full.layer().end_of_stream())
        .layer(TimeoutLayer::new(Duration::from_secs(5)).covering_body())
        .service(client.clone());
    let url = format!("http://{address}/");

    // Warm up: connections opened, caches warm.
    let warm = Load {
        requests: load.requests.min(2_000),
        ..load
    };
    round(&client, &url, warm).await?;
    round(&stack, &url, warm).await?;

    let mut sides: [Rounds; 4] = Default::default();
    for i in 0..load.rounds {
        // Each round runs every side, starting from a different one each time.
        for k in 0..sides.len() {
            let side = (i + k) % sides.len();
            let measured = match side {
                0 => round(&client, &url, load).await?,
                1 => round(&breaker, &url, load).await?,
                2 => round(&timeout, &url, load).await?,
                _ => round(&stack, &url, load).await?,
            };
            sides[side].add(measured);
        }
    }
    for b in [&alone, &full] {
        let metrics = b.metrics();
        if b.state() != CircuitState::Closed || metrics.failed_calls != 0 {
            return Err(format!(
                "breaker `{}` saw failures ({} failed calls, state {}): the run is not a \
                 measurement of the closed path",
                b.name(),
                metrics.failed_calls,
                b.state()
            ));
        }
    }
    let bare_rates = sides[0].per_second.clone();
    let [bare, breaker, timeout, stack] = sides.map(|side| side.side(&bare_rates));
    Ok(Outcome {
        bare,
        breaker,
        timeout,
        stack,
    })
}

#[derive(Default)]
struct Rounds {
    per_second: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Rounds {
    fn add(&mut self, (latencies, elapsed): (Vec<Duration>, Duration)) {
        self.per_second
            .push(latencies.len() as f64 / elapsed.as_secs_f64());
        self.latencies.extend(latencies);
    }

    fn side(mut self, bare: &[f64]) -> Side {
        self.latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
            self.latencies.get(i).copied().unwrap_or_default()
        };
        let mut ratios: Vec<f64> = self
            .per_second
            .iter()
            .zip(bare)
            .map(|(side, bare)| side / bare)
            .collect();
        Side {
            of_bare: median(&mut ratios),
            per_second: median(&mut self.per_second),
            p50: at(0.50),
            p99: at(0.99),
            requests: self.latencies.len() as u64,
        }
    }
}

/// One round of `load.requests` requests (or fewer, at `load.limit`) from `load.concurrency`
/// tasks, each request read to the end of its body. Returns each request's latency and the
/// round's wall time.
async fn round<S, B>(svc: &S, url: &str, load: Load) -> Result<(Vec<Duration>, Duration), String>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let issued = std::rc::Rc::new(std::cell::Cell::new(0_u64));
    let mut tasks = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let (mut svc, url, issued) = (svc.clone(), url.to_owned(), issued.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::new();
            loop {
                if issued.get() >= load.requests || start.elapsed() >= load.limit {
                    return Ok::<_, String>(latencies);
                }
                issued.set(issued.get() + 1);
                let sent = Instant::now();
                let request = Request::get(url.as_str())
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let ready = svc.ready().await.map_err(|e| e.into().to_string())?;
                let response = ready
                    .call(request)
                    .await
                    .map_err(|e| e.into().to_string())?;
                if response.status() != StatusCode::OK {
                    return Err(format!("the server answered {}", response.status()));
                }
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.into().to_string())?;
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(usize::try_from(load.requests).unwrap_or(0));
    for task in tasks {
        let done = task.await.map_err(|e| format!("a client task: {e}"))?;
        latencies.extend(done?);
    }
    Ok((latencies, start.elapsed()))
}

/// A hyper server on 127.0.0.1 that answers every request `200 ok`, on a thread of its own.
/// It lives as long as the program.
fn start_server() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("binding 127.0.0.1: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("the listener: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("the listener's address: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the server's runtime: {e}"))?;
    std::thread::Builder::new()
        .name("e2e-server".into())
        .spawn(move || runtime.block_on(serve(listener)))
        .map_err(|e| format!("the server's thread: {e}"))?;
    Ok(address)
}

async fn serve(listener: std::net::TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
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
}
