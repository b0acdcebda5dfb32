//! The one-call scenarios: each prints its table and adds its targets.

use tokio::runtime::Runtime;

use crate::measure::{self, Entry, Plan};
use crate::report::{Target, below_every, table, within};
use crate::subjects::{self, How, TIMEOUT_HALF};
use crate::{Options, recorder, two_tasks};

/// Independent runs of the timeout rows; the target compares the medians of their figures.
const TIMEOUT_RUNS: usize = 5;

const AWAITED: &str = "`svc.ready().await?.call(req).await` in a task on a current-thread \
                       runtime, a fresh `http::Request<()>` per call, answered `200` at once";

pub(crate) fn run(options: &Options, plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    if options.runs("closed") {
        closed(How::Awaited, plan, targets)?;
    }
    if options.runs("two-tasks") {
        two_tasks(plan, targets)?;
    }
    if options.runs("clone-per-request") {
        closed(How::ClonePerRequest, plan, targets)?;
    }
    if options.runs("rejection") {
        rejection(plan, targets)?;
    }
    if options.runs("time-window") {
        time_window(plan, targets)?;
    }
    if options.runs("metrics") {
        metrics(plan, targets)?;
    }
    if options.runs("timeout") {
        timeouts(plan, targets)?;
    }
    if options.runs("in-place") {
        closed(How::InPlace, plan, targets)?;
    }
    Ok(())
}

/// The rows `make` builds (inside `runtime`, as seatbelt's clock needs), measured on it.
fn measured(
    runtime: &Runtime,
    plan: Plan,
    make: impl FnOnce() -> Vec<Entry>,
) -> Result<(Vec<&'static str>, Vec<f64>), String> {
    let mut entries = {
        let _in_runtime = runtime.enter();
        make()
    };
    let labels = entries.iter().map(|e| e.label).collect();
    let ns = measure::one_thread(&mut entries, plan, runtime)?;
    Ok((labels, ns))
}

fn closed(how: How, plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    let runtime = measure::current_thread()?;
    let (labels, ns) = measured(&runtime, plan, || subjects::closed(how))?;
    let setup = "breakwater: `breaker.layer()` (its `HttpClassifier`), a count window of 100 \
                 calls, at least 100, 50%, no slow-call threshold; tower-resilience-circuitbreaker \
                 and recloser: the same window; failsafe: its default policy (no count window); \
                 seatbelt: 50% of at least 100 calls in a 1 s sampling window (it has no count \
                 window; 1 s is its shortest). \"breakwater, HTTP rules of its own\" is breakwater's \
                 breaker with an `HttpClassifier` of rules of its own (`.failure(429)`), which \
                 each call reads through a view of their pooled table; \"breakwater, fleet \
                 joined\" is the first row's breaker joined to a breakwater-fleet on a local \
                 Redis (heartbeat 1 s; its task on a runtime of its own). Neither is a target row";
    match how {
        How::Awaited => {
            let added = table(
                "Closed, one thread",
                &format!("{AWAITED}. {setup}"),
                &labels,
                &ns,
                true,
            );
            targets.push(within(
                "closed, one thread: at most half of the best peer",
                &labels,
                &added,
                0.5,
            ));
        }
        How::ClonePerRequest => {
            let added = table(
                "Closed, a clone of the service per request (axum style), one thread",
                "`svc.clone().oneshot(req).await` for every request, in a task on a \
                 current-thread runtime; the subjects of \"Closed, one thread\". Every subject's \
                 service is `Clone` (failsafe's and recloser's through their adapters), so none \
                 is left out",
                &labels,
                &ns,
                true,
            );
            targets.push(below_every(
                "closed, clone per request: below every peer",
                &labels,
                &added,
            ));
        }
        How::InPlace => {
            table(
                "For reference: closed, one thread, in place (no-op waker)",
                "the old harness, which no user writes: `poll_ready`, `call` and one poll of the \
                 response future pinned where it was made, with a no-op waker and no runtime. \
                 Futures are never moved, so their size costs nothing here; the targets are not \
                 measured on it",
                &labels,
                &ns,
                true,
            );
        }
    }
    Ok(())
}

fn two_tasks(plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    let runtime = two_tasks::two_workers()?;
    let mut pairs = {
        let _in_runtime = runtime.enter();
        subjects::closed_pairs()
    };
    let labels: Vec<&'static str> = pairs.iter().map(|p| p.label).collect();
    let ns = two_tasks::measure(&mut pairs, plan, &runtime)?;
    let added = table(
        "Closed, two tasks sharing one breaker on a two-worker runtime",
        "`ready().await`, `.await` on the call, in each of two tasks holding a clone of one \
         service, set up as in \"Closed, one thread\"; ns per call per task: the round's wall \
         time over the calls each task made",
        &labels,
        &ns,
        true,
    );
    targets.push(within(
        "closed, two tasks: at most half of the best peer",
        &labels,
        &added,
        0.5,
    ));
    Ok(())
}

fn rejection(plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    // breakwater's automatic transition spawns its timer on this runtime when the breaker
    // opens; it sleeps (an hour) through the run.
    let runtime = measure::current_thread()?;
    let (labels, ns) = measured(&runtime, plan, subjects::rejected)?;
    let added = table(
        "Open: a rejected call, one thread",
        "awaited calls as in \"Closed, one thread\"; every breaker tripped by failing calls, \
         then open for an hour; \"added\" is over the bare service's call, as elsewhere (the \
         request is made either way). breakwater's error is a boxed `CircuitOpen` (one \
         allocation), the peers' an enum (seatbelt's of the inner error or `Open`, as its \
         rejection must be the service's own output); seatbelt boxes its future. By default (as in \
         resilience4j) an open breaker moves to half-open at the first call after its wait, so \
         each rejection reads the clock, as the peers' do; with the automatic transition a \
         timer moves it, and rejections read no clock (not a target row); \"held past its \
         wait\": a breaker whose wait is over, kept open by a fleet's hold on half-open (a \
         clock read and the hold per rejection; not a target row); \"fleet joined\": the \
         first row's breaker joined to a breakwater-fleet on a local Redis (not a target \
         row)",
        &labels,
        &ns,
        true,
    );
    targets.push(within(
        "open rejection: at most three quarters of the best peer",
        &labels,
        &added,
        0.75,
    ));
    Ok(())
}

fn time_window(plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    let runtime = measure::current_thread()?;
    let (labels, ns) = measured(&runtime, plan, subjects::time_window)?;
    let added = table(
        "Closed, a 60 s time window with slow-call detection (5 s), one thread",
        "awaited calls as in \"Closed, one thread\"; breakwater and \
         tower-resilience-circuitbreaker detect slow calls (so time every call); failsafe's and \
         seatbelt's time windows detect none; recloser has no time window",
        &labels,
        &ns,
        true,
    );
    let at = |label: &str| labels.iter().position(|l| *l == label).map(|i| added[i]);
    if let (Some(ours), Some(failsafe)) = (at("breakwater"), at("failsafe (no slow calls)")) {
        targets.push(Target::new(
            "time window with slow calls: below failsafe's time window",
            format!("{ours:.1} ns against {failsafe:.1} ns"),
            ours < failsafe,
        ));
    }
    Ok(())
}

fn metrics(plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    let runtime = measure::current_thread()?;
    let (labels, ns) = measured(&runtime, plan, subjects::metrics)?;
    let timed = |name| recorder::durations_recorded(name).unwrap_or(0);
    let counted = |name| recorder::calls_counted(name).unwrap_or(0);
    let (on, off, counts) = (
        timed("bench-metrics-on"),
        timed("bench-metrics-off"),
        timed("bench-metrics-counts"),
    );
    let (counted_on, counted_off, counted_counts) = (
        counted("bench-metrics-on"),
        counted("bench-metrics-off"),
        counted("bench-metrics-counts"),
    );
    let added = table(
        "Metrics off and on, one thread",
        &format!(
            "awaited calls as in \"Closed, one thread\", breakwater's breaker of that table; \
             Prometheus's recorder (`metrics-exporter-prometheus`) is installed for the whole \
             run, its upkeep run between batches. \"metrics on\" \
             (`.metrics(true).metrics_durations(true)`) counts its calls and times each for the \
             duration histogram; \"counts only\" (`.metrics(true)`) counts them. After the run \
             the recorder held {counted_on} counted calls and {on} durations of \"metrics on\", \
             {counted_counts} counted calls and {counts} durations of \"counts only\", \
             {counted_off} and {off} of \"metrics off\""
        ),
        &labels,
        &ns,
        true,
    );
    if on == 0
        || counted_on == 0
        || counted_counts == 0
        || counts != 0
        || off != 0
        || counted_off != 0
    {
        return Err(
            "breakwater's metrics rows: a breaker recorded what it did not ask for, or nothing of \
             what it asked for"
                .to_owned(),
        );
    }
    let (off_ns, on_ns, counts_ns) = (added[1], added[2], added[3]);
    targets.push(Target::new(
        "metrics on with a recorder: at most twice metrics off",
        format!(
            "{on_ns:.1} ns against {off_ns:.1} ns: {:.2}× (counts only, calls not timed: \
             {counts_ns:.1} ns, {:.2}×)",
            on_ns / off_ns,
            counts_ns / off_ns
        ),
        on_ns <= 2.0 * off_ns,
    ));
    Ok(())
}

fn timeouts(plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    let runtime = measure::current_thread()?;
    let mut runs: Vec<Vec<f64>> = Vec::with_capacity(TIMEOUT_RUNS);
    let mut labels = Vec::new();
    for _ in 0..TIMEOUT_RUNS {
        let (run_labels, ns) = measured(&runtime, plan, subjects::timeouts)?;
        labels = run_labels;
        runs.push(ns);
    }
    // Each row's median over the runs, for the tables.
    let ns: Vec<f64> = (0..labels.len())
        .map(|row| measure::median(&mut runs.iter().map(|run| run[row]).collect::<Vec<_>>()))
        .collect();
    let halves = [
        (
            "Timeout of 30 s, a call that answers at once, one thread",
            "awaited calls as in \"Closed, one thread\"; each creates tokio's timer in `call` \
             (reading the clock). breakwater's and tower's poll the call first and drop the timer \
             unregistered; `tower_http::timeout` polls its timer first, so it registers it on \
             every call, and answers `408` when the time is up, instead of failing",
            "a call that answers at once",
        ),
        (
            "Timeout of 30 s, a call that waits once (pending at the first poll)",
            "awaited calls; the call wakes its task and is pending once, so the task goes back \
             to the scheduler. Each arms tokio's timer, registers it at the pending poll and \
             removes it on drop",
            "a call that waits once",
        ),
    ];
    let mut per_run = Vec::new();
    for (half, (title, note, what)) in halves.into_iter().enumerate() {
        let rows = half * TIMEOUT_HALF..(half + 1) * TIMEOUT_HALF;
        table(
            title,
            &format!(
                "{note}. Each row is its median over {TIMEOUT_RUNS} independent runs (each the \
                 usual interleaved rounds)"
            ),
            &labels[rows.clone()],
            &ns[rows.clone()],
            true,
        );
        // What breakwater and tower::timeout add in each run, then the median of each.
        let added = |row: usize| -> Vec<f64> {
            runs.iter()
                .map(|run| (run[rows.start + row] - run[rows.start]).max(0.0))
                .collect()
        };
        let (mut ours, mut tower) = (added(1), added(2));
        per_run.push((what, ours.clone(), tower.clone()));
        let (ours, tower) = (measure::median(&mut ours), measure::median(&mut tower));
        targets.push(Target::new(
            format!(
                "`TimeoutLayer` no slower than `tower::timeout`, {what} (median of \
                 {TIMEOUT_RUNS} interleaved runs)"
            ),
            format!("{ours:.1} ns against {tower:.1} ns"),
            ours <= tower,
        ));
    }
    println!("What each run measured (added ns), breakwater against `tower::timeout`:\n");
    println!("| call | {} |", runs_header());
    println!("|---|{}", "---:|".repeat(TIMEOUT_RUNS));
    for (what, ours, tower) in per_run {
        let cells: Vec<String> = ours
            .iter()
            .zip(&tower)
            .map(|(o, t)| format!("{o:.1} / {t:.1}"))
            .collect();
        println!("| {what} | {} |", cells.join(" | "));
    }
    println!();
    Ok(())
}

fn runs_header() -> String {
    (1..=TIMEOUT_RUNS)
        .map(|i| format!("run {i}"))
        .collect::<Vec<_>>()
        .join(" | ")
}
