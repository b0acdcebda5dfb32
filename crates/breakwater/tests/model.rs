//! Model-based test: random sequences of calls, outcomes, durations, time advances,
//! cancellations and manual transitions, run against a breaker and against a plainly written
//! reference model of the semantics in the design (`Model` below: a `Vec` of recorded calls,
//! an enum of states, no atomics). After every step the two must agree on the admission
//! decision, the rejection's state and retry-after, the state and every figure of the metrics
//! snapshot; any divergence fails and proptest shrinks it to a minimal sequence.
//!
//! 10,000 cases by default (`PROPTEST_CASES` overrides it). Time is a `ManualClock` moved in
//! whole milliseconds. Not modelled here: the exponential backoff's jitter and the automatic
//! timer (their own tests are in `state_machine.rs` and `timer.rs`).

use std::cell::Cell;
use std::time::{Duration, Instant};

use breakwater::circuit_breaker::CallPermit;
use breakwater::classify::Outcome;
use breakwater::clock::{Clock, ManualClock};
use breakwater::{CircuitBreaker, CircuitState, MetricsSnapshot};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
enum WindowSetting {
    Count(u32),
    Time(u32),
}

#[derive(Debug, Clone)]
struct Settings {
    window: WindowSetting,
    minimum_calls: u32,
    failure_rate: f64,
    /// Slow-call threshold in milliseconds and its rate.
    slow: Option<(u64, f64)>,
    wait_ms: u64,
    permits: u32,
    max_half_open_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Out {
    Success,
    Failure,
    Ignored,
    /// A failure that opens the breaker for this many milliseconds.
    FailureFor(u64),
}

#[derive(Debug, Clone, Copy)]
enum Manual {
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
    Open,
    HalfOpen,
    Closed,
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    /// Ends the call at this index (modulo the calls in flight).
    Finish(usize, Out),
    /// Drops the permit of the call at this index: a cancelled call.
    Cancel(usize),
    Advance(u64),
    Manual(Manual),
}

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    calls: u64,
    failed: u64,
    slow: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    second: u64,
    failed: bool,
    slow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        taken: u32,
        recorded: u32,
        failed: u32,
        slow: u32,
        since_ms: u64,
    },
    Disabled,
    ForcedOpen,
    MetricsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Recorded,
    Probe,
    Passthrough,
}

#[derive(Debug, Clone, Copy)]
struct Admitted {
    epoch: u64,
    kind: Kind,
    start: u64,
}

#[derive(Debug)]
struct Model {
    s: Settings,
    now: u64,
    epoch: u64,
    state: State,
    /// Every call recorded since the window last started, oldest first.
    calls: Vec<Sample>,
    /// What an open breaker shows: the window that opened it, and the minimum of its rates.
    frozen: (Totals, u64),
    not_permitted: u64,
    /// When the last transition happened.
    last_transition: u64,
    /// How often the rarer paths were taken, to check that the strategies reach them.
    reached: Reached,
}

/// The rarer paths whose visits are counted, in `Reached` by their index.
#[derive(Debug, Clone, Copy)]
enum Path {
    ClosedByProbes,
    OpenedByProbes,
    HalfOpenTimedOut,
    OpenedByRetryAfter,
    SlowCall,
    LeftTheTimeWindow,
}

const PATHS: [&str; 6] = [
    "half-open closed by its probes",
    "half-open opened by its probes",
    "half-open timed out",
    "opened by a Retry-After",
    "slow calls",
    "calls that left a time window",
];

/// Visits of each of the `PATHS`.
type Reached = [u64; PATHS.len()];

impl Model {
    fn new(s: Settings) -> Self {
        Self {
            s,
            now: 0,
            epoch: 0,
            state: State::Closed,
            calls: Vec::new(),
            frozen: (Totals::default(), 0),
            not_permitted: 0,
            last_transition: 0,
            reached: [0; PATHS.len()],
        }
    }

    fn minimum(&self) -> u64 {
        match self.s.window {
            WindowSetting::Count(size) => u64::from(self.s.minimum_calls.min(size)),
            WindowSetting::Time(_) => u64::from(self.s.minimum_calls),
        }
    }

    fn window(&self) -> Totals {
        let in_window: Vec<&Sample> = match self.s.window {
            WindowSetting::Count(size) => self.calls.iter().rev().take(size as usize).collect(),
            WindowSetting::Time(seconds) => {
                let now = self.now / SECOND;
                self.calls
                    .iter()
                    .filter(|c| c.second + u64::from(seconds) > now)
                    .collect()
            }
        };
        Totals {
            calls: in_window.len() as u64,
            failed: in_window.iter().filter(|c| c.failed).count() as u64,
            slow: in_window.iter().filter(|c| c.slow).count() as u64,
        }
    }

    fn exceeded(&self, t: Totals, minimum: u64) -> bool {
        if t.calls == 0 || t.calls < minimum {
            return false;
        }
        let calls = t.calls as f64;
        t.failed as f64 * 100.0 / calls >= self.s.failure_rate
            || self
                .s
                .slow
                .is_some_and(|(_, rate)| t.slow as f64 * 100.0 / calls >= rate)
    }

    /// What the metrics snapshot shows: the totals and the minimum their rates need.
    fn shown(&self) -> (Totals, u64) {
        match self.state {
            State::Closed | State::MetricsOnly => (self.window(), self.minimum()),
            State::Open { .. } => self.frozen,
            State::HalfOpen {
                recorded,
                failed,
                slow,
                ..
            } => (
                Totals {
                    calls: recorded.into(),
                    failed: failed.into(),
                    slow: slow.into(),
                },
                self.s.permits.into(),
            ),
            State::Disabled | State::ForcedOpen => (Totals::default(), self.minimum()),
        }
    }

    /// Every transition: a new epoch, stamped with the time.
    fn transition(&mut self) {
        self.epoch += 1;
        self.last_transition = self.now;
    }

    fn open(&mut self, shown: (Totals, u64), wait_ms: u64) {
        self.transition();
        self.state = State::Open {
            until: self.now + wait_ms * MS,
        };
        self.frozen = shown;
        self.calls.clear();
        self.not_permitted = 0;
    }

    fn enter(&mut self, state: State) {
        self.transition();
        self.state = state;
        self.calls.clear();
        if state == State::ForcedOpen {
            self.not_permitted = 0;
        }
    }

    /// Admission: `Err` with the rejecting state and the retry-after an open breaker reports.
    fn acquire(&mut self) -> Result<Admitted, (CircuitState, Option<Duration>)> {
        let kind = loop {
            match &mut self.state {
                State::Closed | State::MetricsOnly => break Kind::Recorded,
                State::Disabled => break Kind::Passthrough,
                State::ForcedOpen => {
                    self.not_permitted += 1;
                    return Err((CircuitState::ForcedOpen, None));
                }
                State::Open { until } if self.now < *until => {
                    let left = Duration::from_nanos(*until - self.now);
                    self.not_permitted += 1;
                    return Err((CircuitState::Open, Some(left)));
                }
                State::Open { .. } => {
                    self.transition();
                    self.state = State::HalfOpen {
                        taken: 1,
                        recorded: 0,
                        failed: 0,
                        slow: 0,
                        since_ms: self.now / MS,
                    };
                    break Kind::Probe;
                }
                State::HalfOpen { taken, .. } if *taken < self.s.permits => {
                    *taken += 1;
                    break Kind::Probe;
                }
                State::HalfOpen { since_ms, .. } => {
                    let timed_out = self
                        .s
                        .max_half_open_ms
                        .is_some_and(|max| self.now >= (*since_ms + max) * MS);
                    if !timed_out {
                        self.not_permitted += 1;
                        return Err((CircuitState::HalfOpen, None));
                    }
                    let shown = self.shown();
                    self.open(shown, self.s.wait_ms);
                    self.reached[Path::HalfOpenTimedOut as usize] += 1;
                }
            }
        };
        Ok(Admitted {
            epoch: self.epoch,
            kind,
            start: self.now,
        })
    }

    fn cancel(&mut self, call: Admitted) {
        if call.epoch != self.epoch {
            return;
        }
        if let State::HalfOpen { taken, .. } = &mut self.state {
            *taken = taken.saturating_sub(1);
        }
    }

    fn finish(&mut self, call: Admitted, out: Out) {
        if call.kind == Kind::Passthrough || call.epoch != self.epoch {
            return;
        }
        let elapsed = self.now - call.start;
        let slow = self.s.slow.is_some_and(|(ms, _)| elapsed > ms * MS);
        self.reached[Path::SlowCall as usize] += u64::from(slow);
        let failed = match out {
            Out::Ignored => {
                if call.kind == Kind::Probe {
                    self.cancel(call);
                }
                return;
            }
            Out::Success => false,
            Out::Failure | Out::FailureFor(_) => true,
        };
        let retry_after = match out {
            Out::FailureFor(ms) => Some(ms),
            _ => None,
        };
        if let State::HalfOpen {
            recorded,
            failed: f,
            slow: s,
            ..
        } = &mut self.state
        {
            *recorded += 1;
            *f += u32::from(failed);
            *s += u32::from(slow);
            let done = *recorded >= self.s.permits;
            let shown = self.shown();
            match retry_after {
                Some(ms) => self.open(shown, ms),
                None if done && self.exceeded(shown.0, shown.1) => {
                    self.open(shown, self.s.wait_ms);
                    self.reached[Path::OpenedByProbes as usize] += 1;
                }
                None if done => {
                    self.enter(State::Closed);
                    self.reached[Path::ClosedByProbes as usize] += 1;
                }
                None => {}
            }
            return;
        }
        self.calls.push(Sample {
            second: self.now / SECOND,
            failed,
            slow,
        });
        if self.state != State::Closed {
            return; // metrics only: recorded, never opens
        }
        let shown = (self.window(), self.minimum());
        if matches!(self.s.window, WindowSetting::Time(_))
            && shown.0.calls < self.calls.len() as u64
        {
            self.reached[Path::LeftTheTimeWindow as usize] += 1;
        }
        match retry_after {
            Some(ms) => {
                self.open(shown, ms);
                self.reached[Path::OpenedByRetryAfter as usize] += 1;
            }
            None if self.exceeded(shown.0, shown.1) => self.open(shown, self.s.wait_ms),
            None => {}
        }
    }

    fn manual(&mut self, manual: Manual) {
        let target = match manual {
            Manual::Reset => {
                self.enter(State::Closed);
                self.not_permitted = 0;
                return;
            }
            Manual::ForceOpen => CircuitState::ForcedOpen,
            Manual::Disable => CircuitState::Disabled,
            Manual::MetricsOnly => CircuitState::MetricsOnly,
            Manual::Open => CircuitState::Open,
            Manual::HalfOpen => CircuitState::HalfOpen,
            Manual::Closed => CircuitState::Closed,
        };
        if self.circuit_state() == target {
            return;
        }
        match target {
            CircuitState::Open => {
                let (totals, _) = self.shown();
                let minimum = if matches!(self.state, State::HalfOpen { .. }) {
                    self.s.permits.into()
                } else {
                    self.minimum()
                };
                self.open((totals, minimum), self.s.wait_ms);
            }
            CircuitState::HalfOpen => {
                self.transition();
                self.state = State::HalfOpen {
                    taken: 0,
                    recorded: 0,
                    failed: 0,
                    slow: 0,
                    since_ms: self.now / MS,
                };
            }
            CircuitState::Closed => self.enter(State::Closed),
            CircuitState::Disabled => self.enter(State::Disabled),
            CircuitState::ForcedOpen => self.enter(State::ForcedOpen),
            _ => self.enter(State::MetricsOnly),
        }
    }

    fn circuit_state(&self) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
            State::Disabled => CircuitState::Disabled,
            State::ForcedOpen => CircuitState::ForcedOpen,
            State::MetricsOnly => CircuitState::MetricsOnly,
        }
    }

    /// The snapshot's figures, in the order `figures` gives the breaker's.
    fn figures(&self) -> Figures {
        let (t, minimum) = self.shown();
        let rate = |count: u64| {
            (t.calls > 0 && t.calls >= minimum).then(|| count as f64 * 100.0 / t.calls as f64)
        };
        Figures {
            state: self.circuit_state(),
            failure_rate: rate(t.failed),
            slow_call_rate: self.s.slow.and(rate(t.slow)),
            buffered_calls: t.calls,
            failed_calls: t.failed,
            slow_calls: t.slow,
            not_permitted_calls: self.not_permitted,
            retry_after: match self.state {
                State::Open { until } => Some(Duration::from_nanos(until.saturating_sub(self.now))),
                _ => None,
            },
            last_transition: Duration::from_nanos(self.last_transition),
        }
    }
}

/// The part of a metrics snapshot the model predicts.
#[derive(Debug, PartialEq)]
struct Figures {
    state: CircuitState,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    buffered_calls: u64,
    failed_calls: u64,
    slow_calls: u64,
    not_permitted_calls: u64,
    retry_after: Option<Duration>,
    /// Since the breaker was built.
    last_transition: Duration,
}

fn figures(m: &MetricsSnapshot, built: Instant) -> Figures {
    assert_eq!(m.successful_calls, m.buffered_calls - m.failed_calls);
    Figures {
        state: m.state,
        failure_rate: m.failure_rate,
        slow_call_rate: m.slow_call_rate,
        buffered_calls: m.buffered_calls,
        failed_calls: m.failed_calls,
        slow_calls: m.slow_calls,
        not_permitted_calls: m.not_permitted_calls,
        retry_after: m.retry_after,
        last_transition: m.last_transition_at.duration_since(built),
    }
}

// ---------------------------------------------------------------------------------------------
// Running both.

fn build(s: &Settings, clock: &ManualClock) -> CircuitBreaker {
    let mut b = CircuitBreaker::builder("model")
        .minimum_calls(s.minimum_calls)
        .failure_rate_threshold(s.failure_rate)
        .wait_duration_in_open(Duration::from_millis(s.wait_ms))
        .permitted_calls_in_half_open(s.permits)
        .clock(clock.clone());
    b = match s.window {
        WindowSetting::Count(size) => b.count_window(size),
        WindowSetting::Time(seconds) => b.time_window(Duration::from_secs(seconds.into())),
    };
    if let Some((ms, rate)) = s.slow {
        b = b
            .slow_call_duration_threshold(Duration::from_millis(ms))
            .slow_call_rate_threshold(rate);
    }
    if let Some(ms) = s.max_half_open_ms {
        b = b.max_wait_in_half_open(Duration::from_millis(ms));
    }
    b.build().expect("the strategies make valid settings")
}

fn outcome(out: Out) -> Outcome {
    match out {
        Out::Success => Outcome::Success,
        Out::Failure => Outcome::Failure,
        Out::Ignored => Outcome::Ignored,
        Out::FailureFor(ms) => Outcome::FailureFor(Duration::from_millis(ms)),
    }
}

fn run(s: Settings, ops: &[Op]) -> Result<Reached, TestCaseError> {
    let clock = ManualClock::new();
    let built = clock.now();
    let breaker = build(&s, &clock);
    let mut model = Model::new(s);
    let mut in_flight: Vec<(CallPermit, Admitted)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Acquire => {
                let real = breaker.try_acquire();
                let expected = model.acquire();
                match (real, expected) {
                    (Ok(permit), Ok(admitted)) => in_flight.push((permit, admitted)),
                    (Err(open), Err((state, retry_after))) => {
                        prop_assert_eq!(
                            (open.state(), open.retry_after()),
                            (state, retry_after),
                            "rejection at step {}",
                            step
                        );
                    }
                    (real, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "admission at step {step}: breaker {:?}, model {expected:?}",
                            real.map(drop)
                        )));
                    }
                }
            }
            Op::Finish(i, out) if !in_flight.is_empty() => {
                let (permit, admitted) = in_flight.remove(i % in_flight.len());
                permit.record(outcome(out));
                model.finish(admitted, out);
            }
            Op::Cancel(i) if !in_flight.is_empty() => {
                let (permit, admitted) = in_flight.remove(i % in_flight.len());
                drop(permit);
                model.cancel(admitted);
            }
            Op::Finish(..) | Op::Cancel(_) => {}
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(ms));
                model.now += ms * MS;
            }
            Op::Manual(manual) => {
                match manual {
                    Manual::ForceOpen => breaker.force_open(),
                    Manual::Disable => breaker.disable(),
                    Manual::MetricsOnly => breaker.metrics_only(),
                    Manual::Reset => breaker.reset(),
                    Manual::Open => breaker.transition_to(CircuitState::Open),
                    Manual::HalfOpen => breaker.transition_to(CircuitState::HalfOpen),
                    Manual::Closed => breaker.transition_to(CircuitState::Closed),
                }
                model.manual(manual);
            }
        }
        prop_assert_eq!(
            figures(&breaker.metrics(), built),
            model.figures(),
            "after step {} ({:?})",
            step,
            op
        );
    }
    Ok(model.reached)
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn percent() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(100.0),
        Just(50.0),
        Just(100.0 / 3.0),
        Just(25.0),
        1.0..=100.0f64
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    let window = prop_oneof![
        (1u32..=6).prop_map(WindowSetting::Count),
        (1u32..=3).prop_map(WindowSetting::Time),
    ];
    (
        window,
        1u32..=8,
        percent(),
        proptest::option::of((1u64..=200, percent())),
        1u64..=1_000,
        1u32..=4,
        proptest::option::weighted(0.7, 1u64..=600),
    )
        .prop_map(
            |(window, minimum_calls, failure_rate, slow, wait_ms, permits, max_half_open_ms)| {
                Settings {
                    window,
                    minimum_calls,
                    failure_rate,
                    slow,
                    wait_ms,
                    permits,
                    max_half_open_ms,
                }
            },
        )
}

/// Time advances include the settings' own durations and their neighbours, so the edges
/// (a wait that has just ended, a call exactly as long as the slow threshold) are reached.
fn advance(s: &Settings) -> impl Strategy<Value = u64> + use<> {
    let mut edges = vec![s.wait_ms, s.wait_ms - 1, s.wait_ms + 1, 1_000];
    edges.extend(s.max_half_open_ms.iter().flat_map(|&ms| [ms, ms - 1]));
    edges.extend(s.slow.iter().flat_map(|&(ms, _)| [ms, ms + 1]));
    prop_oneof![
        0u64..=3,
        1u64..=300,
        1u64..=1_500,
        proptest::sample::select(edges),
    ]
}

fn op(s: &Settings) -> impl Strategy<Value = Op> + use<> {
    let out = prop_oneof![
        6 => Just(Out::Success),
        6 => Just(Out::Failure),
        2 => Just(Out::Ignored),
        1 => (1u64..=2_000).prop_map(Out::FailureFor),
    ];
    let manual = prop_oneof![
        Just(Manual::ForceOpen),
        Just(Manual::Disable),
        Just(Manual::MetricsOnly),
        Just(Manual::Reset),
        Just(Manual::Open),
        Just(Manual::HalfOpen),
        Just(Manual::Closed),
    ];
    prop_oneof![
        30 => Just(Op::Acquire),
        30 => (any::<usize>(), out).prop_map(|(i, out)| Op::Finish(i, out)),
        6 => any::<usize>().prop_map(Op::Cancel),
        10 => advance(s).prop_map(Op::Advance),
        3 => manual.prop_map(Op::Manual),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn the_breaker_follows_the_reference_model() {
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let strategy = settings().prop_flat_map(|s| {
        let ops = proptest::collection::vec(op(&s), 1..80);
        (Just(s), ops)
    });
    let reached = Cell::new([0; PATHS.len()]);
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, |(s, ops)| {
            let r = run(s, &ops)?;
            let mut total = reached.get();
            for (total, visits) in total.iter_mut().zip(r) {
                *total += visits;
            }
            reached.set(total);
            Ok(())
        })
        .unwrap();
    // The strategies reach the rarer paths, many times each (in proportion to the cases run).
    let r = reached.get();
    let enough = u64::from(cases()) / 25;
    for (path, count) in PATHS.into_iter().zip(r) {
        assert!(
            count >= enough,
            "{path}: {count} times, fewer than {enough} ({r:?})"
        );
    }
}

/// The model itself is checked on a sequence worked out by hand, so a model that agrees with a
/// wrong breaker by being wrong the same way in the obvious places is caught.
#[test]
fn the_model_follows_a_sequence_worked_out_by_hand() {
    let s = Settings {
        window: WindowSetting::Count(4),
        minimum_calls: 2,
        failure_rate: 50.0,
        slow: None,
        wait_ms: 100,
        permits: 2,
        max_half_open_ms: None,
    };
    let mut m = Model::new(s.clone());
    let ok = m.acquire().unwrap();
    m.finish(ok, Out::Success);
    assert_eq!(
        m.figures().failure_rate,
        None,
        "one call: under the minimum"
    );
    let bad = m.acquire().unwrap();
    m.finish(bad, Out::Failure);
    assert_eq!(
        m.circuit_state(),
        CircuitState::Open,
        "1 of 2 failed: 50% trips"
    );
    assert_eq!(
        m.figures().failure_rate,
        Some(50.0),
        "open shows the window that tripped it"
    );
    assert_eq!(
        m.acquire().unwrap_err(),
        (CircuitState::Open, Some(Duration::from_millis(100)))
    );
    m.now += 100 * MS;
    let probe = m.acquire().unwrap();
    assert_eq!(m.circuit_state(), CircuitState::HalfOpen);
    m.cancel(probe);
    let (a, b) = (m.acquire().unwrap(), m.acquire().unwrap());
    assert_eq!(m.acquire().unwrap_err(), (CircuitState::HalfOpen, None));
    assert_eq!(
        m.figures().not_permitted_calls,
        2,
        "both rejections of this opening"
    );
    m.finish(a, Out::Success);
    m.finish(b, Out::Success);
    assert_eq!(m.circuit_state(), CircuitState::Closed);
    assert_eq!(
        m.figures().buffered_calls,
        0,
        "closing starts a fresh window"
    );

    // And the breaker agrees with it on the same sequence.
    let ops = [
        Op::Acquire,
        Op::Finish(0, Out::Success),
        Op::Acquire,
        Op::Finish(0, Out::Failure),
        Op::Acquire,
        Op::Advance(100),
        Op::Acquire,
        Op::Cancel(0),
        Op::Acquire,
        Op::Acquire,
        Op::Acquire,
        Op::Finish(0, Out::Success),
        Op::Finish(0, Out::Success),
    ];
    run(s, &ops).unwrap();
}
