//! What an admission attempt gets: admitted (and what the call then owes), a free probe not
//! taken yet, or a rejection and when it may end.

use super::NANOS_PER_MS;
use super::state::{CircuitState, Epoch, MAX_UNTIL_MS, Word};

/// `try_acquire_in`'s deadline when the call is admitted.
pub(super) const ADMITTED: u64 = u64::MAX - 1;
/// A rejection's deadline when the generation is retired: decide again on its successor.
pub(super) const RETIRED: u64 = u64::MAX - 2;
/// `try_acquire_in`'s answer when the call would be a half-open probe and was asked not to
/// take one yet.
pub(super) const PROBE: u64 = u64::MAX - 3;

/// Why a call was not admitted, and when it may end by itself: the state and epoch that
/// rejected it, and the deadline in whole milliseconds since the breaker was built (rounded
/// up), packed in one word as the state word packs them. One word is stored and loaded whole:
/// a wider value assembled from narrower stores and read back at once stalls the load (the
/// store cannot be forwarded), and that showed in the cost of every rejection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection(Word);

/// A rejection's deadline payload when only a transition can end it.
const NO_DEADLINE_MS: u64 = MAX_UNTIL_MS;
/// A rejection's deadline payload when the generation is retired.
const RETIRED_MS: u64 = MAX_UNTIL_MS - 1;

impl Rejection {
    /// `deadline_ms` as `try_acquire_in` returns it: milliseconds, `u64::MAX` or `RETIRED`.
    #[inline]
    pub(crate) fn new(decided: Word, deadline_ms: u64) -> Self {
        let payload = match deadline_ms {
            u64::MAX => NO_DEADLINE_MS,
            RETIRED => RETIRED_MS,
            ms => ms.min(MAX_UNTIL_MS - 2),
        };
        Rejection(Word::with_payload(
            decided.state(),
            decided.epoch(),
            payload,
        ))
    }

    /// The rejection as one word (never 0: a rejection is never of a closed state).
    #[inline]
    pub(crate) const fn to_bits(self) -> u64 {
        self.0.0
    }

    /// A rejection from [`to_bits`](Self::to_bits).
    #[inline]
    pub(crate) const fn from_bits(bits: u64) -> Self {
        Rejection(Word(bits))
    }

    /// The state that rejected the call.
    #[inline]
    pub(crate) const fn state(self) -> CircuitState {
        self.0.state()
    }

    /// The epoch of the state that rejected the call.
    #[inline]
    pub(crate) const fn epoch(self) -> Epoch {
        self.0.epoch()
    }

    /// When (nanoseconds since the breaker was built) the rejection may end by itself: the end
    /// of the open wait, or of a half-open state's maximum wait; `u64::MAX` when only a
    /// transition can end it.
    #[inline]
    pub(crate) const fn deadline(self) -> u64 {
        match self.0.payload() {
            NO_DEADLINE_MS | RETIRED_MS => u64::MAX,
            ms => ms * NANOS_PER_MS,
        }
    }

    /// Whether the generation that rejected the call was retired by a reconfiguration: the
    /// call is to be decided again by its successor.
    #[inline]
    pub(crate) const fn retired(self) -> bool {
        self.0.payload() == RETIRED_MS
    }
}

/// What an admitted call owes the breaker, and the epoch it was admitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Record into the window of this epoch; may open the breaker.
    Closed(Epoch),
    /// Record into the window of this epoch; never opens the breaker.
    MetricsOnly(Epoch),
    /// A half-open probe: record into the probe counters or give the permit back.
    Probe(Epoch),
    /// Disabled: nothing to record.
    Passthrough(Epoch),
    /// Already recorded (or given back).
    Spent,
}

impl Admission {
    pub(crate) const fn epoch(self) -> Option<Epoch> {
        match self {
            Admission::Closed(epoch)
            | Admission::MetricsOnly(epoch)
            | Admission::Probe(epoch)
            | Admission::Passthrough(epoch) => Some(epoch),
            Admission::Spent => None,
        }
    }
}

/// What a call attempt gets: see [`Policy::next`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    /// Admitted.
    Admit(Admission),
    /// A half-open probe is free; none was taken.
    Probe,
    /// Rejected.
    Reject(Rejection),
}
