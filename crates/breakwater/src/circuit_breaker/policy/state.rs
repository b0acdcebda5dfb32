//! The breaker's states, and the one word that holds the current one.
//!
//! Every admission decision and every half-open outcome is a single atomic step on one `u64`:
//!
//! ```text
//!  63   61 60                 40 39                                  0
//! +-------+---------------------+-------------------------------------+
//! | state |   epoch (21 bits)   |          payload (40 bits)          |
//! +-------+---------------------+-------------------------------------+
//! ```
//!
//! - **epoch**: bumped by every transition. A call carries the epoch it was admitted in; an
//!   outcome from an earlier epoch is discarded (it wraps after 2^21 transitions).
//! - **payload**, open: the end of the wait, in milliseconds since the breaker was built.
//! - **payload**, half-open: four 10-bit counters: permits taken, outcomes recorded, failures,
//!   slow calls. Taking a permit, giving one back and recording a probe's outcome (and deciding,
//!   on the last one, whether to close or open) are each one compare-and-swap, so racing callers
//!   can never take more than the permitted number of probes.

use std::fmt;

/// The state of a circuit breaker.
///
/// # Example
///
/// ```
/// use breakwater::{CircuitBreaker, CircuitState};
///
/// let breaker = CircuitBreaker::builder("ledger").build()?;
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// assert!(breaker.state().permits_calls());
/// breaker.force_open();
/// assert_eq!(breaker.state(), CircuitState::ForcedOpen);
/// assert!(!breaker.state().permits_calls());
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow and their outcomes are recorded; the breaker opens when a rate reaches its
    /// threshold.
    Closed,
    /// Calls are rejected until the wait ends; then the next call attempt moves the breaker to
    /// half-open.
    Open,
    /// A fixed number of probe calls flow; their outcomes decide between closed and open.
    HalfOpen,
    /// Calls flow and nothing is recorded; only a manual transition leaves this state.
    Disabled,
    /// Every call is rejected; only a manual transition leaves this state.
    ForcedOpen,
    /// Calls flow and are recorded, but the breaker never opens: for watching a downstream
    /// before trusting the breaker with it.
    MetricsOnly,
}

impl CircuitState {
    /// Whether calls are let through in this state (half-open: some of them).
    pub const fn permits_calls(self) -> bool {
        !matches!(self, CircuitState::Open | CircuitState::ForcedOpen)
    }

    /// The state's name in `snake_case`, as used in logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Disabled => "disabled",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    const fn code(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::Disabled => 3,
            CircuitState::ForcedOpen => 4,
            CircuitState::MetricsOnly => 5,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::Disabled,
            4 => CircuitState::ForcedOpen,
            // Only the six codes above are ever stored.
            _ => CircuitState::MetricsOnly,
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for CircuitState {
    /// As its [`as_str`](Self::as_str) name.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const PAYLOAD_BITS: u32 = 40;
const PAYLOAD_MASK: u64 = (1 << PAYLOAD_BITS) - 1;
const EPOCH_BITS: u32 = 21;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
const STATE_SHIFT: u32 = PAYLOAD_BITS + EPOCH_BITS;
const COUNTER_BITS: u32 = 10;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// A transition counter; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u32);

impl Epoch {
    pub(crate) const INITIAL: Epoch = Epoch(0);

    pub(crate) const fn next(self) -> Self {
        Epoch((self.0 + 1) & EPOCH_MASK as u32)
    }

    /// The generation tag of the window recorded under this epoch.
    pub(crate) const fn window_tag(self) -> u8 {
        self.0 as u8
    }

    pub(crate) const fn get(self) -> u32 {
        self.0
    }

    pub(crate) const fn from_bits(bits: u64) -> Self {
        Epoch((bits & EPOCH_MASK) as u32)
    }

    /// Whether `self` comes after `other` on the ring of epochs (at most half the ring ahead).
    pub(crate) const fn is_after(self, other: Epoch) -> bool {
        let ahead = self.0.wrapping_sub(other.0) & EPOCH_MASK as u32;
        ahead != 0 && ahead < (1 << (EPOCH_BITS - 1))
    }
}

/// The half-open counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Probes {
    /// Permits handed out and not given back (including those whose outcome was recorded).
    pub(crate) taken: u32,
    pub(crate) recorded: u32,
    pub(crate) failed: u32,
    pub(crate) slow: u32,
}

impl Probes {
    const fn pack(self) -> u64 {
        (self.taken as u64 & COUNTER_MASK)
            | (self.recorded as u64 & COUNTER_MASK) << COUNTER_BITS
            | (self.failed as u64 & COUNTER_MASK) << (2 * COUNTER_BITS)
            | (self.slow as u64 & COUNTER_MASK) << (3 * COUNTER_BITS)
    }

    const fn unpack(payload: u64) -> Self {
        Probes {
            taken: (payload & COUNTER_MASK) as u32,
            recorded: ((payload >> COUNTER_BITS) & COUNTER_MASK) as u32,
            failed: ((payload >> (2 * COUNTER_BITS)) & COUNTER_MASK) as u32,
            slow: ((payload >> (3 * COUNTER_BITS)) & COUNTER_MASK) as u32,
        }
    }
}

/// The packed state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    #[cfg(test)]
    pub(crate) const INITIAL: Word = Word(0);

    const fn new(state: CircuitState, epoch: Epoch, payload: u64) -> Self {
        Word(
            state.code() << STATE_SHIFT
                | (epoch.0 as u64) << PAYLOAD_BITS
                | (payload & PAYLOAD_MASK),
        )
    }

    /// `state` in `epoch` with `payload` (its low 40 bits): for a value that packs like the
    /// state word without being one.
    pub(crate) const fn with_payload(state: CircuitState, epoch: Epoch, payload: u64) -> Self {
        Self::new(state, epoch, payload)
    }

    /// The low 40 bits.
    pub(crate) const fn payload(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }

    /// `state` in `epoch`, with an empty payload (closed, disabled, forced open, metrics only,
    /// or half-open with no probe yet).
    pub(crate) const fn plain(state: CircuitState, epoch: Epoch) -> Self {
        Self::new(state, epoch, 0)
    }

    /// Open in `epoch` until `until_ms` milliseconds after the breaker was built.
    pub(crate) const fn open(epoch: Epoch, until_ms: u64) -> Self {
        Self::new(CircuitState::Open, epoch, until_ms)
    }

    pub(crate) const fn half_open(epoch: Epoch, probes: Probes) -> Self {
        Self::new(CircuitState::HalfOpen, epoch, probes.pack())
    }

    pub(crate) const fn state(self) -> CircuitState {
        CircuitState::from_code(self.0 >> STATE_SHIFT)
    }

    pub(crate) const fn epoch(self) -> Epoch {
        Epoch(((self.0 >> PAYLOAD_BITS) & EPOCH_MASK) as u32)
    }

    /// Open: when the wait ends, in milliseconds since the breaker was built.
    pub(crate) const fn open_until_ms(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }

    /// The state word of a generation replaced by a reconfiguration: forced open, marked.
    pub(crate) const fn retired(epoch: Epoch) -> Self {
        Self::new(CircuitState::ForcedOpen, epoch, RETIRED)
    }

    /// Whether this generation of the breaker was replaced by a reconfiguration.
    pub(crate) const fn is_retired(self) -> bool {
        self.0 >> STATE_SHIFT == CircuitState::ForcedOpen.code() && self.0 & RETIRED != 0
    }

    /// Half-open: the probe counters.
    pub(crate) const fn probes(self) -> Probes {
        Probes::unpack(self.0 & PAYLOAD_MASK)
    }

    /// The same state and epoch with other probe counters.
    pub(crate) const fn with_probes(self, probes: Probes) -> Self {
        Self::half_open(self.epoch(), probes)
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Word");
        s.field("state", &self.state())
            .field("epoch", &self.epoch().0);
        match self.state() {
            CircuitState::Open => s.field("open_until_ms", &self.open_until_ms()),
            CircuitState::HalfOpen => s.field("probes", &self.probes()),
            _ => &mut s,
        };
        s.finish()
    }
}

/// Milliseconds since the breaker was built, for the open deadline: 40 bits last 34 years.
pub(crate) const MAX_UNTIL_MS: u64 = PAYLOAD_MASK;

/// The payload that marks a retired generation (forced open has no other payload).
const RETIRED: u64 = 1 << (PAYLOAD_BITS - 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_every_field() {
        let epoch = Epoch(EPOCH_MASK as u32);
        let w = Word::open(epoch, MAX_UNTIL_MS);
        assert_eq!(w.state(), CircuitState::Open);
        assert_eq!(w.epoch(), epoch);
        assert_eq!(w.open_until_ms(), MAX_UNTIL_MS);
        let probes = Probes {
            taken: 1023,
            recorded: 1022,
            failed: 511,
            slow: 7,
        };
        let w = Word::half_open(Epoch(12345), probes);
        assert_eq!(w.state(), CircuitState::HalfOpen);
        assert_eq!(w.epoch(), Epoch(12345));
        assert_eq!(w.probes(), probes);
        for state in [
            CircuitState::Closed,
            CircuitState::Open,
            CircuitState::HalfOpen,
            CircuitState::Disabled,
            CircuitState::ForcedOpen,
            CircuitState::MetricsOnly,
        ] {
            assert_eq!(Word::plain(state, Epoch(3)).state(), state);
        }
        assert_eq!(Word::INITIAL.state(), CircuitState::Closed);
        let retired = Word::retired(Epoch(9));
        assert!(retired.is_retired());
        assert_eq!(retired.epoch(), Epoch(9));
        assert!(!Word::plain(CircuitState::ForcedOpen, Epoch(9)).is_retired());
        assert!(!Word::open(Epoch(9), MAX_UNTIL_MS).is_retired());
    }

    #[test]
    fn epochs_wrap_and_tag_windows_by_their_low_bits() {
        assert_eq!(Epoch(EPOCH_MASK as u32).next(), Epoch(0));
        assert!(Epoch(0).is_after(Epoch(EPOCH_MASK as u32)));
        assert!(Epoch(5).is_after(Epoch(4)));
        assert!(!Epoch(4).is_after(Epoch(4)));
        assert!(!Epoch(4).is_after(Epoch(5)));
        assert_eq!(Epoch(255).window_tag(), 255);
        assert_eq!(Epoch(256).window_tag(), 0);
    }
}
