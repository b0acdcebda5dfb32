//! A permission to make one call, for code that drives a breaker by hand (and for the
//! layered service's futures and bodies).

use std::fmt;
use std::sync::Arc;

use super::generation::Core;
use super::policy::Admission;
use super::policy::slot::Slot;
use super::policy::state::Epoch;
use crate::classify::Outcome;

/// Permission to make one call; from [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire).
///
/// Record the outcome with [`record`](Self::record). Dropping the permit instead counts as a
/// cancelled call: nothing is recorded, and a half-open probe permit is given back.
#[must_use = "a permit records nothing unless `record` is called"]
pub struct CallPermit {
    /// The generation that admitted the call: `None` on the clean path, where the call holds
    /// no reference count and reaches the breaker through `slot` (see the `slot` module).
    core: Option<Arc<Core>>,
    slot: &'static Slot,
    admission: Admission,
    /// When the call started, if it is timed, `UNTIMED` otherwise; on the clean path (never
    /// timed), which owner of the slot admitted the call.
    start: u64,
}

const UNTIMED: u64 = u64::MAX;

impl CallPermit {
    /// A permit of `core` for `admission`: on the clean path it holds no reference to `core`.
    #[inline]
    pub(crate) fn new(core: &Arc<Core>, admission: Admission) -> Self {
        Self::of(core, core.slot(), admission, core.clean_path(admission))
    }

    /// A permit for a call admitted while closed in `epoch` (the caller has just read the
    /// state word of `slot`): on the clean path when the window is clean and calls are not
    /// timed.
    #[inline]
    pub(crate) fn closed(core: &Arc<Core>, slot: &'static Slot, epoch: Epoch) -> Self {
        let clean = core.quiet() && slot.window_is_clean(epoch);
        Self::of(core, slot, Admission::Closed(epoch), clean)
    }

    /// On the clean path (`clean`), the permit holds the slot and which owner of it admitted
    /// the call; otherwise, the generation itself.
    #[inline]
    fn of(core: &Arc<Core>, slot: &'static Slot, admission: Admission, clean: bool) -> Self {
        let (core, start) = if clean {
            (None, slot.owners())
        } else {
            (Some(Arc::clone(core)), UNTIMED)
        };
        Self {
            core,
            slot,
            admission,
            start,
        }
    }

    /// The call starts now: time it if the breaker needs durations.
    #[inline]
    pub(crate) fn start_timing(&mut self) {
        if let Some(core) = &self.core {
            if core.times_calls() {
                self.start = core.now();
            }
        }
    }

    /// Whether the permit is a half-open probe's.
    #[inline]
    pub(crate) fn is_probe(&self) -> bool {
        matches!(self.admission, Admission::Probe(_))
    }

    /// Whether the permit was taken in the breaker's current state: no transition since.
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.admission
            .epoch()
            .is_some_and(|epoch| self.slot.load().epoch() == epoch)
    }

    /// Records the call's outcome. An outcome that arrives after the state the call was admitted
    /// in has ended (the breaker opened, closed or was reset meanwhile) is discarded, and so is
    /// one that arrives after the breaker was dropped.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        let admission = std::mem::replace(&mut self.admission, Admission::Spent);
        match self.core.take() {
            Some(core) => {
                let start = (self.start != UNTIMED).then_some(self.start);
                core.record(admission, outcome, start);
            }
            None => {
                // The clean path: a success into a window that is still clean changes nothing.
                if let (Admission::Closed(epoch), Outcome::Success) = (admission, outcome) {
                    if self.slot.success_is_noop(epoch) {
                        return;
                    }
                }
                // Anything else needs the generation, if it is still there (a later owner of
                // the slot discards the outcome: its epoch is stale there).
                if let Some(core) = self.slot.owner(self.start) {
                    core.record(admission, outcome);
                }
            }
        }
    }
}

impl Drop for CallPermit {
    #[inline]
    fn drop(&mut self) {
        // Probes are never on the clean path: they hold their generation.
        if let (Admission::Probe(epoch), Some(core)) = (self.admission, &self.core) {
            core.give_back(epoch);
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("breaker", &self.core.as_ref().map(|core| core.name()))
            .field("admission", &self.admission)
            .finish()
    }
}
