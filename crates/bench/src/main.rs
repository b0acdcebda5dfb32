//! breakwater side by side with the Rust circuit breakers a user would pick instead
//! (tower-resilience-circuitbreaker, failsafe, recloser) and its `TimeoutLayer` with
//! `tower::timeout`, all in one run on one machine; then end to end, a hyper client against a
//! hyper server on loopback, bare and behind the full stack.
//!
//! Every call is made as users make it: `svc.ready().await?.call(req).await` in an `async fn`
//! on a tokio runtime, or `svc.clone().oneshot(req).await` for each request as axum does (see
//! `measure`).
//!
//! Run with `cargo run --release -p bench` (under a minute). `--quick` makes a short run
//! that only checks the harness works (its numbers are rough); `--only PART[,PART...]` runs
//! some parts: `closed`, `two-tasks`, `clone-per-request`, `rejection`, `time-window`,
//! `timeout`, `in-place` (the old no-op-waker harness, for reference), `e2e`, or `micro` (all
//! but `e2e`). It prints Markdown tables: nanoseconds per call, what each breaker adds over the
//! bare service, and that as a multiple of what breakwater adds. See BENCHMARKS.md.

mod e2e;
mod measure;
mod subjects;

use std::process::ExitCode;
use std::time::Duration;

use measure::Plan;
use subjects::How;

/// The parts of a run, in the order they run.
const PARTS: [&str; 8] = [
    "closed",
    "two-tasks",
    "clone-per-request",
    "rejection",
    "time-window",
    "timeout",
    "in-place",
    "e2e",
];

/// What the command line asked for.
#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    /// The parts to run (all by default).
    parts: Vec<&'static str>,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        self.parts.contains(&part)
    }
}

fn options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut quick = false;
    let mut parts = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let Some(value) = args.next() else {
                    return Err(format!(
                        "--only needs a part of the run: one of {}",
                        PARTS.join(", ")
                    ));
                };
                for name in value.split(',') {
                    match name {
                        "micro" => parts.extend(PARTS.iter().filter(|p| **p != "e2e")),
                        _ => match PARTS.iter().find(|p| **p == name) {
                            Some(part) => parts.push(*part),
                            None => {
                                return Err(format!(
                                    "--only: `{name}` is not a part of the run; allowed: {}, \
                                     micro (all but e2e), or several separated by commas",
                                    PARTS.join(", ")
                                ));
                            }
                        },
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; allowed: --quick, --only PART[,PART...]"
                ));
            }
        }
    }
    if parts.is_empty() {
        parts.extend(PARTS);
    }
    Ok(Options { quick, parts })
}

fn main() -> ExitCode {
    let options = match options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            println!("bench: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let plan = if options.quick {
        Plan {
            rounds: 3,
            batch: Duration::from_millis(2),
            warmup: Duration::from_millis(5),
        }
    } else {
        Plan {
            rounds: 21,
            batch: Duration::from_millis(20),
            warmup: Duration::from_millis(200),
        }
    };
    println!(
        "# breakwater benchmarks{}\n",
        if options.quick {
            " (--quick: rough)"
        } else {
            ""
        }
    );
    println!("{}\n", machine());
    let mut targets = Vec::new();
    micro(options, plan, &mut targets)?;
    if options.runs("e2e") {
        let load = if options.quick {
            e2e::Load {
                rounds: 2,
                requests: 500,
                limit: Duration::from_secs(2),
                concurrency: 8,
            }
        } else {
            e2e::Load {
                rounds: 15,
                requests: 20_000,
                limit: Duration::from_secs(5),
                concurrency: 16,
            }
        };
        end_to_end(load, &mut targets)?;
    }
    println!("## Targets\n");
    println!("| target | measured | met |");
    println!("|---|---|---|");
    for target in &targets {
        println!(
            "| {} | {} | {} |",
            target.what,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        );
    }
    println!();
    Ok(())
}

struct Target {
    what: &'static str,
    measured: String,
    met: bool,
}

fn micro(options: &Options, plan: Plan, targets: &mut Vec<Target>) -> Result<(), String> {
    if options.runs("closed") {
        let runtime = measure::current_thread()?;
        let mut entries = subjects::closed(How::Awaited);
        let labels = entry_labels(&entries);
        let closed = measure::one_thread(&mut entries, plan, &runtime)?;
        let added = table(
            "Closed, one thread",
            "`svc.ready().await?.call(req).await` in a task on a current-thread runtime; count \
             window of 100 calls (failsafe: its default policy)",
            &labels,
            &closed,
            true,
        );
        let (ours, best) = ours_and_best_peer(&labels, &added);
        targets.push(Target {
            what: "closed, one thread (awaited calls): breakwater adds ≤ 15 ns",
            measured: format!("{ours:.1} ns"),
            met: ours <= 15.0,
        });
        targets.push(beats_half(
            "closed, one thread (awaited calls): below half of the best peer",
            ours,
            best,
        ));
    }
    if options.runs("two-tasks") {
        let mut pairs = subjects::closed_pairs();
        let pair_labels: Vec<&str> = pairs.iter().map(|p| p.label).collect();
        let two = measure::two_tasks(&mut pairs, plan)?;
        let added = table(
            "Closed, two tasks sharing one breaker on a two-worker runtime",
            "`ready().await`, `.await` on the call, in each of two tasks holding a clone of one \
             service; ns per call per task: the round's wall time over the calls each task made",
            &pair_labels,
            &two,
            true,
        );
        let (ours, best) = ours_and_best_peer(&pair_labels, &added);
        targets.push(Target {
            what: "closed, two tasks (awaited calls): breakwater adds ≤ 30 ns per call per task",
            measured: format!("{ours:.1} ns"),
            met: ours <= 30.0,
        });
        targets.push(beats_half(
            "closed, two tasks (awaited calls): below half of the best peer",
            ours,
            best,
        ));
    }
    if options.runs("clone-per-request") {
        let runtime = measure::current_thread()?;
        let mut entries = subjects::closed(How::ClonePerRequest);
        let labels = entry_labels(&entries);
        let cloned = measure::one_thread(&mut entries, plan, &runtime)?;
        table(
            "Closed, a clone of the service per request (axum style), one thread",
            "`svc.clone().oneshot(req).await` for every request, in a task on a current-thread \
             runtime; the subjects of \"Closed, one thread\". Every subject's service is `Clone` \
             (failsafe's and recloser's through their adapters), so none is left out",
            &labels,
            &cloned,
            true,
        );
    }
    if options.runs("rejection") {
        // The automatic transition's timer needs a runtime when the breaker opens: it is spawned
        // on this one and sleeps (an hour) through the run.
        let runtime = measure::current_thread()?;
        let mut rejected = {
            let _in_runtime = runtime.enter();
            subjects::rejected()
        };
        let labels = entry_labels(&rejected);
        let open = measure::one_thread(&mut rejected, plan, &runtime)?;
        let added = table(
            "Open: a rejected call, one thread",
            "awaited calls as in \"Closed, one thread\"; tripped by failing calls, wait one \
             hour; breakwater's error is a boxed `CircuitOpen` \
             (one allocation), the peers' an enum. By default (as in resilience4j) an open \
             breaker moves to half-open at the first call after its wait, so each rejection \
             reads the clock, as the peers' do; with the automatic transition a timer moves it, \
             and rejections read no clock",
            &labels,
            &open,
            false,
        );
        let automatic = added[labels.len() - 1];
        targets.push(Target {
            what: "rejection when open ≤ 40 ns (default: lazy move to half-open)",
            measured: format!("{:.1} ns", added[0]),
            met: added[0] <= 40.0,
        });
        targets.push(Target {
            what: "rejection when open ≤ 40 ns (automatic transition to half-open)",
            measured: format!("{automatic:.1} ns"),
            met: automatic <= 40.0,
        });
    }
    if options.runs("time-window") {
        let mut windows = subjects::time_window();
        let labels = entry_labels(&windows);
        let runtime = measure::current_thread()?;
        let timed = measure::one_thread(&mut windows, plan, &runtime)?;
        table(
            "Closed, a 60 s time window with slow-call detection (5 s), one thread",
            "awaited calls as in \"Closed, one thread\"; recloser has no time window; failsafe's \
             has no slow-call detection",
            &labels,
            &timed,
            true,
        );
    }
    if options.runs("timeout") {
        let runtime = measure::current_thread()?;
        let mut timeouts = {
            let _in_runtime = runtime.enter();
            subjects::timeouts()
        };
        let labels = entry_labels(&timeouts);
        let timed = measure::one_thread(&mut timeouts, plan, &runtime)?;
        let at_once = table(
            "Timeout of 30 s, a call that answers at once, one thread",
            "awaited calls as in \"Closed, one thread\"; both create tokio's timer in `call` \
             (reading the clock) and drop it unregistered",
            &labels[..3],
            &timed[..3],
            true,
        );
        let waits = table(
            "Timeout of 30 s, a call that waits once (pending at the first poll)",
            "awaited calls; the call wakes its task and is pending once, so the task goes back \
             to the scheduler. Both arm tokio's timer, register it at the pending poll and \
             remove it on drop",
            &labels[3..],
            &timed[3..],
            true,
        );
        targets.push(Target {
            what: "`TimeoutLayer` no slower than `tower::timeout`: a call that answers at once \
                   (awaited)",
            measured: format!("{:.1} ns against {:.1} ns", at_once[1], at_once[2]),
            met: at_once[1] <= at_once[2],
        });
        targets.push(Target {
            what: "`TimeoutLayer` no slower than `tower::timeout`: a call that waits (awaited)",
            measured: format!("{:.1} ns against {:.1} ns", waits[1], waits[2]),
            met: waits[1] <= waits[2],
        });
    }
    if options.runs("in-place") {
        let runtime = measure::current_thread()?;
        let mut entries = subjects::closed(How::InPlace);
        let labels = entry_labels(&entries);
        let in_place = measure::one_thread(&mut entries, plan, &runtime)?;
        table(
            "For reference: closed, one thread, in place (no-op waker)",
            "the old harness, which no user writes: `poll_ready`, `call` and one poll of the \
             response future pinned where it was made, with a no-op waker and no runtime. \
             Futures are never moved, so their size costs nothing here; the targets are not \
             measured on it",
            &labels,
            &in_place,
            true,
        );
    }
    Ok(())
}

fn entry_labels(entries: &[measure::Entry]) -> Vec<&'static str> {
    entries.iter().map(|e| e.label).collect()
}

/// breakwater's figure (its default row, labelled `breakwater`), and the lowest of the peers'
/// (the rows not labelled `breakwater…`, after the bare service's).
fn ours_and_best_peer(labels: &[&str], added: &[f64]) -> (f64, f64) {
    let ours = labels.iter().position(|l| *l == "breakwater").unwrap_or(0);
    let best = labels
        .iter()
        .zip(added)
        .filter(|(label, _)| !label.starts_with("breakwater") && !label.starts_with("bare"))
        .map(|(_, added)| *added)
        .fold(f64::INFINITY, f64::min);
    (added[ours], best)
}

fn beats_half(what: &'static str, ours: f64, best: f64) -> Target {
    Target {
        what,
        measured: format!("{ours:.1} ns against {best:.1} ns"),
        met: ours < best / 2.0,
    }
}

/// Prints one scenario's table; returns what each row adds over the bare service (the first
/// row, when `over_bare`), or each row's own cost.
fn table(title: &str, note: &str, labels: &[&str], ns: &[f64], over_bare: bool) -> Vec<f64> {
    let bare = if over_bare { ns[0] } else { 0.0 };
    let added: Vec<f64> = ns.iter().map(|n| (n - bare).max(0.0)).collect();
    let ours = labels
        .iter()
        .position(|l| l.starts_with("breakwater"))
        .map_or(f64::NAN, |i| added[i]);
    println!("## {title}\n");
    println!("{note}.\n");
    println!("| subject | ns per call | added | × breakwater |");
    println!("|---|---:|---:|---:|");
    for (i, (label, n)) in labels.iter().zip(ns).enumerate() {
        if over_bare && i == 0 {
            println!("| {label} | {n:.1} | | |");
        } else {
            println!(
                "| {label} | {n:.1} | {:.1} | {:.2} |",
                added[i],
                added[i] / ours
            );
        }
    }
    println!();
    added
}

fn end_to_end(load: e2e::Load, targets: &mut Vec<Target>) -> Result<(), String> {
    let outcome = e2e::run(load)?;
    println!("## End to end: hyper client → hyper server on 127.0.0.1\n");
    println!(
        "{} requests in flight, {} rounds of every side in turn, each up to {} requests or {} s; \
         the full stack is `breaker.layer().end_of_stream()` over \
         `TimeoutLayer::new(5 s).covering_body()`; requests per second is the median round, \
         \"of bare\" the median over rounds of the side's rate over the bare client's in the \
         same round.\n",
        load.concurrency,
        load.rounds,
        load.requests,
        load.limit.as_secs()
    );
    println!("| client | requests | requests/s | of bare | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, side) in [
        ("bare", outcome.bare),
        ("breaker alone", outcome.breaker),
        ("timeout alone", outcome.timeout),
        ("full stack", outcome.stack),
    ] {
        println!(
            "| {label} | {} | {:.0} | {:.1}% | {:.1} µs | {:.1} µs |",
            side.requests,
            side.per_second,
            side.of_bare * 100.0,
            side.p50.as_secs_f64() * 1e6,
            side.p99.as_secs_f64() * 1e6
        );
    }
    let kept = outcome.stack.of_bare * 100.0;
    println!("\nThe stack keeps {kept:.1}% of bare throughput.\n");
    targets.push(Target {
        what: "end to end: the stack keeps ≥ 97% of bare throughput",
        measured: format!("{kept:.1}%"),
        met: kept >= 97.0,
    });
    Ok(())
}

/// The machine, as far as the program can tell.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "Machine: {cpu}, {cores} cores available; {} {}.",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
