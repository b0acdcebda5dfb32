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
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;

use super::policy::state::{Epoch, Probes, Word};
use super::policy::{Effects, NANOS_PER_MS, Policy, TransitionCause};

/// What the timer needs of the generation it moves on: its policy (and the effects of a
/// transition), its waiters, its name and clock.
pub(super) trait Host: Effects + Send + Sync + 'static {
    fn policy(&self) -> &Policy;
    fn notify(&self) -> &Arc<Notify>;
    fn name(&self) -> &str;
    /// Whether the breaker's clock is tokio's, which tokio's timers follow.
    fn follows_tokio(&self) -> bool;
}

/// Clears the pending mark of one opening when its timer task ends, however it ends.
struct Pending<H: Host> {
    core: Weak<H>,
    epoch: Epoch,
}

impl<H: Host> Drop for Pending<H> {
    fn drop(&mut self) {
        // The breaker is gone: nobody is waiting.
        let Some(core) = self.core.upgrade() else {
            return;
        };
        if core.policy().disarm_timer(self.epoch) {
            // Services waiting in backpressure mode past the deadline were counting on this
            // timer: let them decide again, by the clock.
            core.notify().notify_waiters();
        }
    }
}

/// Moves the open state `open` of `core` (weakly `this`) to half-open when its wait ends, if
/// it is still the state then. Without a tokio runtime the move stays lazy.
pub(super) fn schedule_half_open<H: Host>(core: &H, this: &Weak<H>, open: Word) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(
            breaker = core.name(),
            "no tokio runtime: the move to half-open stays lazy"
        );
        return;
    };
    // The mark stands in for clock reads only when the timer sleeps on the breaker's own
    // clock; a custom clock may run ahead of tokio's.
    let pending = core.follows_tokio().then(|| {
        core.policy().arm_timer(open.epoch());
        Pending {
            core: this.clone(),
            epoch: open.epoch(),
        }
    });
    // The task holds the generation weakly (it sleeps without keeping the breaker alive)
    // and wakes early when the breaker moves on or is dropped.
    let this = this.clone();
    let notify = Arc::clone(core.notify());
    runtime.spawn(async move {
        let _pending = pending;
        let until = open.open_until_ms().saturating_mul(NANOS_PER_MS);
        loop {
            // Listening before looking: a change in between is not missed.
            let mut changed = std::pin::pin!(Arc::clone(&notify).notified_owned());
            changed.as_mut().enable();
            let wait = {
                let Some(core) = this.upgrade() else {
                    return;
                };
                if core.policy().load() != open {
                    return;
                }
                let now = core.now();
                if now >= until {
                    // A coordinator holds the move (another instance probes for the fleet): it
                    // moves the breaker itself, or, once its hold lapses, the next call does.
                    if now < core.held_until() {
                        return;
                    }
                    let next = Word::half_open(open.epoch().next(), Probes::default());
                    if core.policy().swap(open, next).is_ok() {
                        let cause = TransitionCause::WaitElapsed;
                        core.policy().enter(open, next, cause, now, None, &*core);
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
