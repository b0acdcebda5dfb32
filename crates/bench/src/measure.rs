//! How a call is timed: on one thread, many calls per batch, batches of every subject
//! interleaved round after round; and on a two-worker runtime, two tasks calling at once.

use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tower::Service;

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

/// Something that makes calls on one thread, from a loop that polls each future once.
pub(crate) trait Subject {
    /// Makes `n` calls; returns how many of them did not succeed.
    fn run(&mut self, n: u64) -> u64;
}

/// The calls of a tower service: `poll_ready`, `call`, one poll of the response future, as a
/// client of a service that answers at once makes them.
pub(crate) struct Calls<S>(pub(crate) S);

impl<S: Service<u64>> Subject for Calls<S> {
    #[inline(never)]
    fn run(&mut self, n: u64) -> u64 {
        let mut cx = Context::from_waker(Waker::noop());
        let mut failed = 0;
        for i in 0..n {
            if !one_call(&mut self.0, &mut cx, black_box(i)) {
                failed += 1;
            }
        }
        failed
    }
}

#[inline(always)]
fn one_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, request: u64) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let future = pin!(svc.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
}

/// The calls of a tower service whose calls wait once: `poll_ready`, `call`, and two polls of
/// the response future (the first pending).
pub(crate) struct WaitingCalls<S>(pub(crate) S);

impl<S: Service<u64>> Subject for WaitingCalls<S> {
    #[inline(never)]
    fn run(&mut self, n: u64) -> u64 {
        let mut cx = Context::from_waker(Waker::noop());
        let mut failed = 0;
        for i in 0..n {
            if !waiting_call(&mut self.0, &mut cx, black_box(i)) {
                failed += 1;
            }
        }
        failed
    }
}

#[inline(always)]
fn waiting_call<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, request: u64) -> bool {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let mut future = pin!(svc.call(request));
    if future.as_mut().poll(cx).is_ready() {
        return false;
    }
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
    pub(crate) fn new<S: Service<u64> + 'static>(
        label: &'static str,
        svc: S,
        expect: Expect,
    ) -> Self {
        Self {
            label,
            subject: Box::new(Calls(svc)),
            expect,
        }
    }

    /// A row of calls that wait once and then succeed.
    pub(crate) fn waiting<S: Service<u64> + 'static>(label: &'static str, svc: S) -> Self {
        Self {
            label,
            subject: Box::new(WaitingCalls(svc)),
            expect: Expect::Success,
        }
    }
}

/// The median nanoseconds per call of each entry, in order. Fails when a call did not do what
/// its entry expects (a breaker that was not closed, or not open).
pub(crate) fn one_thread(entries: &mut [Entry], plan: Plan) -> Result<Vec<f64>, String> {
    let mut sizes = Vec::with_capacity(entries.len());
    for entry in entries.iter_mut() {
        let start = Instant::now();
        let mut calls: u64 = 0;
        while start.elapsed() < plan.warmup || calls == 0 {
            check(entry.label, entry.expect, entry.subject.run(1_000), 1_000)?;
            calls += 1_000;
        }
        let per_call = start.elapsed().as_secs_f64() / calls as f64;
        sizes.push(batch_size(plan.batch, per_call));
    }
    let mut samples = vec![Vec::with_capacity(plan.rounds); entries.len()];
    for _ in 0..plan.rounds {
        for ((entry, &n), samples) in entries.iter_mut().zip(&sizes).zip(&mut samples) {
            let start = Instant::now();
            let failed = entry.subject.run(n);
            let elapsed = start.elapsed();
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

/// Something that makes calls from a task: each call awaits readiness and the response.
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
{
    fn run(&mut self, n: u64) -> Pin<Box<dyn Future<Output = u64> + Send + '_>> {
        // One box per batch of calls, not per call.
        Box::pin(async move {
            let mut failed = 0;
            for i in 0..n {
                if poll_fn(|cx| self.0.poll_ready(cx)).await.is_err() {
                    failed += 1;
                    continue;
                }
                if self.0.call(black_box(i)).await.is_err() {
                    failed += 1;
                }
            }
            failed
        })
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
fn round(
    runtime: &tokio::runtime::Runtime,
    pair: &mut Pair,
    n: u64,
) -> Result<(f64, bool), String> {
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
