//! End to end on 127.0.0.1, with one hyper-util client:
//!
//! - against a hyper server: bare, the breaker alone, the timeout alone, and the full stack
//!   (breaker recording at the end of each body, over a timeout covering the body), all on the
//!   client's side;
//! - against an axum server: a bare route, and a route behind the breaker as a route layer.
//!
//! Each server runs on a thread of its own with a current-thread runtime, the client on
//! another, so the client and the server it calls each have one of the machine's two cores.
//! Every round runs every side in turn, from a different side each round, so a drift of the
//! machine's speed touches all alike; each side is compared with its own server's bare side of
//! the same round.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use breakwater::{BoxError, CircuitBreaker, CircuitState, TimeoutLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::measure::median;
use crate::report::Target;
use crate::servers;

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

/// What one side measured: medians over rounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side {
    pub(crate) label: &'static str,
    /// Requests per second.
    pub(crate) per_second: f64,
    /// This side's requests per second over its server's bare side's, in the same round.
    pub(crate) of_bare: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// This side's p99 over its server's bare side's, in the same round.
    pub(crate) p99_of_bare: f64,
    /// Requests made, over all rounds.
    pub(crate) requests: u64,
}

/// The sides of the run, by server (empty for a server not asked for).
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Bare, breaker alone, timeout alone, full stack.
    pub(crate) hyper: Vec<Side>,
    /// Bare route, breaker as a route layer.
    pub(crate) axum: Vec<Side>,
}

const HYPER: [&str; 4] = ["bare", "breaker alone", "timeout alone", "full stack"];
const AXUM: [&str; 2] = ["bare route", "breaker as a route layer"];

pub(crate) fn run(load: Load, hyper: bool, axum: bool) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("the client's runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, measure(load, hyper, axum))
}

fn closed_breaker(name: &str) -> Result<CircuitBreaker, String> {
    CircuitBreaker::builder(name)
        .build()
        .map_err(|e| format!("breakwater's defaults were refused: {e}"))
}

async fn measure(load: Load, hyper: bool, axum: bool) -> Result<Outcome, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.concurrency)
        .build::<_, Empty<Bytes>>(connector);
    let (alone, full, route) = (
        closed_breaker("e2e-breaker")?,
        closed_breaker("e2e-stack")?,
        closed_breaker("e2e-axum")?,
    );
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
    let url = |address: Option<SocketAddr>, path: &str| {
        address.map_or_else(String::new, |a| format!("http://{a}{path}"))
    };
    let hyper_at = url(hyper.then(servers::hyper).transpose()?, "/");
    let axum_at = axum.then(|| servers::axum(&route)).transpose()?;
    let (axum_bare, axum_breaker) = (url(axum_at, "/bare"), url(axum_at, "/breaker"));

    // The sides asked for: 0..4 the hyper server's, 4..6 the axum server's.
    let sides: Vec<usize> = (0..6)
        .filter(|side| if *side < 4 { hyper } else { axum })
        .collect();
    let one = async |side: usize, load: Load| match side {
        0 => round(&client, &hyper_at, load).await,
        1 => round(&breaker, &hyper_at, load).await,
        2 => round(&timeout, &hyper_at, load).await,
        3 => round(&stack, &hyper_at, load).await,
        4 => round(&client, &axum_bare, load).await,
        _ => round(&client, &axum_breaker, load).await,
    };
    // Warm up: connections opened, caches warm.
    let warm = Load {
        requests: load.requests.min(2_000),
        ..load
    };
    for &side in &sides {
        one(side, warm).await?;
    }
    let mut rounds: [Vec<Round>; 6] = Default::default();
    for i in 0..load.rounds {
        for k in 0..sides.len() {
            let side = sides[(i + k) % sides.len()];
            rounds[side].push(one(side, load).await?);
            // The recorder's upkeep, between rounds, off the clock (see `recorder`).
            crate::recorder::upkeep();
        }
    }
    let breakers = [(hyper, &alone), (hyper, &full), (axum, &route)];
    for (_, b) in breakers.iter().filter(|(used, _)| *used) {
        closed_throughout(b)?;
    }
    let side = |side: usize, label, bare: usize| summary(label, &rounds[side], &rounds[bare]);
    let mut outcome = Outcome::default();
    if hyper {
        outcome.hyper = (0..4).map(|s| side(s, HYPER[s], 0)).collect();
    }
    if axum {
        outcome.axum = (4..6).map(|s| side(s, AXUM[s - 4], 4)).collect();
    }
    Ok(outcome)
}

/// Fails unless `breaker` was closed throughout and recorded calls, none failed or rejected:
/// otherwise the run did not measure the closed path.
fn closed_throughout(breaker: &CircuitBreaker) -> Result<(), String> {
    let metrics = breaker.metrics();
    if breaker.state() != CircuitState::Closed
        || metrics.failed_calls != 0
        || metrics.not_permitted_calls != 0
        || metrics.successful_calls == 0
    {
        return Err(format!(
            "breaker `{}`: state {}, {} successful, {} failed, {} rejected calls: the run is not \
             a measurement of the closed path",
            breaker.name(),
            breaker.state(),
            metrics.successful_calls,
            metrics.failed_calls,
            metrics.not_permitted_calls,
        ));
    }
    Ok(())
}

/// What one round of one side measured.
#[derive(Debug, Clone, Copy)]
struct Round {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    requests: u64,
}

fn summary(label: &'static str, rounds: &[Round], bare: &[Round]) -> Side {
    let of = |f: &dyn Fn(&Round, &Round) -> f64| -> f64 {
        median(
            &mut rounds
                .iter()
                .zip(bare)
                .map(|(r, b)| f(r, b))
                .collect::<Vec<_>>(),
        )
    };
    let of_bare = of(&|r, b| r.per_second / b.per_second);
    let p99_of_bare = of(&|r, b| r.p99.as_secs_f64() / b.p99.as_secs_f64());
    let per_second = of(&|r, _| r.per_second);
    let p50 = Duration::from_secs_f64(of(&|r, _| r.p50.as_secs_f64()));
    let p99 = Duration::from_secs_f64(of(&|r, _| r.p99.as_secs_f64()));
    Side {
        label,
        per_second,
        of_bare,
        p50,
        p99,
        p99_of_bare,
        requests: rounds.iter().map(|r| r.requests).sum(),
    }
}

/// One round of `load.requests` requests (or fewer, at `load.limit`) from `load.concurrency`
/// tasks, each request read to the end of its body and answered `200`.
async fn round<S, B>(svc: &S, url: &str, load: Load) -> Result<Round, String>
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
                    return Err(format!("{url}: the server answered {}", response.status()));
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
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).copied().unwrap_or_default()
    };
    Ok(Round {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        requests: latencies.len() as u64,
    })
}

/// Prints the end-to-end tables and adds their targets.
pub(crate) fn report(load: Load, outcome: &Outcome, targets: &mut Vec<Target>) {
    let method = format!(
        "{} requests in flight (one kept-alive connection each), {} rounds of every side in \
         turn, each up to {} requests or {} s. Requests per second, p50 and p99 are medians \
         over rounds; \"of bare\" is the median over rounds of the side's figure over its \
         server's bare side's in the same round",
        load.concurrency,
        load.rounds,
        load.requests,
        load.limit.as_secs()
    );
    if !outcome.hyper.is_empty() {
        println!("## End to end: hyper client → hyper server on 127.0.0.1\n");
        println!(
            "{method}. The breaker and the timeout are on the client's side; the full stack is \
             `breaker.layer().end_of_stream()` over `TimeoutLayer::new(5 s).covering_body()`.\n"
        );
        sides(&outcome.hyper);
        if let Some(stack) = outcome.hyper.last() {
            throughput_and_p99("end to end, full stack", stack, targets);
        }
    }
    if !outcome.axum.is_empty() {
        println!("## End to end: hyper client → axum server on 127.0.0.1\n");
        println!(
            "{method}. One axum router, two routes answering `200 ok`: `/bare`, and \
             `/breaker` behind `.route_layer(breaker.layer().respond_503())` (breakwater's \
             defaults).\n"
        );
        sides(&outcome.axum);
        if let Some(route) = outcome.axum.last() {
            throughput_and_p99("end to end, axum, breaker as a route layer", route, targets);
        }
    }
}

fn sides(sides: &[Side]) {
    println!("| side | requests | requests/s | of bare | p50 | p99 | p99 of bare |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for side in sides {
        println!(
            "| {} | {} | {:.0} | {:.1}% | {:.1} µs | {:.1} µs | {:.1}% |",
            side.label,
            side.requests,
            side.per_second,
            side.of_bare * 100.0,
            side.p50.as_secs_f64() * 1e6,
            side.p99.as_secs_f64() * 1e6,
            side.p99_of_bare * 100.0,
        );
    }
    println!();
}

fn throughput_and_p99(what: &str, side: &Side, targets: &mut Vec<Target>) {
    let kept = side.of_bare * 100.0;
    targets.push(Target::new(
        format!("{what}: at least 98% of bare throughput"),
        format!("{kept:.1}%"),
        kept >= 98.0,
    ));
    let p99 = side.p99_of_bare * 100.0;
    targets.push(Target::new(
        format!("{what}: p99 within 5% of bare"),
        format!("{p99:.1}% of bare"),
        p99 <= 105.0,
    ));
}
