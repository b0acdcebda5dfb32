//! The time window: the calls of the last `seconds` seconds, in one-second buckets.
//!
//! A call at second `t` belongs to the window of second `t` for `seconds` seconds: the window at
//! second `t` holds the calls of seconds `t - seconds + 1 ..= t` (the current, partial second and
//! the full ones before it), as resilience4j's time-based window does.
//!
//! The head is 128 bits, from the low bits up: cumulative slow calls (30 bits), failures (30),
//! calls (32), the latest second that recorded a call (28 bits, seconds since the breaker was
//! built) and the generation tag (8). A window may hold up to 2^30 failures and 2^32 calls.
//!
//! Slot `s mod slots` holds the head as it stood at the end of second `s`: the call that first
//! moves the head into a later second publishes the end of every second it skipped. The window at
//! second `t` is then the head minus slot `t - seconds`. A reset publishes empty ends for the
//! seconds before it, so a young window needs no special case.

use portable_atomic::{AtomicU128, Ordering};

use super::{Padded, Recorded, Sample, Totals, tag_is_newer};

/// The longest time window, in seconds.
pub(crate) const MAX_SECONDS: u32 = 3_600;

const SLOW_MASK: u128 = (1 << 30) - 1;
const FAIL_SHIFT: u32 = 30;
const CALLS_SHIFT: u32 = 60;
const CALLS_MASK: u128 = (1 << 32) - 1;
const SEC_SHIFT: u32 = 92;
const SEC_BITS: u32 = 28;
const SEC_MASK: u64 = (1 << SEC_BITS) - 1;
const TAG_SHIFT: u32 = 120;
/// The three counters; adding two heads' counters field by field needs them apart.
const COUNTERS: u128 = (1 << SEC_SHIFT) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head(u128);

impl Head {
    fn fresh(tag: u8, sec: u64) -> Self {
        Head((u128::from(tag) << TAG_SHIFT) | (u128::from(sec & SEC_MASK) << SEC_SHIFT))
    }
    fn tag(self) -> u8 {
        (self.0 >> TAG_SHIFT) as u8
    }
    fn sec(self) -> u64 {
        (self.0 >> SEC_SHIFT) as u64 & SEC_MASK
    }
    fn calls(self) -> u64 {
        ((self.0 >> CALLS_SHIFT) & CALLS_MASK) as u64
    }
    fn failed(self) -> u64 {
        ((self.0 >> FAIL_SHIFT) & SLOW_MASK) as u64
    }
    fn slow(self) -> u64 {
        (self.0 & SLOW_MASK) as u64
    }
    fn at(self, sec: u64) -> Self {
        Head(
            self.0 & !(u128::from(SEC_MASK) << SEC_SHIFT)
                | (u128::from(sec & SEC_MASK) << SEC_SHIFT),
        )
    }
    fn with_counters(self, calls: u64, failed: u64, slow: u64) -> Self {
        Head(
            (self.0 & !COUNTERS)
                | ((u128::from(calls) & CALLS_MASK) << CALLS_SHIFT)
                | ((u128::from(failed) & SLOW_MASK) << FAIL_SHIFT)
                | (u128::from(slow) & SLOW_MASK),
        )
    }
    fn after(self, sample: Sample) -> Self {
        self.with_counters(
            self.calls().wrapping_add(1),
            self.failed() + u64::from(sample.failed),
            self.slow() + u64::from(sample.slow),
        )
    }
    /// The counters of `self` minus those of `base`, field by field and wrapping.
    fn since(self, base: Head) -> Totals {
        Totals {
            calls: self.calls().wrapping_sub(base.calls()) & CALLS_MASK as u64,
            failed: self.failed().wrapping_sub(base.failed()) & SLOW_MASK as u64,
            slow: self.slow().wrapping_sub(base.slow()) & SLOW_MASK as u64,
        }
    }
}

/// Second `a` is later than `b` on the 28-bit ring (8.5 years; half of it either way).
fn sec_after(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b) & SEC_MASK;
    ahead != 0 && ahead < (1 << (SEC_BITS - 1))
}

fn sec_of(nanos: u64) -> u64 {
    (nanos / 1_000_000_000) & SEC_MASK
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// Set when the window is made, and again when its slot is reused for another breaker
    /// whose window fits the same ring (before the slot is handed out).
    seconds: std::sync::atomic::AtomicU64,
    head: Padded<AtomicU128>,
    slots: Box<[AtomicU128]>,
    mask: u64,
}

impl TimeWindow {
    /// A window of the last `seconds` seconds, `1 <= seconds <= MAX_SECONDS`.
    pub(crate) fn new(seconds: u32) -> Self {
        let seconds = seconds.clamp(1, MAX_SECONDS);
        let slots = Self::ring_for(seconds);
        let window = Self {
            seconds: std::sync::atomic::AtomicU64::new(u64::from(seconds)),
            head: Padded(AtomicU128::new(Head::fresh(0, 0).0)),
            slots: (0..slots).map(|_| AtomicU128::new(u128::MAX)).collect(),
            mask: slots as u64 - 1,
        };
        window.publish_empty_past(Head::fresh(0, 0));
        window
    }

    /// How many seconds' ends a window of `seconds` keeps.
    pub(crate) fn ring_for(seconds: u32) -> usize {
        (seconds.clamp(1, MAX_SECONDS) as usize + 1).next_power_of_two()
    }

    /// Makes this a window of `seconds`, which needs a ring of the same length: for a new
    /// breaker taking this window's slot, before the slot is handed out (a reset follows).
    pub(crate) fn resize(&self, seconds: u32) {
        debug_assert_eq!(Self::ring_for(seconds), self.slots.len());
        let seconds = u64::from(seconds.clamp(1, MAX_SECONDS));
        self.seconds.store(seconds, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, tag: u8, sample: Sample, now: u64) -> Option<Recorded> {
        let now = sec_of(now);
        let mut current = self.head.load(Ordering::Acquire);
        loop {
            let seen = Head(current);
            let (base, fresh) = if seen.tag() == tag {
                (seen, false)
            } else if tag_is_newer(tag, seen.tag()) {
                (Head::fresh(tag, now), true)
            } else {
                return None;
            };
            // A call whose clock read lags the head's second counts in the head's second.
            let moved = sec_after(now, base.sec());
            let next = if moved { base.at(now) } else { base }.after(sample);
            match self.head.compare_exchange_weak(
                current,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if fresh {
                        self.publish_empty_past(base);
                    }
                    if moved {
                        self.publish_ends(base, now);
                    }
                    return Some(Recorded { head: next.0 });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Publishes `base` as the end of every second from `base`'s up to `now` (exclusive): no
    /// call was recorded in between. Only the last `slots - 1` seconds can ever be read.
    fn publish_ends(&self, base: Head, now: u64) {
        let gap = now.wrapping_sub(base.sec()) & SEC_MASK;
        let skip = gap.saturating_sub(self.mask);
        for offset in skip..gap {
            let sec = (base.sec() + offset) & SEC_MASK;
            self.slots[(sec & self.mask) as usize].store(base.at(sec).0, Ordering::Release);
        }
    }

    /// Publishes empty ends for the seconds before a fresh generation began at `fresh`'s second.
    fn publish_empty_past(&self, fresh: Head) {
        for back in 1..=self.mask {
            let sec = fresh.sec().wrapping_sub(back) & SEC_MASK;
            self.slots[(sec & self.mask) as usize].store(fresh.at(sec).0, Ordering::Release);
        }
    }

    /// The window at second `now` (default: the head's second) as of `head`; `None` while the
    /// baseline is unpublished.
    pub(crate) fn totals_at(&self, head: u128, now: Option<u64>) -> Option<Totals> {
        let head = Head(head);
        let now = match now {
            Some(now) if sec_after(now, head.sec()) => now,
            _ => head.sec(),
        };
        let seconds = self.seconds.load(Ordering::Relaxed);
        let start = now.wrapping_sub(seconds) & SEC_MASK;
        if !sec_after(head.sec(), start) {
            // Every recorded call is older than the window.
            return Some(Totals::default());
        }
        let base = Head(self.slots[(start & self.mask) as usize].load(Ordering::Acquire));
        if base.tag() != head.tag() || base.sec() != start {
            return None;
        }
        Some(head.since(base))
    }

    /// The head now.
    pub(crate) fn head(&self) -> u128 {
        self.head.load(Ordering::Acquire)
    }

    /// The generation of a head.
    pub(crate) fn tag_of(head: u128) -> u8 {
        Head(head).tag()
    }

    /// The current contents of generation `tag` at time `now` (nanoseconds).
    pub(crate) fn totals(&self, tag: u8, now: u64) -> Totals {
        for attempt in 0..1000 {
            let head = self.head.load(Ordering::Acquire);
            if Head(head).tag() != tag {
                return Totals::default();
            }
            if let Some(totals) = self.totals_at(head, Some(sec_of(now))) {
                return totals;
            }
            if attempt % 16 == 15 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        Totals::default()
    }

    pub(crate) fn reset(&self, tag: u8, now: u64) {
        let fresh = Head::fresh(tag, sec_of(now));
        let mut current = self.head.load(Ordering::Acquire);
        loop {
            let seen = Head(current).tag();
            if seen == tag || tag_is_newer(seen, tag) {
                return;
            }
            match self.head.compare_exchange_weak(
                current,
                fresh.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.publish_empty_past(fresh);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
#[path = "time_tests.rs"]
mod tests;
