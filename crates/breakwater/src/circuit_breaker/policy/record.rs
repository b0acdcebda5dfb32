//! Recording outcomes: into the window while closed (or metrics only), into the probe counters
//! while half-open; and opening the breaker when a threshold is reached.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::config::MAX_WAIT;
use super::state::{CircuitState, Epoch, Probes, Word};
use super::window::{Recorded, Sample, Totals, Window};
use super::{Admission, Effects, Policy, TransitionCause, probe_totals};
use crate::classify::Outcome;

/// A transition decided by a probe's outcome: from, to, cause, when, the probes' window.
type ProbeTransition = (Word, Word, TransitionCause, u64, Totals);

impl Policy {
    /// Records an admitted call's outcome. `start` is when it began, if it was timed.
    #[inline]
    pub(crate) fn record(
        &self,
        admission: Admission,
        outcome: Outcome,
        start: Option<u64>,
        fx: &impl Effects,
    ) {
        // The common case, kept small enough to inline: an untimed success of a closed call
        // into a count window, with nobody listening for per-call events.
        if let (Admission::Closed(epoch), Outcome::Success, None, Window::Count(window)) =
            (admission, outcome, start, &self.slot.window)
        {
            // When every call is to be reported (metrics, per-call events): no shortcut.
            if !fx.per_call() {
                // An outcome from an earlier state is discarded: the window's 8-bit generation
                // tag alone cannot tell an outcome that many transitions old.
                if self.is_current(epoch) {
                    if let Some(recorded) = window.record(epoch.window_tag(), Sample::default()) {
                        if window.reached(recorded.head as u64, self.minimum_calls) {
                            self.evaluate(epoch, &recorded, false, None, fx);
                        }
                    }
                }
                return;
            }
        }
        self.record_in(admission, outcome, start, fx);
    }

    #[inline(never)]
    fn record_in(
        &self,
        admission: Admission,
        outcome: Outcome,
        start: Option<u64>,
        fx: &impl Effects,
    ) {
        let (epoch, probe) = match admission {
            Admission::Closed(epoch) | Admission::MetricsOnly(epoch) => (Some(epoch), false),
            Admission::Probe(epoch) => (Some(epoch), true),
            // Disabled: nothing to record, but a call to report.
            Admission::Passthrough(_) if fx.per_call() => (None, false),
            Admission::Passthrough(_) | Admission::Spent => return,
        };
        let end = (start.is_some() || self.slot.window.needs_clock()).then(|| fx.now());
        let elapsed = start.zip(end).map(|(start, end)| end.saturating_sub(start));
        let slow = match (self.config.slow_calls, elapsed) {
            (Some(slow), Some(elapsed)) => u128::from(elapsed) > slow.threshold.as_nanos(),
            _ => false,
        };
        let elapsed = elapsed.map(Duration::from_nanos);
        fx.ended(outcome, slow, elapsed);
        // An outcome from an earlier state is discarded (a probe's is checked again by the step
        // that records it).
        let Some(epoch) = epoch.filter(|&epoch| self.is_current(epoch)) else {
            return;
        };
        if outcome == Outcome::Ignored {
            if !probe {
                fx.counted(outcome, false, elapsed);
            } else if self.give_back(epoch) {
                fx.permit_returned();
                fx.counted(outcome, false, elapsed);
            }
            return;
        }
        let failed = outcome.is_failure();
        let retry_after = match outcome {
            Outcome::FailureFor(wait) => Some(wait.min(MAX_WAIT)),
            _ => None,
        };
        if probe {
            if let Some(transition) = self.record_probe(epoch, failed, slow, retry_after, fx) {
                // The outcome's event comes before the transition it causes.
                fx.counted(outcome, slow, elapsed);
                if let Some((from, to, cause, at, totals)) = transition {
                    self.enter(from, to, cause, at, Some(totals), fx);
                }
            }
            return;
        }
        let sample = Sample { failed, slow };
        let Some(recorded) = self
            .slot
            .window
            .record(epoch.window_tag(), sample, end.unwrap_or(0))
        else {
            return;
        };
        fx.counted(outcome, slow, elapsed);
        let metrics_only = admission == Admission::MetricsOnly(epoch);
        if let (Some(wait), false) = (retry_after, metrics_only) {
            let from = Word::plain(CircuitState::Closed, epoch);
            let now = fx.now();
            let totals = self.slot.window.totals(epoch.window_tag(), now);
            let next = self.open_word(from, now, Some(wait));
            if self.swap(from, next).is_ok() {
                let cause = TransitionCause::RetryAfter(wait);
                self.enter(from, next, cause, now, Some(totals), fx);
            }
            return;
        }
        // A success can raise no rate, except by bringing the window to its minimum; a time
        // window may also lose old calls at any record.
        if failed
            || slow
            || self.slot.window.needs_clock()
            || self.slot.window.reached(&recorded, self.minimum_calls)
        {
            self.evaluate(epoch, &recorded, metrics_only, end, fx);
        }
    }

    /// Opens the breaker (metrics only: reports) if the window right after `recorded` breaks a
    /// threshold.
    #[inline(never)]
    fn evaluate(
        &self,
        epoch: Epoch,
        recorded: &Recorded,
        metrics_only: bool,
        end: Option<u64>,
        fx: &impl Effects,
    ) {
        let Some(totals) = self.slot.window.totals_after(recorded) else {
            return;
        };
        let Some(cause) = self.exceeded(totals, self.minimum_calls) else {
            return;
        };
        if metrics_only {
            self.report_once(epoch, cause, fx);
            return;
        }
        let from = Word::plain(CircuitState::Closed, epoch);
        let now = end.unwrap_or_else(|| fx.now());
        let next = self.open_word(from, now, None);
        if self.swap(from, next).is_ok() {
            self.enter(from, next, cause, now, Some(totals), fx);
        }
    }

    /// Records a probe's outcome. `None` when the probe belongs to an earlier state (discarded);
    /// otherwise the transition the outcome decided, if any, for the caller to enter.
    fn record_probe(
        &self,
        epoch: Epoch,
        failed: bool,
        slow: bool,
        retry_after: Option<Duration>,
        fx: &impl Effects,
    ) -> Option<Option<ProbeTransition>> {
        let permits = self.config.permitted_calls_in_half_open;
        let mut now = None;
        let mut word = self.load();
        loop {
            if word.state() != CircuitState::HalfOpen || word.epoch() != epoch {
                return None;
            }
            let p = word.probes();
            let probes = Probes {
                recorded: p.recorded + 1,
                failed: p.failed + u32::from(failed),
                slow: p.slow + u32::from(slow),
                ..p
            };
            let totals = probe_totals(probes);
            let cause = match retry_after {
                Some(wait) => Some(TransitionCause::RetryAfter(wait)),
                None if probes.recorded >= permits => Some(
                    self.exceeded(totals, u64::from(permits))
                        .unwrap_or(TransitionCause::ProbesSucceeded),
                ),
                None => None,
            };
            let (next, at) = match cause {
                None => (word.with_probes(probes), 0),
                Some(TransitionCause::ProbesSucceeded) => {
                    let at = *now.get_or_insert_with(|| fx.now());
                    (Word::plain(CircuitState::Closed, epoch.next()), at)
                }
                Some(_) => {
                    let at = *now.get_or_insert_with(|| fx.now());
                    (self.open_word(word, at, retry_after), at)
                }
            };
            match self.swap(word, next) {
                Ok(()) => return Some(cause.map(|cause| (word, next, cause, at, totals))),
                Err(actual) => word = actual,
            }
        }
    }

    /// Returns a half-open permit whose call was cancelled or ignored; `false` if it belongs to
    /// an earlier state. The caller tells whoever waits for a permit.
    pub(crate) fn give_back(&self, epoch: Epoch) -> bool {
        let mut word = self.load();
        loop {
            if word.state() != CircuitState::HalfOpen || word.epoch() != epoch {
                return false;
            }
            let p = word.probes();
            let next = word.with_probes(Probes {
                taken: p.taken.saturating_sub(1),
                ..p
            });
            match self.swap(word, next) {
                Ok(()) => return true,
                Err(actual) => word = actual,
            }
        }
    }

    /// Whether a window breaks a threshold (inclusive), once it holds `minimum` calls.
    pub(crate) fn exceeded(&self, totals: Totals, minimum: u64) -> Option<TransitionCause> {
        if totals.calls == 0 || totals.calls < minimum {
            return None;
        }
        let calls = totals.calls as f64;
        let failure_rate = totals.failed as f64 * 100.0 / calls;
        if failure_rate >= self.config.failure_rate_threshold {
            return Some(TransitionCause::FailureRate(failure_rate));
        }
        let slow = self.config.slow_calls?;
        let slow_rate = totals.slow as f64 * 100.0 / calls;
        (slow_rate >= slow.rate_threshold).then_some(TransitionCause::SlowCallRate(slow_rate))
    }

    /// Metrics only: tells subscribers once per epoch that the breaker would have opened.
    fn report_once(&self, epoch: Epoch, cause: TransitionCause, fx: &impl Effects) {
        let mark = epoch.get() + 1;
        if self.reported_epoch.swap(mark, Ordering::AcqRel) != mark {
            fx.threshold_exceeded(cause);
        }
    }
}
