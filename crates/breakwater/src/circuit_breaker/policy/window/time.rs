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
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failed: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failed: true,
        slow: false,
    };
    const SLOW_FAIL: Sample = Sample {
        failed: true,
        slow: true,
    };
    const SEC: u64 = 1_000_000_000;

    fn totals(calls: u64, failed: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failed,
            slow,
        }
    }

    fn record(w: &TimeWindow, sample: Sample, now: u64) -> Totals {
        let r = w.record(0, sample, now).expect("current generation");
        w.totals_at(r.head, None).expect("published")
    }

    #[test]
    fn calls_leave_the_window_after_its_span() {
        let w = TimeWindow::new(5);
        assert_eq!(record(&w, FAIL, 0), totals(1, 1, 0));
        assert_eq!(record(&w, OK, SEC / 2), totals(2, 1, 0));
        assert_eq!(record(&w, SLOW_FAIL, 2 * SEC), totals(3, 2, 1));
        assert_eq!(record(&w, OK, 4 * SEC + SEC - 1), totals(4, 2, 1));
        assert_eq!(w.totals(0, 4 * SEC), totals(4, 2, 1));
        // At second 5, second 0 (two calls) has left.
        assert_eq!(w.totals(0, 5 * SEC), totals(2, 1, 1));
        assert_eq!(record(&w, OK, 5 * SEC), totals(3, 1, 1));
        // At second 7, second 2 leaves too.
        assert_eq!(w.totals(0, 7 * SEC), totals(2, 0, 0));
        // Long after, nothing is left.
        assert_eq!(w.totals(0, 10 * SEC), totals(0, 0, 0));
        assert_eq!(w.totals(0, 100_000 * SEC), totals(0, 0, 0));
        assert_eq!(record(&w, FAIL, 100_000 * SEC), totals(1, 1, 0));
    }

    #[test]
    fn a_lagging_clock_read_counts_in_the_current_second() {
        let w = TimeWindow::new(2);
        record(&w, OK, 10 * SEC);
        // Another thread read the clock just before second 10 began.
        assert_eq!(record(&w, FAIL, 10 * SEC - 1), totals(2, 1, 0));
        assert_eq!(w.totals(0, 11 * SEC), totals(2, 1, 0));
        assert_eq!(w.totals(0, 12 * SEC), totals(0, 0, 0));
    }

    #[test]
    fn idle_gaps_longer_than_the_ring_publish_only_what_can_be_read() {
        let w = TimeWindow::new(3);
        for s in 0..3 {
            record(&w, FAIL, s * SEC);
        }
        assert_eq!(record(&w, OK, 1_000 * SEC), totals(1, 0, 0));
        assert_eq!(record(&w, OK, 1_001 * SEC), totals(2, 0, 0));
        assert_eq!(record(&w, FAIL, 1_003 * SEC), totals(2, 1, 0));
    }

    #[test]
    fn reset_empties_the_window_and_refuses_stale_calls() {
        let w = TimeWindow::new(10);
        record(&w, FAIL, 3 * SEC);
        w.reset(1, 4 * SEC);
        assert_eq!(w.totals(1, 4 * SEC), totals(0, 0, 0));
        assert!(w.record(0, FAIL, 4 * SEC).is_none());
        let r = w.record(1, OK, 5 * SEC).unwrap();
        assert_eq!(w.totals_at(r.head, None), Some(totals(1, 0, 0)));
        // A newer generation's call resets by itself.
        let r = w.record(2, FAIL, 6 * SEC).unwrap();
        assert_eq!(w.totals_at(r.head, None), Some(totals(1, 1, 0)));
        w.reset(2, 6 * SEC);
        assert_eq!(w.totals(2, 6 * SEC), totals(1, 1, 0));
    }

    #[test]
    fn many_calls_in_one_second_are_counted_exactly() {
        let w = TimeWindow::new(1);
        for i in 0..100_000u64 {
            w.record(0, if i % 4 == 0 { FAIL } else { OK }, 7 * SEC)
                .unwrap();
        }
        assert_eq!(w.totals(0, 7 * SEC), totals(100_000, 25_000, 0));
        assert_eq!(w.totals(0, 8 * SEC), totals(0, 0, 0));
    }

    #[test]
    fn concurrent_recorders_across_seconds_leave_exact_totals() {
        let w = std::sync::Arc::new(TimeWindow::new(60));
        // All four threads finish each second before any starts the next, so every call lands
        // in the second it was stamped with.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (w, barrier) = (w.clone(), barrier.clone());
                std::thread::spawn(move || {
                    for second in 0..20u64 {
                        for i in 0..1_000u64 {
                            let now = second * SEC + i * 1_000 + t;
                            w.record(0, if t == 0 { FAIL } else { OK }, now).unwrap();
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.totals(0, 19 * SEC), totals(80_000, 20_000, 0));
        // Second 0 leaves at second 60: 4 threads x 1000 calls, 1000 of them failures.
        assert_eq!(w.totals(0, 60 * SEC), totals(76_000, 19_000, 0));
        assert_eq!(w.totals(0, 79 * SEC), totals(0, 0, 0));
    }

    #[test]
    fn concurrent_recorders_across_a_reset_count_only_their_generation() {
        let w = std::sync::Arc::new(TimeWindow::new(60));
        let go = std::sync::Arc::new(std::sync::Barrier::new(5));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (w, go) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    let (mut tag, mut in_new) = (0, 0u64);
                    for i in 0..10_000u64 {
                        // Seconds 0 to 9, all within the window.
                        let now = (i / 1_000) * SEC + t;
                        match w.record(tag, FAIL, now) {
                            Some(_) if tag == 1 => in_new += 1,
                            Some(_) => {}
                            None => {
                                tag = 1;
                                w.record(1, FAIL, now).unwrap();
                                in_new += 1;
                            }
                        }
                    }
                    in_new
                })
            })
            .collect();
        go.wait();
        w.reset(1, 0);
        let in_new: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(w.totals(1, 9 * SEC), totals(in_new, in_new, 0));
        assert!(w.record(0, OK, 9 * SEC).is_none());
    }
}
