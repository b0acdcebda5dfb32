//! The opt-in automatic transition: a tokio timer per opening moves the breaker to half-open
//! when its wait ends, instead of the first call attempt after it.
//!
//! While that timer is pending, the open state's wait is certainly not over, so rejections skip
//! their clock read (about half their cost), when the breaker follows tokio's clock. When the timer ends, however it ends (it fired, the
//! breaker moved on, or its runtime shut down and dropped it), it clears its mark, and
//! rejections read the clock again: the lazy move to half-open takes over.
//!
//! This and backpressure mode are the only places the breaker sleeps on tokio's timer: creating
//! a tokio timer panics in a runtime built without timers, so the default, lazy path never does.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use super::core::{Core, NANOS_PER_MS};
use super::events::TransitionCause;
use super::state::{Epoch, Probes, Word};

const fn mark(epoch: Epoch) -> u32 {
    epoch.get() + 1
}

/// Clears the pending mark of one opening when its timer task ends, however it ends.
struct Pending {
    core: Weak<Core>,
    mark: u32,
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The breaker is gone: nobody is waiting.
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let cleared =
            core.open_timer
                .compare_exchange(self.mark, 0, Ordering::AcqRel, Ordering::Relaxed);
        if cleared.is_ok() {
            // Services waiting in backpressure mode past the deadline were counting on this
            // timer: let them decide again, by the clock.
            core.notify.notify_waiters();
        }
    }
}

impl Core {
    /// Whether the timer of the open state of `epoch` is pending: its wait is not over.
    #[inline]
    pub(super) fn timer_pending(&self, epoch: Epoch) -> bool {
        self.open_timer.load(Ordering::Acquire) == mark(epoch)
    }

    /// Moves the open state `open` to half-open when its wait ends, if it is still the state
    /// then. Without a tokio runtime the move stays lazy.
    pub(super) fn schedule_half_open(&self, open: Word) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                breaker = self.name(),
                "no tokio runtime: the move to half-open stays lazy"
            );
            return;
        };
        // The mark stands in for clock reads only when the timer sleeps on the breaker's own
        // clock; a custom clock may run ahead of tokio's.
        let pending = self.shared.time.is_tokio().then(|| {
            let mark = mark(open.epoch());
            self.open_timer.store(mark, Ordering::Release);
            Pending {
                core: self.this.clone(),
                mark,
            }
        });
        // The task holds the generation weakly (it sleeps without keeping the breaker alive)
        // and wakes early when the breaker moves on or is dropped.
        let core = self.this.clone();
        let notify = Arc::clone(&self.notify);
        runtime.spawn(async move {
            let _pending = pending;
            let until = open.open_until_ms().saturating_mul(NANOS_PER_MS);
            loop {
                // Listening before looking: a change in between is not missed.
                let mut changed = std::pin::pin!(Arc::clone(&notify).notified_owned());
                changed.as_mut().enable();
                let wait = {
                    let Some(core) = core.upgrade() else {
                        return;
                    };
                    if core.load() != open {
                        return;
                    }
                    let now = core.now();
                    if now >= until {
                        let next = Word::half_open(open.epoch().next(), Probes::default());
                        if core.swap(open, next).is_ok() {
                            core.entered(open, next, TransitionCause::WaitElapsed, now, None);
                        }
                        return;
                    }
                    until - now
                };
                let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_nanos(wait)));
                std::future::poll_fn(|cx| {
                    if changed.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
        });
    }
}
