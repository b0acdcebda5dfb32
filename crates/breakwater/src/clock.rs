//! Where a breaker reads the time.
//!
//! By default a breaker reads [`tokio::time::Instant::now`], so a test that calls
//! [`tokio::time::pause`][pause] drives every breaker with virtual time and advances it instead of
//! sleeping. Tokio's pause works on a current-thread runtime only; a multi-threaded test injects a
//! [`ManualClock`] with [`Builder::clock`](crate::circuit_breaker::Builder::clock) and moves it
//! forward by hand.
//!
//! A breaker reads its clock only where a setting needs it: to time calls when slow-call
//! detection is on (or somebody subscribes to per-call events, or the breaker records call
//! durations for its metrics), to place calls in a time window,
//! and to decide whether an open breaker's wait is over. A breaker with a count window and no
//! slow-call threshold reads no clock at all while it is closed.
//!
//! [pause]: https://docs.rs/tokio/1/tokio/time/fn.pause.html
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::{CircuitBreaker, CircuitState, clock::ManualClock};
//!
//! let clock = ManualClock::new();
//! let breaker = CircuitBreaker::builder("inventory")
//!     .wait_duration_in_open(Duration::from_secs(30))
//!     .clock(clock.clone())
//!     .build()?;
//!
//! breaker.transition_to(CircuitState::Open);
//! clock.advance(Duration::from_secs(30));
//! // The move to half-open is lazy: the next admission attempt makes it.
//! assert_eq!(breaker.state(), CircuitState::Open);
//! # Ok::<(), breakwater::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time for a breaker.
///
/// Implement it to drive breakers from a clock of your own. Implementations must be monotonic
/// (never go backwards) and cheap: a breaker may read the clock on every call.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use breakwater::clock::Clock;
///
/// #[derive(Debug)]
/// struct SystemClock;
///
/// impl Clock for SystemClock {
///     fn now(&self) -> Instant {
///         Instant::now()
///     }
/// }
///
/// let breaker = breakwater::CircuitBreaker::builder("search").clock(SystemClock).build()?;
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The default clock: [`tokio::time::Instant::now`], which follows
/// [`tokio::time::pause`][pause] and [`tokio::time::advance`][advance] in tests.
///
/// [pause]: https://docs.rs/tokio/1/tokio/time/fn.pause.html
/// [advance]: https://docs.rs/tokio/1/tokio/time/fn.advance.html
///
/// # Example
///
/// ```
/// use breakwater::clock::{Clock, TokioClock};
///
/// let before = TokioClock.now();
/// assert!(TokioClock.now() >= before);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that moves only when told to: for tests, above all multi-threaded ones.
///
/// Clones share one time, so a test keeps a clone and advances it while the breaker reads it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now() - start, Duration::from_millis(1500));
/// assert_eq!(clock.elapsed(), Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    start: Instant,
    elapsed_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the moment it is made.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                start: Instant::now(),
                elapsed_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward (saturating at `u64::MAX` nanoseconds after its start).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update cannot fail here: the closure always returns Some.
        let _ = self
            .inner
            .elapsed_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// How far the clock has been moved since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.elapsed_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.start + self.elapsed()
    }
}

/// A breaker's view of time: nanoseconds since the breaker was built, read from its clock.
pub(crate) struct Timeline {
    source: Source,
    origin: Instant,
}

enum Source {
    Tokio,
    Custom(Arc<dyn Clock>),
}

impl Timeline {
    pub(crate) fn new(custom: Option<Arc<dyn Clock>>) -> Self {
        let source = custom.map_or(Source::Tokio, Source::Custom);
        let origin = source.now();
        Self { source, origin }
    }

    /// Nanoseconds since the breaker was built.
    pub(crate) fn now(&self) -> u64 {
        let elapsed = self.source.now().saturating_duration_since(self.origin);
        // u64 nanoseconds last 584 years.
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The clock, when it is not tokio's.
    pub(crate) fn custom(&self) -> Option<&Arc<dyn Clock>> {
        match &self.source {
            Source::Tokio => None,
            Source::Custom(clock) => Some(clock),
        }
    }

    /// Whether time follows tokio's clock, which tokio timers follow too.
    pub(crate) fn is_tokio(&self) -> bool {
        matches!(self.source, Source::Tokio)
    }

    /// The instant `nanos` after the breaker was built.
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }
}

impl Source {
    fn now(&self) -> Instant {
        match self {
            Source::Tokio => TokioClock.now(),
            Source::Custom(clock) => clock.now(),
        }
    }
}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source: &dyn fmt::Debug = match &self.source {
            Source::Tokio => &TokioClock,
            Source::Custom(clock) => clock,
        };
        f.debug_struct("Timeline")
            .field("source", source)
            .field("origin", &self.origin)
            .finish()
    }
}
