//! breakwater side by side with the Rust circuit breakers a user would pick instead
//! (tower-resilience-circuitbreaker, failsafe, recloser, seatbelt) and its `TimeoutLayer` with
//! `tower::timeout` and `tower_http::timeout`, all in one run on one machine; then end to end,
//! a hyper client against a hyper server and against an axum server on loopback.
//!
//! Every call is made as users make it: `svc.ready().await?.call(req).await` in an `async fn`
//! on a tokio runtime, or `svc.clone().oneshot(req).await` for each request as axum does (see
//! `measure`), with a fresh `http::Request<()>` answered `200` (breakwater's rows use
//! `breaker.layer()`, its default `HttpClassifier`). Prometheus's recorder is installed for
//! the whole run (see `recorder`).
//!
//! Run with `cargo run --release -p bench` (a minute or two). `--quick` makes a short run that
//! only checks the harness works (its numbers are rough); `--only PART[,PART...]` runs some
//! parts: `closed`, `two-tasks`, `clone-per-request`, `rejection`, `time-window`, `metrics`,
//! `timeout`, `in-place` (the old no-op-waker harness, for reference), `e2e` (hyper client →
//! hyper server), `axum` (hyper client → axum server), or `micro` (all but `e2e` and `axum`).
//! It prints Markdown tables: nanoseconds per call, what each breaker adds over the bare
//! service, and that as a multiple of what breakwater adds; then the targets, as ratios
//! of added nanoseconds measured in this run. See BENCHMARKS.md.
//!
//! The closed and rejection tables have a row "breakwater, fleet joined": the same breaker
//! joined to a breakwater-fleet on the Redis at `BENCH_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), when one answers there; otherwise the run says so and leaves
//! the row out.

mod e2e;
mod fleet;
mod measure;
mod micro;
mod peers;
mod recorder;
mod report;
mod servers;
mod services;
mod subjects;
mod two_tasks;

use std::process::ExitCode;
use std::time::Duration;

use measure::Plan;

/// The parts of a run, in the order they run.
const PARTS: [&str; 10] = [
    "closed",
    "two-tasks",
    "clone-per-request",
    "rejection",
    "time-window",
    "metrics",
    "timeout",
    "in-place",
    "e2e",
    "axum",
];

/// The parts that make calls over loopback; `micro` is all the others.
const END_TO_END: [&str; 2] = ["e2e", "axum"];

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
                        "micro" => {
                            parts.extend(PARTS.iter().filter(|p| !END_TO_END.contains(p)));
                        }
                        _ => match PARTS.iter().find(|p| **p == name) {
                            Some(part) => parts.push(*part),
                            None => {
                                return Err(format!(
                                    "--only: `{name}` is not a part of the run; allowed: {}, \
                                     micro (all but e2e and axum), or several separated by commas",
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
    // Before any breaker is built: a breaker takes its metric handles when it is built.
    recorder::install()?;
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
    micro::run(options, plan, &mut targets)?;
    let (hyper, axum) = (options.runs("e2e"), options.runs("axum"));
    if hyper || axum {
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
        let outcome = e2e::run(load, hyper, axum)?;
        e2e::report(load, &outcome, &mut targets);
    }
    report::targets(&targets);
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
