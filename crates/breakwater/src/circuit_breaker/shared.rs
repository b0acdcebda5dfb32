//! What every generation of a breaker shares.

// A process-wide count: always the standard library's atomic, even on loom.
use std::sync::atomic::{AtomicU64 as ProcessWide, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use super::error::Name;
use super::observe::Metering;
use super::observe::events::Events;
use crate::clock::{Clock, Timeline};
use crate::sync::Mutex;

/// Breakers built so far in the process: each takes its number.
static BUILT: ProcessWide = ProcessWide::new(0);

/// A breaker's name and clock.
pub(crate) struct Identity {
    /// Tells this breaker apart from any other of the process, whatever their names.
    pub(crate) serial: u64,
    pub(crate) name: Arc<str>,
    /// The name as a rejection copies it.
    pub(crate) open_name: Name,
    pub(crate) time: Timeline,
}

/// What every generation of a breaker shares: its identity, subscribers and metric handles.
pub(crate) struct Shared {
    pub(crate) id: Identity,
    pub(crate) events: Events,
    /// Which metrics the breaker records.
    pub(crate) metering: Metering,
    /// Its metric handles, made once, if it records metrics.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<super::observe::metrics::Handles>,
    /// The key this breaker serves, for a breaker of a keyed layer (it changes when the layer
    /// recycles the breaker for another key); read by logs only.
    pub(crate) key: Mutex<Option<Arc<str>>>,
    /// Until when (nanoseconds since the breaker was built) a coordinator holds an open
    /// breaker whose wait is over from moving to half-open; 0: nothing holds it. Shared by
    /// every generation, so a reconfiguration keeps it.
    pub(crate) hold: ProcessWide,
}

impl Shared {
    pub(crate) fn new(name: String, clock: Option<Arc<dyn Clock>>, metering: Metering) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            metrics: metering
                .counts
                .then(|| super::observe::metrics::Handles::new(&name, metering.durations)),
            metering,
            id: {
                let name: Arc<str> = name.into();
                Identity {
                    serial: BUILT.fetch_add(1, Ordering::Relaxed),
                    open_name: Name::of(&name),
                    name,
                    time: Timeline::new(clock),
                }
            },
            events: Events::default(),
            key: Mutex::new(None),
            hold: ProcessWide::new(0),
        }
    }

    /// The breaker's name in logs: its name, and its key if it has one (`name[key]`).
    pub(crate) fn label(&self) -> std::borrow::Cow<'_, str> {
        match &*self.key.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(key) => format!("{}[{key}]", self.id.name).into(),
            None => (*self.id.name).into(),
        }
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.id.time.instant(nanos)
    }
}
