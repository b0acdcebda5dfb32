//! The error of a call the breaker rejected.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
#[cfg(feature = "tonic")]
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::CircuitState;
use super::generation::Core;
use super::policy::Rejection;
use crate::clock::{Clock, TokioClock};

/// A call was rejected by an open breaker without reaching the service.
///
/// The layered service returns it boxed in a [`BoxError`](crate::BoxError); find it with
/// `error.downcast_ref::<CircuitOpen>()` (or `error.is::<CircuitOpen>()`). With the `tonic`
/// feature its [`source`](Error::source) is an `UNAVAILABLE` status, so a tonic client reports
/// a rejected call as `UNAVAILABLE`, not `UNKNOWN`. That status is built the first time the
/// source is asked for (a `format!` and two small allocations, paid by a rejection a tonic
/// client sees, or that other code walks the source chain of; breakwater's own
/// [`is_timeout`](crate::classify::is_timeout) stops at a `CircuitOpen`); its message is
/// "circuit breaker `name` rejected the call", and the state and the wait are on the
/// `CircuitOpen`.
///
/// A `CircuitOpen` refers to nothing of its breaker: it holds a copy of its name (shared, for a
/// name longer than 38 bytes), the end of the wait, and the breaker's clock when it is not
/// tokio's.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
///
/// let breaker = CircuitBreaker::builder("pg-payment")
///     .wait_duration_in_open(Duration::from_secs(30))
///     .build()?;
/// breaker.transition_to(CircuitState::Open);
///
/// let rejected: CircuitOpen = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.breaker(), "pg-payment");
/// assert_eq!(rejected.state(), CircuitState::Open);
/// // Counted from now; the wait has millisecond resolution, rounded up.
/// assert!(rejected.retry_after().is_some_and(|wait| wait > Duration::from_secs(29)));
/// assert!(rejected.to_string().starts_with("circuit breaker `pg-payment` is open; retry after "));
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitOpen {
    /// Which breaker rejected the call (a number: two breakers may share a name).
    breaker: u64,
    /// The breaker's name, copied (no reference to the breaker: a rejection kept by the caller
    /// keeps nothing of it alive, and making one updates no shared count).
    name: Name,
    state: CircuitState,
    /// Open: when the wait ends, on the breaker's clock.
    until: Option<Instant>,
    /// The breaker's clock, when it is not tokio's (a rejection reads tokio's itself).
    clock: Option<Arc<dyn Clock>>,
    /// The key of a keyed breaker.
    key: Option<Arc<str>>,
    /// What a tonic client sees of the rejection, made when first asked for (boxed: a
    /// status is large, and most rejections never become one).
    #[cfg(feature = "tonic")]
    unavailable: OnceLock<Box<tonic::Status>>,
}

/// How long a name a rejection copies; a longer one is shared.
const INLINE: usize = 38;

/// A breaker's name as a rejection keeps it: copied when it is short (most are), shared when
/// it is long. Copying 40 bytes costs less than the two atomic updates of sharing it.
#[derive(Clone)]
pub(crate) enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl Name {
    pub(crate) fn of(name: &Arc<str>) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Shared(Arc::clone(name)),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Whole names are copied, so the bytes are UTF-8.
            Name::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Name::Shared(name) => name,
        }
    }
}

impl CircuitOpen {
    pub(crate) fn new(core: &Core, rejection: &Rejection) -> Self {
        let id = &core.shared.id;
        let state = rejection.state();
        let deadline = rejection.deadline();
        Self {
            breaker: id.serial,
            name: id.open_name.clone(),
            state,
            until: (state == CircuitState::Open && deadline != u64::MAX)
                .then(|| id.time.instant(deadline)),
            clock: id.time.custom().cloned(),
            key: None,
            #[cfg(feature = "tonic")]
            unavailable: OnceLock::new(),
        }
    }

    /// The rejection of a keyed breaker's call, for `key`.
    pub(crate) fn with_key(mut self, key: Arc<str>) -> Self {
        self.key = Some(key);
        self
    }

    /// The name of the breaker that rejected the call.
    pub fn breaker(&self) -> &str {
        self.name.as_str()
    }

    /// For a breaker of a [keyed layer](super::keyed): the key (the downstream) whose breaker
    /// rejected the call.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The state that rejected it: [`Open`](CircuitState::Open), [`ForcedOpen`](CircuitState::ForcedOpen),
    /// or [`HalfOpen`](CircuitState::HalfOpen) with every probe permit taken.
    pub const fn state(&self) -> CircuitState {
        self.state
    }

    /// Open: how long from now until the breaker lets a probe through, by the breaker's clock.
    /// It is computed when asked (the rejection itself reads no clock when it need not), so it
    /// shrinks as time passes. `None` in the other states, which have no such deadline.
    pub fn retry_after(&self) -> Option<Duration> {
        let now = match &self.clock {
            Some(clock) => clock.now(),
            None => TokioClock.now(),
        };
        self.until.map(|until| until.saturating_duration_since(now))
    }
}

impl PartialEq for CircuitOpen {
    /// The same breaker (not only the same name), key, state and end of the wait.
    fn eq(&self, other: &Self) -> bool {
        self.breaker == other.breaker
            && self.state == other.state
            && self.until == other.until
            && self.key == other.key
    }
}

impl Eq for CircuitOpen {}

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("breaker", &self.breaker())
            .field("key", &self.key)
            .field("state", &self.state)
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` ", self.breaker())?;
        if let Some(key) = &self.key {
            write!(f, "for `{key}` ")?;
        }
        f.write_str("is ")?;
        match (self.state, self.retry_after()) {
            (CircuitState::Open, Some(wait)) => write!(f, "open; retry after {wait:?}"),
            (CircuitState::HalfOpen, _) => {
                f.write_str("half-open and all its probe calls are in flight")
            }
            (CircuitState::ForcedOpen, _) => f.write_str("forced open"),
            (state, _) => write!(f, "{state}"),
        }
    }
}

impl Error for CircuitOpen {
    /// With the `tonic` feature: an `UNAVAILABLE` status, which a tonic client finds in the
    /// source chain and reports instead of `UNKNOWN`.
    #[cfg(feature = "tonic")]
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        let status = self.unavailable.get_or_init(|| {
            Box::new(tonic::Status::unavailable(format!(
                "circuit breaker `{}` rejected the call",
                self.breaker()
            )))
        });
        Some(&**status)
    }
}
