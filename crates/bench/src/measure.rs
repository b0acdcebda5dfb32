//! How a call is timed on one thread: many calls per batch, batches of every subject
//! interleaved round after round (two tasks calling at once: `two_tasks`).
//!
//! Calls are made as users make them: `svc.ready().await?.call(req).await` in an `async fn`,
//! in a task on a tokio runtime (or `svc.clone().oneshot(req).await`, as axum calls a route).
//! An async caller moves each response future into its own future before polling it, so a
//! future's size costs what it costs users. The loops are generic (one per subject, no boxed
//! future per call); the batch is timed inside the task. Each call gets a fresh
//! `http::Request<()>`, made the same way for every subject.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

use crate::recorder;

/// The request of every call: an `http::Request<()>`, made fresh for each call.
pub(crate) type Req = Request<()>;

/// The answer of every call that succeeds: `200`, no body.
pub(crate) type Res = Response<()>;

/// A fresh request, made the same way for every subject (the bare service too, so "added"
/// subtracts its cost out); `black_box` keeps the compiler from eliding it.
#[inline(always)]
pub(crate) fn request() -> Req {
    black_box(Request::new(()))
}

/// Whether a call succeeded: answered `200` (a timeout that answers `408`, or a breaker that
/// answers `503`, did not).
#[inline(always)]
fn answered<E>(result: Result<Res, E>) -> bool {
    match result {
        Ok(response) => black_box(response).status() == StatusCode::OK,
        Err(_) => false,
    }
}

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Batches of each subject; the median batch is reported.
    pub(crate) rounds: usize,
    /// How long one batch lasts (its number of calls is calibrated to it).
    pub(crate) batch: Duration,
    /// Calls made before measuring, per subject, to warm caches and branch predictors.
    pub(crate) warmup: Duration,
}

/// Something that makes calls on one thread.
pub(crate) trait Subject {
    /// Makes `n` calls on `runtime` (a current-thread one); returns how many of them did not
    /// succeed and how long the `n` calls took.
    fn run(&mut self, runtime: &Runtime, n: u64) -> Result<(u64, Duration), String>;
}

/// The calls of a tower service as a user makes them: `svc.ready().await?.call(req).await`
/// in an `async fn`, in a task on a tokio runtime. The response future is moved into the
/// caller's own future before it is polled, as in any async caller, so its size counts.
struct Awaited<S>(Option<S>);

impl<S> Subject for Awaited<S>
where
    S: Service<Req, Response = Res> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    #[inline(never)]
    fn run(&mut self, runtime: &Runtime, n: u64) -> Result<(u64, Duration), String> {
        timed_batch(&mut self.0, runtime, move |mut svc| async move {
            let failed = awaited_calls(&mut svc, n).await;
            (svc, failed)
        })
    }
}

/// `n` calls, each `ready().await` then `.await` on the call; how many did not succeed.
pub(crate) async fn awaited_calls<S: Service<Req, Response = Res>>(svc: &mut S, n: u64) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        if !answered(one_awaited(svc, request()).await) {
            failed += 1;
        }
    }
    failed
}

/// One call, written as users write it.
async fn one_awaited<S: Service<Req, Response = Res>>(
    svc: &mut S,
    request: Req,
) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(request).await
}

/// The calls of a service that is cloned for every request, as axum clones a route's service:
/// `svc.clone().oneshot(req).await` (`oneshot` moves the clone and its response future).
struct ClonePerRequest<S>(Option<S>);

impl<S> Subject for ClonePerRequest<S>
where
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    #[inline(never)]
    fn run(&mut self, runtime: &Runtime, n: u64) -> Result<(u64, Duration), String> {
        timed_batch(&mut self.0, runtime, move |mut svc| async move {
            let failed = cloned_calls(&mut svc, n).await;
            (svc, failed)
        })
    }
}

/// `n` calls, each on a fresh clone of `svc`; how many did not succeed.
async fn cloned_calls<S: Service<Req, Response = Res> + Clone>(svc: &mut S, n: u64) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        if !answered(svc.clone().oneshot(request()).await) {
            failed += 1;
        }
    }
    failed
}

/// Runs one batch as a task spawned on `runtime`, as a server runs a connection's requests
/// (a call that waits wakes its task, which the scheduler polls again), and waits for it.
/// One task per batch, not per call.
/// Runs `calls` on the service in `slot` in a task, timed inside the task, and puts the service
/// back: how many calls failed, and how long they took.
fn timed_batch<S, F>(
    slot: &mut Option<S>,
    runtime: &Runtime,
    calls: impl FnOnce(S) -> F,
) -> Result<(u64, Duration), String>
where
    S: Send + 'static,
    F: Future<Output = (S, u64)> + Send + 'static,
{
    let Some(svc) = slot.take() else {
        return Err("a subject lost its service (a batch panicked)".to_owned());
    };
    let batch = calls(svc);
    let (svc, failed, elapsed) = in_task(runtime, async move {
        let start = Instant::now();
        let (svc, failed) = batch.await;
        (svc, failed, start.elapsed())
    })?;
    *slot = Some(svc);
    Ok((failed, elapsed))
}

fn in_task<T: Send + 'static>(
    runtime: &Runtime,
    batch: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    runtime
        .block_on(runtime.spawn(batch))
        .map_err(|e| format!("a batch of calls failed: {e}"))
}

/// The old harness, kept for reference: `poll_ready`, `call`, one poll of the response future
/// in place (pinned on the loop's stack, never moved) with a no-op waker, no runtime. A
/// future's size costs nothing here, which is why it is not how the rows are measured.
struct InPlace<S>(S);

impl<S: Service<Req, Response = Res>> Subject for InPlace<S> {
    #[inline(never)]
    fn run(&mut self, _: &Runtime, n: u64) -> Result<(u64, Duration), String> {
        let mut cx = Context::from_waker(Waker::noop());
        let start = Instant::now();
        let mut failed = 0;
        for _ in 0..n {
            if !in_place_call(&mut self.0, &mut cx, request()) {
                failed += 1;
            }
        }
        Ok((failed, start.elapsed()))
    }
}

#[inline(always)]
fn in_place_call<S: Service<Req, Response = Res>>(
    svc: &mut S,
    cx: &mut Context<'_>,
    request: Req,
) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let future = pin!(svc.call(request));
    match future.poll(cx) {
        Poll::Ready(result) => answered(result),
        Poll::Pending => false,
    }
}

/// What every call of a subject must do for its measurement to mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Every call succeeds (the breaker is closed).
    Success,
    /// Every call fails (the breaker is open and rejects it).
    Failure,
}

/// One row of a one-thread scenario.
pub(crate) struct Entry {
    pub(crate) label: &'static str,
    pub(crate) subject: Box<dyn Subject>,
    pub(crate) expect: Expect,
}

impl Entry {
    /// A row of awaited calls (`ready().await`, `.await` on the call) in a task.
    pub(crate) fn new<S>(label: &'static str, svc: S, expect: Expect) -> Self
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        Self {
            label,
            subject: Box::new(Awaited(Some(svc))),
            expect,
        }
    }

    /// A row of calls each made on a fresh clone of `svc` with `oneshot` (axum style).
    pub(crate) fn cloned<S>(label: &'static str, svc: S, expect: Expect) -> Self
    where
        S: Service<Req, Response = Res> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        Self {
            label,
            subject: Box::new(ClonePerRequest(Some(svc))),
            expect,
        }
    }

    /// A row of calls polled in place with a no-op waker (the old harness, for reference).
    pub(crate) fn in_place<S: Service<Req, Response = Res> + 'static>(
        label: &'static str,
        svc: S,
        expect: Expect,
    ) -> Self {
        Self {
            label,
            subject: Box::new(InPlace(svc)),
            expect,
        }
    }
}

/// A current-thread tokio runtime with its I/O and time drivers, as
/// `#[tokio::main(flavor = "current_thread")]` builds it.
pub(crate) fn current_thread() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a current-thread tokio runtime: {e}"))
}

/// The median nanoseconds per call of each entry, in order, its calls made on `runtime` (a
/// current-thread one). Fails when a call did not do what its entry expects (a breaker that
/// was not closed, or not open).
pub(crate) fn one_thread(
    entries: &mut [Entry],
    plan: Plan,
    runtime: &Runtime,
) -> Result<Vec<f64>, String> {
    let mut sizes = Vec::with_capacity(entries.len());
    for entry in entries.iter_mut() {
        let mut spent = Duration::ZERO;
        let mut calls: u64 = 0;
        while spent < plan.warmup || calls == 0 {
            let (failed, elapsed) = entry.subject.run(runtime, 1_000)?;
            recorder::upkeep();
            check(entry.label, entry.expect, failed, 1_000)?;
            spent += elapsed;
            calls += 1_000;
        }
        let per_call = spent.as_secs_f64() / calls as f64;
        sizes.push(batch_size(plan.batch, per_call));
    }
    let mut samples = vec![Vec::with_capacity(plan.rounds); entries.len()];
    for _ in 0..plan.rounds {
        for ((entry, &n), samples) in entries.iter_mut().zip(&sizes).zip(&mut samples) {
            let (failed, elapsed) = entry.subject.run(runtime, n)?;
            recorder::upkeep();
            check(entry.label, entry.expect, failed, n)?;
            samples.push(elapsed.as_nanos() as f64 / n as f64);
        }
    }
    Ok(samples.iter_mut().map(|s| median(s)).collect())
}

pub(crate) fn check(label: &str, expect: Expect, failed: u64, calls: u64) -> Result<(), String> {
    let wanted = match expect {
        Expect::Success => 0,
        Expect::Failure => calls,
    };
    if failed == wanted {
        Ok(())
    } else {
        Err(format!(
            "{label}: {failed} of {calls} calls failed, expected {wanted}: the subject is not in \
             the state its row measures"
        ))
    }
}

pub(crate) fn batch_size(batch: Duration, per_call: f64) -> u64 {
    ((batch.as_secs_f64() / per_call.max(1e-10)) as u64).clamp(1_000, 100_000_000)
}

pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2.0,
    }
}
