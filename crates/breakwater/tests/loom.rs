//! Loom models of the state transitions and the half-open permit accounting: every
//! interleaving of two or three threads (up to loom's preemption bound) is run, and each must
//! keep the invariants. Built only with the breaker on loom's atomics:
//!
//! ```text
//! RUSTFLAGS="--cfg breakwater_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --release -p breakwater --test loom
//! ```
//!
//! (`.ci/run` runs it; TESTING.md says more.)
#![cfg(breakwater_loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState};
use loom::sync::atomic::AtomicUsize as LoomUsize;
use loom::thread;

/// Loom's preemption bound: 3 covers the races of these models and keeps each under a minute.
fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        // Slots pooled by an earlier execution hold atomics of that execution.
        breakwater::circuit_breaker::forget_pooled_slots();
        f();
    });
}

/// A breaker that opens on one failure, waits 1 ms, and lets `permits` probes through.
fn breaker(permits: u32, clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder("loom")
        .count_window(2)
        .minimum_calls(1)
        .failure_rate_threshold(100.0)
        .wait_duration_in_open(Duration::from_millis(1))
        .permitted_calls_in_half_open(permits)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Counts the breaker's transitions into `state` (the callback runs outside loom's view: a
/// plain atomic).
fn count_entries(breaker: &CircuitBreaker, state: CircuitState) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    breaker.on_state_transition(move |event| {
        if let breakwater::circuit_breaker::EventKind::StateTransition { to, .. } = *event.kind() {
            if to == state {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    count
}

/// Three threads race for two half-open permits; two record a failure, one cancels its call.
/// No more than two probes are ever out at once (two failed probes open the breaker, so no
/// later call is admitted as anything but a probe), a cancelled probe's permit can be used
/// again, and none leaks: whatever the interleaving, the states at the end are exact.
#[test]
fn racing_probes_never_exceed_the_permits_and_none_leaks() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(2, &clock);
        breaker.transition_to(CircuitState::HalfOpen);
        let out = Arc::new(LoomUsize::new(0));
        let threads: Vec<_> = [true, false, true]
            .into_iter()
            .map(|records| {
                let (breaker, out) = (breaker.clone(), Arc::clone(&out));
                thread::spawn(move || {
                    let Ok(permit) = breaker.try_acquire() else {
                        return false;
                    };
                    let before = out.fetch_add(1, Ordering::SeqCst);
                    assert!(before < 2, "a third probe was let through");
                    if records {
                        permit.record(Outcome::Failure);
                        true
                    } else {
                        // Counted down before the permit goes back, so `out` never lags it.
                        out.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        false
                    }
                })
            })
            .collect();
        let recorded = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&r| r)
            .count();
        if recorded == 2 {
            // Both permits' probes failed: 100% opens.
            assert_eq!(breaker.state(), CircuitState::Open);
        } else {
            // One probe failed and the other permit is free again: it must be taken now, and a
            // success makes 50%, under the threshold.
            assert_eq!(recorded, 1);
            assert_eq!(breaker.state(), CircuitState::HalfOpen);
            let permit = breaker.try_acquire().expect("a permit leaked");
            permit.record(Outcome::Success);
            assert_eq!(breaker.state(), CircuitState::Closed);
        }
    });
}

/// Two threads arrive together when the open wait has ended, with one probe permitted: exactly
/// one moves the breaker to half-open and is let through, the other is rejected by half-open.
#[test]
fn the_open_to_half_open_edge_is_crossed_once() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(1, &clock);
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(breaker.state(), CircuitState::Open);
        clock.advance(Duration::from_millis(1));
        let half_opened = count_entries(&breaker, CircuitState::HalfOpen);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let breaker = breaker.clone();
                // The permit is held until both threads have tried.
                thread::spawn(move || breaker.try_acquire().map_err(|r| r.state()))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let states: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map(drop).map_err(|&state| state))
            .collect();
        assert_eq!(states.iter().filter(|r| r.is_ok()).count(), 1, "{states:?}");
        assert!(states.contains(&Err(CircuitState::HalfOpen)), "{states:?}");
        assert_eq!(half_opened.load(Ordering::SeqCst), 1);
        assert_eq!(breaker.metrics().not_permitted_calls, 1);
        // The probe is cancelled: its permit is free again.
        drop(results);
        breaker
            .try_acquire()
            .expect("a permit leaked")
            .record(Outcome::Success);
        assert_eq!(breaker.state(), CircuitState::Closed);
    });
}

/// Two failures recorded at once by two threads: the breaker opens exactly once.
#[test]
fn concurrent_failures_open_the_breaker_once() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder("loom")
            .count_window(2)
            .minimum_calls(2)
            .failure_rate_threshold(50.0)
            .clock(clock.clone())
            .build()
            .unwrap();
        let opened = count_entries(&breaker, CircuitState::Open);
        let permits = [
            breaker.try_acquire().unwrap(),
            breaker.try_acquire().unwrap(),
        ];
        let threads: Vec<_> = permits
            .into_iter()
            .map(|permit| thread::spawn(move || permit.record(Outcome::Failure)))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        let m = breaker.metrics();
        assert_eq!((m.buffered_calls, m.failed_calls), (2, 2), "{m:?}");
    });
}

/// A probe's outcome races an operator: whichever comes first, the operator's state is the
/// one that stays (a probe recorded after it belongs to an earlier epoch and is discarded).
#[test]
fn a_manual_transition_wins_over_a_racing_probe() {
    for (outcome, manual, expected) in [
        (
            Outcome::Success,
            CircuitState::ForcedOpen,
            CircuitState::ForcedOpen,
        ),
        (Outcome::Failure, CircuitState::Closed, CircuitState::Closed),
        (
            Outcome::Failure,
            CircuitState::Disabled,
            CircuitState::Disabled,
        ),
    ] {
        model(move || {
            let clock = ManualClock::new();
            let breaker = breaker(1, &clock);
            breaker.transition_to(CircuitState::HalfOpen);
            let probe = breaker.try_acquire().unwrap();
            let prober = thread::spawn(move || probe.record(outcome));
            let operator = {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.transition_to(manual))
            };
            prober.join().unwrap();
            operator.join().unwrap();
            let m = breaker.metrics();
            assert_eq!(m.state, expected);
            // The operator's state starts empty: a probe recorded late left nothing in it.
            assert_eq!((m.buffered_calls, m.not_permitted_calls), (0, 0), "{m:?}");
        });
    }
}

/// A probe is cancelled while another thread resets the breaker, moves it to half-open again
/// and takes that state's one permit: a permit given back late belongs to the earlier state and
/// must not free the new state's permit.
#[test]
fn a_cancelled_probe_racing_a_reset_touches_nothing_after_it() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(1, &clock);
        breaker.transition_to(CircuitState::HalfOpen);
        let probe = breaker.try_acquire().unwrap();
        let canceller = thread::spawn(move || drop(probe));
        let operator = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                breaker.reset();
                breaker.transition_to(CircuitState::HalfOpen);
                breaker.try_acquire()
            })
        };
        canceller.join().unwrap();
        let held = operator
            .join()
            .unwrap()
            .expect("the new half-open state's permit");
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(
            breaker.try_acquire().is_err(),
            "a stale give-back freed the new state's permit"
        );
        held.record(Outcome::Success);
        assert_eq!(breaker.state(), CircuitState::Closed);
    });
}

/// Two outcomes recorded at once into a full count window: the window slides by exactly two
/// calls, whichever lands first (here: the two prefilled successes leave, a failure and a
/// success arrive; 50% stays under the 100% threshold, so the breaker stays closed).
#[test]
fn a_full_window_slides_exactly_under_concurrent_records() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(1, &clock);
        for _ in 0..2 {
            breaker.try_acquire().unwrap().record(Outcome::Success);
        }
        let permits = [
            breaker.try_acquire().unwrap(),
            breaker.try_acquire().unwrap(),
        ];
        let threads: Vec<_> = permits
            .into_iter()
            .zip([Outcome::Failure, Outcome::Success])
            .map(|(permit, outcome)| thread::spawn(move || permit.record(outcome)))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let m = breaker.metrics();
        assert_eq!(m.state, CircuitState::Closed);
        assert_eq!((m.buffered_calls, m.failed_calls), (2, 1), "{m:?}");
        assert_eq!(m.failure_rate, Some(50.0));
    });
}

/// A call is rejected while another thread's failure opens the breaker: the rejection is
/// counted in the new opening's count exactly when it was rejected by that opening.
#[test]
fn a_rejection_racing_the_opening_is_counted_once() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(1, &clock);
        let permit = breaker.try_acquire().unwrap();
        let opener = thread::spawn(move || permit.record(Outcome::Failure));
        let caller = {
            let breaker = breaker.clone();
            thread::spawn(move || breaker.try_acquire().is_err())
        };
        opener.join().unwrap();
        let rejected = caller.join().unwrap();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.metrics().not_permitted_calls, u64::from(rejected));
    });
}

/// A call admitted on the clean path (no reference to its breaker, only the slot and an
/// epoch) fails while its breaker is dropped and the slot is taken by a new breaker, which
/// records a call of its own. Whatever the interleaving, the stale failure never counts in the
/// new breaker: the slot moved to a new epoch before it was reused.
#[test]
fn a_stale_call_never_counts_in_the_breaker_that_reuses_its_slot() {
    model(|| {
        let clock = ManualClock::new();
        let old = breaker(1, &clock);
        // Three successes: the window of two slides and is clean.
        for _ in 0..3 {
            old.try_acquire().unwrap().record(Outcome::Success);
        }
        let stale = old.try_acquire().unwrap();
        let late = thread::spawn(move || stale.record(Outcome::Failure));
        drop(old);
        let new = breaker(1, &clock);
        new.try_acquire().unwrap().record(Outcome::Success);
        late.join().unwrap();
        let m = new.metrics();
        assert_eq!((m.buffered_calls, m.failed_calls), (1, 0), "{m:?}");
        assert_eq!(new.state(), CircuitState::Closed);
    });
}

/// Two reconfigurations and an operator's `force_open` race. Whatever the interleaving, the
/// operator's state is kept: a reconfiguration carries a manual state over, and the state it
/// carries is read in the very step that retires the generation, which no transition on the
/// old generation can slip past.
#[test]
fn a_forced_open_racing_two_reconfigurations_is_never_lost() {
    model(|| {
        let clock = ManualClock::new();
        let breaker = breaker(1, &clock);
        let (first, operator) = (breaker.clone(), breaker.clone());
        let reconfigure = thread::spawn(move || {
            first.reconfigure(|b| b.count_window(3)).unwrap();
        });
        let force = thread::spawn(move || operator.force_open());
        breaker.reconfigure(|b| b.count_window(4)).unwrap();
        reconfigure.join().unwrap();
        force.join().unwrap();
        assert_eq!(breaker.state(), CircuitState::ForcedOpen);
    });
}
