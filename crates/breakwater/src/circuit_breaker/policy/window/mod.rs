//! Sliding windows of recorded calls, lock-free and exact.
//!
//! Both windows keep *cumulative* counters (calls, failures, slow calls since the window was last
//! reset) in one atomic word, the head, together with a position (a call's sequence number, or
//! the current second) and a generation tag. Recording a call is one compare-and-swap of the
//! head; the window's contents are the head minus a *baseline*: the head as it stood just before
//! the oldest call still in the window. Baselines are published into a ring of slots, one per
//! call (count window) or per second (time window), each tagged with its generation and position
//! so a reader can tell a current baseline from a stale one. Reading a window is therefore O(1)
//! and never walks calls or buckets.
//!
//! The generation tag makes a reset atomic with recording: a breaker resets its window on every
//! transition, and tags the window with the low bits of the new epoch. A call admitted under an
//! older epoch finds a newer tag and is discarded inside the same compare-and-swap that would
//! have counted it. A call admitted under the newer epoch that finds the older tag (the
//! transition has not reset the window yet) performs the reset itself.
//!
//! Nothing here knows of tower or of the breaker's states.

pub(crate) mod count;
pub(crate) mod time;

pub(crate) use count::CountWindow;
pub(crate) use time::TimeWindow;

/// What a window holds: calls, and how many of them failed or were slow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

/// A recorded call, as the window saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded {
    pub(crate) head: u128,
}

/// One call's contribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

/// The window a breaker was configured with.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Whether recording needs the time (a time window places calls by second).
    #[inline]
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }

    /// Records one call under generation `tag` at time `now` (nanoseconds; ignored by the count
    /// window). `None` when the window has moved to a newer generation: the call is stale.
    #[inline]
    pub(crate) fn record(&self, tag: u8, sample: Sample, now: u64) -> Option<Recorded> {
        match self {
            Window::Count(w) => w.record(tag, sample),
            Window::Time(w) => w.record(tag, sample, now),
        }
    }

    /// The window's contents right after `recorded`, to decide whether to open the breaker.
    ///
    /// The baseline it needs may be missing: its writer may sit between its compare-and-swap
    /// and its store, or this thread may have been preempted while other threads recorded so
    /// many calls that the baseline's slot was reused. Then the window as it is now serves just
    /// as well (the decision is about the window now): its totals are tried after a short spin,
    /// and after yields to a preempted writer. `None` only if the window moved to another
    /// generation (the breaker changed state: nothing to decide) or every attempt failed. Only
    /// evaluations (failures, slow calls, the minimum reached) come here, never a plain
    /// success.
    pub(crate) fn totals_after(&self, recorded: &Recorded) -> Option<Totals> {
        for attempt in 0..80 {
            let head = if attempt == 0 {
                recorded.head
            } else {
                self.head()
            };
            if self.tag_of(head) != self.tag_of(recorded.head) {
                return None;
            }
            let totals = match self {
                Window::Count(w) => {
                    let head = head as u64;
                    w.totals_at(head).or_else(|| w.totals_near(head))
                }
                Window::Time(w) => w.totals_at(head, None),
            };
            if totals.is_some() {
                return totals;
            }
            if attempt < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        None
    }

    fn head(&self) -> u128 {
        match self {
            Window::Count(w) => u128::from(w.head()),
            Window::Time(w) => w.head(),
        }
    }

    fn tag_of(&self, head: u128) -> u8 {
        match self {
            Window::Count(_) => CountWindow::tag_of(head as u64),
            Window::Time(_) => TimeWindow::tag_of(head),
        }
    }

    /// Whether `recorded` may be the call that brought the window to `minimum` calls (a time
    /// window cannot tell without reading its baseline: always).
    #[inline]
    pub(crate) fn reached(&self, recorded: &Recorded, minimum: u64) -> bool {
        match self {
            Window::Count(w) => w.reached(recorded.head as u64, minimum),
            Window::Time(_) => true,
        }
    }

    /// The contents of generation `tag` at time `now`: empty if the window holds another
    /// generation.
    pub(crate) fn totals(&self, tag: u8, now: u64) -> Totals {
        match self {
            Window::Count(w) => w.totals(tag),
            Window::Time(w) => w.totals(tag, now),
        }
    }

    /// Starts generation `tag` with an empty window, unless the window already holds `tag` or a
    /// newer generation.
    pub(crate) fn reset(&self, tag: u8, now: u64) {
        match self {
            Window::Count(w) => w.reset(tag),
            Window::Time(w) => w.reset(tag, now),
        }
    }

    /// The number of calls (count window) or seconds (time window) it spans.
    pub(crate) fn minimum_cap(&self) -> Option<u64> {
        match self {
            Window::Count(w) => Some(u64::from(w.size())),
            Window::Time(_) => None,
        }
    }
}

/// Whether generation `a` is newer than `b`, on a ring of 256 tags: `a` is at most 127 steps
/// ahead of `b`.
pub(crate) fn tag_is_newer(a: u8, b: u8) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < 128
}

/// Keeps a value on a cache line (pair) of its own, so that the head of a window, written on
/// every call, does not slow down reads of the state word next to it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_order_on_a_ring() {
        assert!(tag_is_newer(1, 0));
        assert!(tag_is_newer(0, 255));
        assert!(tag_is_newer(127, 0));
        assert!(!tag_is_newer(128, 0));
        assert!(!tag_is_newer(0, 0));
        assert!(!tag_is_newer(0, 1));
    }
}
