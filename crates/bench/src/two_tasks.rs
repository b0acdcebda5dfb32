//! Two tasks calling one breaker at once, on a two-worker runtime: each holds a clone of the
//! service and makes awaited calls; a round is timed by its wall time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tower::Service;

use crate::measure::{Expect, Plan, Req, Res, awaited_calls, batch_size, check, median};
use crate::recorder;

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
    S: Service<Req, Response = Res> + Send + 'static,
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
        S: Service<Req, Response = Res> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
    {
        Self {
            label,
            tasks: [Box::new(TaskCalls(svc.clone())), Box::new(TaskCalls(svc))],
        }
    }
}

/// A tokio runtime of two workers, with its I/O and time drivers.
pub(crate) fn two_workers() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("a two-worker tokio runtime: {e}"))
}

/// The median, over rounds, of the nanoseconds per call of each task while both call at once
/// (the wall time of the round over the calls each task made), for each pair in order, on
/// `runtime` (a two-worker one).
pub(crate) fn measure(
    pairs: &mut [Pair],
    plan: Plan,
    runtime: &Runtime,
) -> Result<Vec<f64>, String> {
    let mut sizes = Vec::with_capacity(pairs.len());
    for pair in pairs.iter_mut() {
        // Calibrate: a short round, then batches of about `plan.batch`.
        let probe = 10_000;
        let (ns, _) = round(runtime, pair, probe)?;
        let n = batch_size(plan.batch, ns * 1e-9);
        let warm = Instant::now();
        while warm.elapsed() < plan.warmup {
            round(runtime, pair, n.min(100_000))?;
        }
        sizes.push(n);
    }
    // Rounds of every pair interleaved, as on one thread, so a drift of the machine's speed
    // touches all alike.
    let mut samples = vec![Vec::with_capacity(plan.rounds); pairs.len()];
    for _ in 0..plan.rounds {
        for ((pair, &n), samples) in pairs.iter_mut().zip(&sizes).zip(&mut samples) {
            samples.push(together(runtime, pair, n)?);
        }
    }
    Ok(samples.iter_mut().map(|s| median(s)).collect())
}

/// A round in which the two tasks really ran at the same time (ten tries at most).
fn together(runtime: &Runtime, pair: &mut Pair, n: u64) -> Result<f64, String> {
    for _ in 0..10 {
        if let (ns, true) = round(runtime, pair, n)? {
            return Ok(ns);
        }
        // Both tasks ran on one worker, one after the other: not the measurement.
    }
    Err(format!(
        "{}: the two tasks would not run at the same time on two workers",
        pair.label
    ))
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
    recorder::upkeep();
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
