//! The policy on its own: plain values, a manual clock, and effects that only take notes.

use std::cell::{Cell, RefCell};
use std::sync::Weak;
use std::time::Duration;

use super::config::{Config, OpenWait, WindowKind};
use super::slot::{Owner, Slot};
use super::state::CircuitState;
use super::{Admission, Effects, Next, Policy, Transition, TransitionCause};
use crate::classify::Outcome;

const SECOND: u64 = 1_000_000_000;

/// Effects that take notes, and a clock moved by hand.
#[derive(Default)]
struct Notes {
    now: Cell<u64>,
    transitions: RefCell<Vec<(CircuitState, CircuitState, TransitionCause)>>,
    returned: Cell<u32>,
}

impl Effects for Notes {
    fn now(&self) -> u64 {
        self.now.get()
    }
    fn entered(&self, t: Transition) {
        let entry = (t.from.state(), t.to.state(), t.cause);
        self.transitions.borrow_mut().push(entry);
    }
    fn per_call(&self) -> bool {
        false
    }
    fn counted(&self, _: Outcome, _: bool, _: Option<Duration>) {}
    fn ended(&self, _: Outcome, _: bool, _: Option<Duration>) {}
    fn threshold_exceeded(&self, _: TransitionCause) {}
    fn permit_returned(&self) {
        self.returned.set(self.returned.get() + 1);
    }
}

/// No generation: calls that hold only the slot find nobody to record into.
struct Nobody;

impl Owner for Nobody {
    fn record(&self, _: Admission, _: Outcome) {}
}

/// A count window of 10 calls, opening at 50% once it holds 10, waiting 30 s, 2 probes.
fn policy() -> Policy {
    policy_of(WindowKind::Count(10))
}

fn policy_of(window: WindowKind) -> Policy {
    let config = Config {
        window,
        minimum_calls: 10,
        failure_rate_threshold: 50.0,
        slow_calls: None,
        open_wait: OpenWait::Fixed(Duration::from_secs(30)),
        permitted_calls_in_half_open: 2,
        max_wait_in_half_open: None,
        automatic_transition: false,
    };
    let nobody: Weak<dyn Owner> = Weak::<Nobody>::new();
    let slot = Slot::take(config.window, nobody, CircuitState::Closed, 0);
    Policy::new(slot, config, 7, 0)
}

fn admit(policy: &Policy, fx: &Notes) -> Admission {
    match policy.next(true, fx) {
        Next::Admit(admission) => admission,
        other => panic!("not admitted: {other:?}"),
    }
}

fn call(policy: &Policy, fx: &Notes, outcome: Outcome) {
    let admission = admit(policy, fx);
    policy.record(admission, outcome, None, fx);
}

#[test]
fn opens_when_half_of_ten_calls_fail_and_rejects_until_the_wait_ends() {
    let (policy, fx) = (policy(), Notes::default());
    for i in 0..10 {
        call(
            &policy,
            &fx,
            if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(policy.state(), CircuitState::Open);
    assert_eq!(
        *fx.transitions.borrow(),
        [(
            CircuitState::Closed,
            CircuitState::Open,
            TransitionCause::FailureRate(50.0)
        )]
    );
    fx.now.set(29 * SECOND);
    let Next::Reject(rejection) = policy.next(true, &fx) else {
        panic!("admitted while open");
    };
    assert_eq!(rejection.state(), CircuitState::Open);
    assert_eq!(rejection.deadline(), 30 * SECOND);
    policy.count_rejection(&rejection);
    assert_eq!(policy.not_permitted(), 1);
}

#[test]
fn a_free_probe_is_only_looked_at_until_the_caller_takes_it() {
    let (policy, fx) = (policy(), Notes::default());
    assert!(policy.transition_to(CircuitState::Open, &fx));
    fx.now.set(30 * SECOND);
    // The wait is over, but a caller whose service is not ready takes nothing.
    assert!(matches!(policy.next(false, &fx), Next::Probe));
    assert_eq!(policy.state(), CircuitState::Open);
    let first = admit(&policy, &fx);
    assert!(matches!(first, Admission::Probe(_)));
    assert_eq!(policy.state(), CircuitState::HalfOpen);
    assert!(
        matches!(policy.next(false, &fx), Next::Probe),
        "one probe is left"
    );
    let second = admit(&policy, &fx);
    assert!(
        matches!(policy.next(false, &fx), Next::Reject(_)),
        "both are out"
    );
    // A cancelled probe gives its permit back, and says so.
    let Admission::Probe(epoch) = second else {
        panic!("not a probe");
    };
    assert!(policy.give_back(epoch));
    assert!(matches!(policy.next(false, &fx), Next::Probe));
    assert_eq!(
        fx.returned.get(),
        0,
        "only the effects' caller tells waiters"
    );
    policy.record(first, Outcome::Success, None, &fx);
    call(&policy, &fx, Outcome::Success);
    assert_eq!(policy.state(), CircuitState::Closed);
    assert_eq!(
        fx.transitions.borrow().last(),
        Some(&(
            CircuitState::HalfOpen,
            CircuitState::Closed,
            TransitionCause::ProbesSucceeded
        ))
    );
}

#[test]
fn an_ignored_probe_returns_its_permit_through_the_effects() {
    let (policy, fx) = (policy(), Notes::default());
    assert!(policy.transition_to(CircuitState::HalfOpen, &fx));
    call(&policy, &fx, Outcome::Ignored);
    assert_eq!(fx.returned.get(), 1);
    assert_eq!(policy.state(), CircuitState::HalfOpen);
}

#[test]
fn a_slot_given_back_and_taken_again_makes_earlier_admissions_stale() {
    // A ring length no other test uses: the pool is shared by the tests running alongside.
    let shape = WindowKind::Count(1_000);
    let (first, fx) = (policy_of(shape), Notes::default());
    let slot = first.slot;
    let stale = admit(&first, &fx);
    slot.give_back();
    let second = policy_of(shape);
    // The pool hands the same slot to the next policy of the same window shape.
    assert!(std::ptr::eq(second.slot, slot));
    second.record(stale, Outcome::Failure, None, &fx);
    let shown = second.snapshot(0, |_| std::time::Instant::now());
    assert_eq!((shown.buffered_calls, shown.failed_calls), (0, 0));
    assert!(!second.is_current(stale_epoch(stale)));
}

fn stale_epoch(admission: Admission) -> super::state::Epoch {
    admission.epoch().expect("an admission of a state")
}

#[test]
fn a_call_of_an_earlier_owner_finds_nobody_even_when_the_epochs_come_round_again() {
    // A ring length no other test uses (see above).
    let shape = WindowKind::Count(3_000);
    let owner = std::sync::Arc::new(Nobody);
    let nobody = || -> Weak<dyn Owner> {
        let weak: Weak<Nobody> = std::sync::Arc::downgrade(&owner);
        weak
    };
    let slot = Slot::take(shape, nobody(), CircuitState::Closed, 0);
    let (epoch, first) = (slot.load().epoch(), slot.owners());
    // Each owner takes two epochs (given back, taken): after 2^20 owners the epoch of the first
    // comes round again.
    let mut owners = 0;
    loop {
        slot.give_back();
        let again = Slot::take(shape, nobody(), CircuitState::Closed, 0);
        assert!(std::ptr::eq(again, slot));
        owners += 1;
        if slot.load().epoch() == epoch {
            break;
        }
    }
    assert_eq!(owners, 1 << 20);
    assert_eq!(slot.owners(), first + owners);
    assert!(
        slot.owner_if(|now| now == first + owners).is_some(),
        "the owner now is found"
    );
    assert!(
        slot.owner_if(|now| now == first).is_none(),
        "the first owner's call is told apart"
    );
}
