//! The opt-in automatic transition: a tokio timer per opening moves the breaker to half-open
//! when its wait ends, instead of the first call attempt after it.
//!
//! This is the only place the breaker sleeps on tokio's timer by itself (backpressure mode
//! waits on it too): creating a tokio timer panics in a runtime built without timers, so the
//! default, lazy path never does.

use std::time::Duration;

use super::core::{Core, NANOS_PER_MS};
use super::events::TransitionCause;
use super::state::{Probes, Word};

impl Core {
    /// Moves the open state `open` to half-open when its wait ends, if it is still the state
    /// then. Without a tokio runtime the move stays lazy.
    pub(super) fn schedule_half_open(&'static self, open: Word) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                breaker = &*self.name,
                "no tokio runtime: the move to half-open stays lazy"
            );
            return;
        };
        runtime.spawn(async move {
            let until = open.open_until_ms().saturating_mul(NANOS_PER_MS);
            loop {
                if self.load() != open {
                    return;
                }
                let now = self.now();
                if now >= until {
                    let next = Word::half_open(open.epoch().next(), Probes::default());
                    if self.swap(open, next).is_ok() {
                        self.entered(open, next, TransitionCause::WaitElapsed, now, None);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_nanos(until - now)).await;
            }
        });
    }
}
