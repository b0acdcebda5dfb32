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
    held: Held,
}

/// What a permit holds: 24 bytes either way, as it travels in every response future.
enum Held {
    /// The clean path: no reference count, only the slot, and one word for which owner of the
    /// slot admitted the call and in which epoch (see the `slot` module).
    Clean { slot: &'static Slot, ticket: Ticket },
    /// Any other admission: the generation itself.
    Core {
        core: Arc<Core>,
        admission: Admission,
        /// When the call started, if it is timed; `UNTIMED` otherwise.
        start: u64,
    },
}

const UNTIMED: u64 = u64::MAX;

/// A clean call's owner count and epoch, in one word: the owner count in the high 43 bits
/// (a slot would need 2^43 owners for two of them to share a ticket), the epoch in the low 21.
#[derive(Debug, Clone, Copy)]
struct Ticket(u64);

impl Ticket {
    const EPOCH_BITS: u32 = 21;

    #[inline]
    fn new(owners: u64, epoch: Epoch) -> Self {
        Ticket(owners << Self::EPOCH_BITS | u64::from(epoch.get()))
    }

    #[inline]
    fn owners(self) -> u64 {
        self.0 >> Self::EPOCH_BITS
    }

    /// Whether `owners`, as the slot counts them now, is this ticket's (on 43 bits).
    #[inline]
    fn owned_by(self, owners: u64) -> bool {
        self.owners() == owners & ((1 << (64 - Self::EPOCH_BITS)) - 1)
    }

    #[inline]
    fn epoch(self) -> Epoch {
        Epoch::from_bits(self.0)
    }
}

impl CallPermit {
    /// A permit of `core` for `admission`: on the clean path it holds no reference to `core`.
    #[inline]
    pub(crate) fn new(core: &Arc<Core>, admission: Admission) -> Self {
        match admission {
            Admission::Closed(epoch) if core.clean_path(admission) => {
                Self::clean(core.slot(), epoch)
            }
            _ => Self::held(core, admission),
        }
    }

    /// A permit for a call admitted while closed in `epoch` (the caller has just read the
    /// state word of `slot`): on the clean path when the window is clean and nothing needs to
    /// hear of the call.
    #[inline]
    pub(crate) fn closed(core: &Arc<Core>, slot: &'static Slot, epoch: Epoch) -> Self {
        if core.quiet() && slot.window_is_clean(epoch) {
            Self::clean(slot, epoch)
        } else {
            Self::held(core, Admission::Closed(epoch))
        }
    }

    #[inline]
    fn clean(slot: &'static Slot, epoch: Epoch) -> Self {
        Self {
            held: Held::Clean {
                slot,
                ticket: Ticket::new(slot.owners(), epoch),
            },
        }
    }

    #[inline]
    fn held(core: &Arc<Core>, admission: Admission) -> Self {
        Self {
            held: Held::Core {
                core: Arc::clone(core),
                admission,
                start: UNTIMED,
            },
        }
    }

    /// The call starts now: time it if the breaker needs durations.
    #[inline]
    pub(crate) fn start_timing(&mut self) {
        if let Held::Core { core, start, .. } = &mut self.held {
            if core.times_calls() {
                *start = core.now();
            }
        }
    }

    /// Whether the permit is a half-open probe's.
    #[inline]
    pub(crate) fn is_probe(&self) -> bool {
        matches!(
            self.held,
            Held::Core {
                admission: Admission::Probe(_),
                ..
            }
        )
    }

    /// Whether the permit was taken in the breaker's current state: no transition since.
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        match &self.held {
            Held::Clean { slot, ticket } => slot.load().epoch() == ticket.epoch(),
            Held::Core {
                core, admission, ..
            } => admission
                .epoch()
                .is_some_and(|epoch| core.slot().load().epoch() == epoch),
        }
    }

    /// Records the call's outcome. An outcome that arrives after the state the call was admitted
    /// in has ended (the breaker opened, closed or was reset meanwhile) is discarded, and so is
    /// one that arrives after the breaker was dropped.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        match &mut self.held {
            Held::Core {
                core,
                admission,
                start,
            } => {
                // Spent: the drop that follows gives nothing back.
                let admission = std::mem::replace(admission, Admission::Spent);
                let start = (*start != UNTIMED).then_some(*start);
                core.record(admission, outcome, start);
            }
            Held::Clean { slot, ticket } => {
                let (slot, ticket) = (*slot, *ticket);
                // The clean path: a success into a window that is still clean changes nothing.
                if outcome == Outcome::Success && slot.success_is_noop(ticket.epoch()) {
                    return;
                }
                // Anything else needs the generation, if it is still there (a later owner of
                // the slot discards the outcome: its epoch is stale there).
                let owner = slot.owner_if(|owners| ticket.owned_by(owners));
                if let Some(core) = owner {
                    core.record(Admission::Closed(ticket.epoch()), outcome);
                }
            }
        }
    }
}

impl Drop for CallPermit {
    #[inline]
    fn drop(&mut self) {
        // Probes are never on the clean path: they hold their generation.
        if let Held::Core {
            core,
            admission: Admission::Probe(epoch),
            ..
        } = &self.held
        {
            core.give_back(*epoch);
        }
    }
}

impl fmt::Debug for CallPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.held {
            Held::Clean { ticket, .. } => f
                .debug_struct("CallPermit")
                .field("admission", &Admission::Closed(ticket.epoch()))
                .finish_non_exhaustive(),
            Held::Core {
                core, admission, ..
            } => f
                .debug_struct("CallPermit")
                .field("breaker", &core.name())
                .field("admission", admission)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_keeps_the_epoch_and_43_bits_of_the_owner_count() {
        let last_epoch = Epoch::from_bits(u64::MAX);
        assert_eq!(last_epoch.get(), (1 << 21) - 1);
        for owners in [0, 1, (1 << 43) - 1] {
            let ticket = Ticket::new(owners, last_epoch);
            assert_eq!(ticket.epoch(), last_epoch);
            assert_eq!(ticket.owners(), owners);
            assert!(ticket.owned_by(owners));
            assert!(!ticket.owned_by(owners + 1));
        }
        // Past 43 bits the count wraps, on both sides alike.
        let ticket = Ticket::new(1 << 43, Epoch::INITIAL);
        assert_eq!(ticket.owners(), 0);
        assert!(ticket.owned_by(1 << 43));
        assert_eq!(ticket.epoch(), Epoch::INITIAL);
    }
}
