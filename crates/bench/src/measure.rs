//! How a call is timed: on one thread, many calls per batch, batches of every subject
//! interleaved round after round; and on a two-worker runtime, two tasks calling at once.
//!
//! Calls are made as users make them: `svc.ready().await?.call(req).await` in an `async fn`,
//! in a task on a tokio runtime (or `svc.clone().oneshot(req).await`, as axum calls a route).
//! An async caller moves each response future into its own future before polling it, so a
//! future's size costs what it costs users. The loops are generic (one per subject, no boxed
//! future per call); the batch is timed inside the task.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

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
    S: Service<u64> + Send + 'static,
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
async fn awaited_calls<S: Service<u64>>(svc: &mut S, n: u64) -> u64 {
    let mut failed = 0;
    for i in 0..n {
        match one_awaited(svc, black_box(i)).await {
            Ok(response) => {
                black_box(response);
            }
            Err(_) => failed += 1,
        }
    }
    failed
}

/// One call, written as users write it.
async fn one_awaited<S: Service<u64>>(svc: &mut S, request: u64) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(request).await
}

/// The calls of a service that is cloned for every request, as axum clones a route's service:
/// `svc.clone().oneshot(req).await` (`oneshot` moves the clone and its response future).
struct ClonePerRequest<S>(Option<S>);

impl<S> Subject for ClonePerRequest<S>
where
    S: Service<u64> + Clone + Send + 'static,
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
async fn cloned_calls<S: Service<u64> + Clone>(svc: &mut S, n: u64) -> u64 {
    let mut failed = 0;
    for i in 0..n {
        match svc.clone().oneshot(black_box(i)).await {
            Ok(response) => {
                black_box(response);
            }
            Err(_) => failed += 1,
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

impl<S: Service<u64>> Subject for InPlace<S> {
    #[inline(never)]
    fn run(&mut self, _: &Runtime, n: u64) -> Result<(u64, Duration), String> {
        let mut cx = Context::from_waker(Waker::noop());
        let start = Instant::now();
        let mut failed = 0;
        for i in 0..n {
            if !in_place_call(&mut self.0, &mut cx, black_box(i)) {
                failed += 1;
            }
        }
        Ok((failed, start.elapsed()))
    }
}

#[inline(always)]
fn in_place_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, request: u64) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let future = pin!(svc.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
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
        S: Service<u64> + Send + 'static,
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
        S: Service<u64> + Clone + Send + 'static,
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
    pub(crate) fn in_place<S: Service<u64> + 'static>(
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
            check(entry.label, entry.expect, failed, n)?;
            samples.push(elapsed.as_nanos() as f64 / n as f64);
        }
    }
    Ok(samples.iter_mut().map(|s| median(s)).collect())
}

fn check(label: &str, expect: Expect, failed: u64, calls: u64) -> Result<(), String> {
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

fn batch_size(batch: Duration, per_call: f64) -> u64 {
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

/// Something that makes calls from a task: each call awaits readiness and the response
/// (`ready().await`, `.await` on the call).
pub(crate) trait TaskSubject: Send + 'static {
    /// Makes `n` calls; returns how many of them did not succeed.
    fn run(&mut self, n: u64) -> Pin<Box<dyn Future<Output = u64> + Send + '_>>;
}

/// The calls of a tower service, made from a task.
pub(crate) struct TaskCalls<S>(pub(crate) S);

impl<S> TaskSubject for TaskCalls<S>
where
    S: Service<u64> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    fn run(&mut self, n: u64) -> Pin<Box<dyn Future<Output = u64> + Send + '_>> {
        // One box per batch of calls, not per call: the loop inside is monomorphised.
        Box::pin(awaited_calls(&mut self.0, n))
    }
}

/// One row of a two-task scenario: two handles on one breaker.
pub(crate) struct Pair {
    pub(crate) label: &'static str,
    pub(crate) tasks: [Box<dyn TaskSubject>; 2],
}

impl Pair {
    /// Two clones of `svc`, which share its breaker.
    pub(crate) fn new<S>(label: &'static str, svc: S) -> Self
    where
        S: Service<u64> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        Self {
            label,
            tasks: [Box::new(TaskCalls(svc.clone())), Box::new(TaskCalls(svc))],
        }
    }
}

/// The median, over rounds, of the nanoseconds per call of each task while both call at once
/// (the wall time of the round over the calls each task made), for each pair in order.
pub(crate) fn two_tasks(pairs: &mut [Pair], plan: Plan) -> Result<Vec<f64>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("a two-worker tokio runtime: {e}"))?;
    let mut results = Vec::with_capacity(pairs.len());
    for pair in pairs.iter_mut() {
        // Calibrate: a short round, then batches of about `plan.batch`.
        let probe = 10_000;
        let (ns, _) = round(&runtime, pair, probe)?;
        let n = batch_size(plan.batch, ns * 1e-9);
        let warm = Instant::now();
        while warm.elapsed() < plan.warmup {
            round(&runtime, pair, n.min(100_000))?;
        }
        let mut samples = Vec::with_capacity(plan.rounds);
        let mut attempts = 0;
        while samples.len() < plan.rounds {
            attempts += 1;
            match round(&runtime, pair, n)? {
                (ns, true) => samples.push(ns),
                // Both tasks ran on one worker, one after the other: not the measurement.
                (_, false) if attempts < 3 * plan.rounds => {}
                (_, false) => {
                    return Err(format!(
                        "{}: the two tasks would not run at the same time on two workers",
                        pair.label
                    ));
                }
            }
        }
        results.push(median(&mut samples));
    }
    Ok(results)
}

/// One round: both tasks make `n` calls, starting together. Returns the nanoseconds per call
/// per task, and whether the two really ran at the same time.
fn round(runtime: &Runtime, pair: &mut Pair, n: u64) -> Result<(f64, bool), String> {
    let gate = Arc::new(AtomicUsize::new(0));
    let [a, b] = std::mem::replace(&mut pair.tasks, [placeholder(), placeholder()]);
    let spawn = |mut subject: Box<dyn TaskSubject>| {
        let gate = Arc::clone(&gate);
        runtime.spawn(async move {
            gate.fetch_add(1, Ordering::AcqRel);
            // Wait (a bounded spin) for the other task, so both call at once.
            let limit = Instant::now() + Duration::from_millis(500);
            while gate.load(Ordering::Acquire) < 2 && Instant::now() < limit {
                std::hint::spin_loop();
            }
            let together = gate.load(Ordering::Acquire) >= 2;
            let start = Instant::now();
            let failed = subject.run(n).await;
            (subject, start, Instant::now(), failed, together)
        })
    };
    let (first, second) = (spawn(a), spawn(b));
    let joined = runtime.block_on(async { (first.await, second.await) });
    let (Ok(a), Ok(b)) = joined else {
        return Err(format!("{}: a task panicked", pair.label));
    };
    pair.tasks = [a.0, b.0];
    for failed in [a.3, b.3] {
        check(pair.label, Expect::Success, failed, n)?;
    }
    let wall = a.2.max(b.2).duration_since(a.1.min(b.1));
    Ok((wall.as_nanos() as f64 / n as f64, a.4 && b.4))
}

fn placeholder() -> Box<dyn TaskSubject> {
    struct Nothing;
    impl TaskSubject for Nothing {
        fn run(&mut self, _: u64) -> Pin<Box<dyn Future<Output = u64> + Send + '_>> {
            Box::pin(async { 0 })
        }
    }
    Box::new(Nothing)
}
