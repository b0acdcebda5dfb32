//! A timeout that can change while services use it: what a registry's time limiter hands out,
//! so that a reloaded file reaches the stacks already built.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sealed::Sealed;

/// Where a [`Timeout`](super::Timeout) reads its timeout from: a fixed [`Duration`] (what
/// [`TimeoutLayer::new`](super::TimeoutLayer::new) makes), or a [`SharedTimeout`] that can be
/// changed while the services built with it run.
pub trait TimeoutSource: Clone + Send + Sync + 'static + Sealed {
    /// The timeout of a call made now.
    #[doc(hidden)]
    fn current(&self) -> Duration;
}

impl TimeoutSource for Duration {
    #[inline]
    fn current(&self) -> Duration {
        *self
    }
}

/// A timeout shared by every layer and service made with it, that can be changed (or lifted)
/// while they run: a call reads it when it starts. One relaxed atomic load per call.
///
/// A [`Registry`](crate::Registry) hands these out for its time limiters
/// ([`Registry::timeout_layer`](crate::Registry::timeout_layer)), and a reload changes them.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::TimeoutLayer;
/// use breakwater::timeout::SharedTimeout;
///
/// let shared = SharedTimeout::new(Some(Duration::from_secs(2)));
/// let layer = TimeoutLayer::shared(shared.clone());
/// shared.set(Some(Duration::from_millis(500))); // calls made from now on get 500 ms
/// assert_eq!(layer.source().get(), Some(Duration::from_millis(500)));
/// shared.set(None); // no limit
/// assert_eq!(layer.source().get(), None);
/// ```
#[derive(Clone)]
pub struct SharedTimeout {
    /// Whole nanoseconds; [`NONE`] for no limit.
    nanos: Arc<AtomicU64>,
}

/// No limit. A timeout of 584 years or more is taken for none.
const NONE: u64 = u64::MAX;

fn encode(timeout: Option<Duration>) -> u64 {
    timeout.map_or(NONE, |t| u64::try_from(t.as_nanos()).unwrap_or(NONE))
}

impl SharedTimeout {
    /// A timeout of `timeout` (`None`: no limit).
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(encode(timeout))),
        }
    }

    /// The timeout now (`None`: no limit).
    pub fn get(&self) -> Option<Duration> {
        let nanos = self.nanos.load(Ordering::Relaxed);
        (nanos != NONE).then(|| Duration::from_nanos(nanos))
    }

    /// Changes the timeout of the calls that start from now on (`None`: no limit); calls
    /// already running keep theirs.
    pub fn set(&self, timeout: Option<Duration>) {
        self.nanos.store(encode(timeout), Ordering::Relaxed);
    }

    /// Whether `self` and `other` are the one timeout.
    pub fn same(&self, other: &SharedTimeout) -> bool {
        Arc::ptr_eq(&self.nanos, &other.nanos)
    }
}

impl Sealed for SharedTimeout {}
impl Sealed for Duration {}

impl TimeoutSource for SharedTimeout {
    /// Without a limit, a call gets a timer that does not fire before its service is long gone
    /// (tokio's far future).
    #[inline]
    fn current(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for SharedTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedTimeout").field(&self.get()).finish()
    }
}
