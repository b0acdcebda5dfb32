//! The count window: the last `size` recorded calls.
//!
//! The head packs, from the low bits up: cumulative slow calls (17 bits), cumulative failures
//! (17 bits), the sequence number of the next call (21 bits), a "full" flag (set once more than
//! `size` calls were recorded, so the window slides) and the generation tag (8 bits). Counters
//! wrap; only differences of at most `size` (< 2^17) are ever taken, so wrapping is harmless.
//!
//! Call `j` publishes the head it produced into slot `j mod slots`; the window after call `s - 1`
//! spans calls `s - size .. s`, whose baseline is the head after call `s - size - 1`. There are
//! at least `2 * size + 2` slots, so that baseline outlives the window by another window's worth
//! of calls.

use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

use super::{Padded, Recorded, Sample, Totals, tag_is_newer};

/// The largest count window: counters of 17 bits must hold the window's differences.
pub(crate) const MAX_SIZE: u32 = 65_535;

const COUNT_BITS: u32 = 17;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const FAIL_SHIFT: u32 = COUNT_BITS;
const SEQ_SHIFT: u32 = 2 * COUNT_BITS;
const SEQ_BITS: u32 = 21;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const FULL: u64 = 1 << (SEQ_SHIFT + SEQ_BITS);
const TAG_SHIFT: u32 = 56;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head(u64);

impl Head {
    const fn fresh(tag: u8) -> Self {
        Head((tag as u64) << TAG_SHIFT)
    }
    const fn tag(self) -> u8 {
        (self.0 >> TAG_SHIFT) as u8
    }
    const fn seq(self) -> u64 {
        (self.0 >> SEQ_SHIFT) & SEQ_MASK
    }
    const fn full(self) -> bool {
        self.0 & FULL != 0
    }
    const fn failed(self) -> u64 {
        (self.0 >> FAIL_SHIFT) & COUNT_MASK
    }
    const fn slow(self) -> u64 {
        self.0 & COUNT_MASK
    }
    fn after(self, sample: Sample, size: u64) -> Self {
        let seq = self.seq() + 1;
        let full = self.full() || seq > size;
        let failed = (self.failed() + u64::from(sample.failed)) & COUNT_MASK;
        let slow = (self.slow() + u64::from(sample.slow)) & COUNT_MASK;
        Head(
            (u64::from(self.tag()) << TAG_SHIFT)
                | if full { FULL } else { 0 }
                | ((seq & SEQ_MASK) << SEQ_SHIFT)
                | (failed << FAIL_SHIFT)
                | slow,
        )
    }
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    /// Set when the window is made, and again when its slot is reused for another breaker
    /// whose window fits the same ring (before the slot is handed out).
    size: std::sync::atomic::AtomicU32,
    head: Padded<AtomicU64>,
    slots: Box<[AtomicU64]>,
    mask: u64,
}

impl CountWindow {
    /// A window of the last `size` calls, `1 <= size <= MAX_SIZE` (the configuration checks).
    pub(crate) fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_SIZE);
        let slots = Self::ring_for(size);
        Self {
            size: std::sync::atomic::AtomicU32::new(size),
            head: Padded(AtomicU64::new(Head::fresh(0).0)),
            slots: (0..slots).map(|_| AtomicU64::new(u64::MAX)).collect(),
            mask: slots as u64 - 1,
        }
    }

    /// How many baselines a window of `size` calls keeps: twice the window, so a baseline
    /// outlives another whole window of calls, and a recorder preempted between its record and
    /// its evaluation still finds it.
    pub(crate) fn ring_for(size: u32) -> usize {
        (2 * size.clamp(1, MAX_SIZE) as usize + 2).next_power_of_two()
    }

    /// Makes this a window of `size` calls, which needs a ring of the same length: for a new
    /// breaker taking this window's slot, before the slot is handed out (a reset follows).
    pub(crate) fn resize(&self, size: u32) {
        debug_assert_eq!(Self::ring_for(size), self.slots.len());
        self.size.store(size.clamp(1, MAX_SIZE), Ordering::Relaxed);
    }

    pub(crate) fn size(&self) -> u32 {
        self.size.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn record(&self, tag: u8, sample: Sample) -> Option<Recorded> {
        let mut current = self.head.load(Ordering::Acquire);
        // A success into a full window of successes changes nothing the window reports: the
        // call it evicts is a success too. It is not written, so while a downstream is healthy
        // concurrent callers only read the window, and share its cache lines instead of passing
        // them back and forth. See `skips_a_success_only_into_a_clean_window` for why the
        // window stays exact.
        if sample == Sample::default() && self.clean(current, tag) {
            return Some(Recorded {
                head: u128::from(current),
            });
        }
        loop {
            let seen = Head(current);
            let base = if seen.tag() == tag {
                seen
            } else if tag_is_newer(tag, seen.tag()) {
                // The transition that started generation `tag` has not reset the window yet.
                Head::fresh(tag)
            } else {
                return None;
            };
            let next = base.after(sample, u64::from(self.size()));
            match self.head.compare_exchange_weak(
                current,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.slots[(base.seq() & self.mask) as usize].store(next.0, Ordering::Release);
                    return Some(Recorded {
                        head: u128::from(next.0),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether the window now is of generation `tag`, full, and holds neither a failure nor a
    /// slow call: a success recorded now would change nothing (see `clean`). Reads only.
    #[inline]
    pub(crate) fn is_clean(&self, tag: u8) -> bool {
        self.clean(self.head.load(Ordering::Acquire), tag)
    }

    /// Whether `head` is of generation `tag` and its window is full and holds neither a failure
    /// nor a slow call.
    ///
    /// Skipping a success then keeps the window exact. The recorded calls are the calls made
    /// with some successes left out, each left out while the last `size` recorded calls were
    /// all successes. By induction the last `size` recorded calls are always the last `size`
    /// calls made: a recorded call joins both alike, and a skipped success leaves both made of
    /// `size` successes. A skipped call is ordered at its read of the head, before any record
    /// that changes it.
    #[inline]
    fn clean(&self, head: u64, tag: u8) -> bool {
        let head = Head(head);
        // Only once the window slides: a head that is not full would report reaching the
        // minimum again.
        if head.tag() != tag || !head.full() {
            return false;
        }
        let base_seq = head.seq().wrapping_sub(u64::from(self.size())) & SEQ_MASK;
        let slot = base_seq.wrapping_sub(1) & self.mask;
        let base = Head(self.slots[slot as usize].load(Ordering::Acquire));
        // The baseline of this very head (a stale slot holds another generation or sequence
        // number), with the same cumulative failures and slow calls: none in the window.
        let same = ((1 << (2 * COUNT_BITS)) - 1) | (u64::MAX << TAG_SHIFT);
        (base.0 ^ head.0) & same == 0 && base.seq() == base_seq
    }

    /// The window right after the call that produced `head`; `None` while the baseline is
    /// unpublished.
    pub(crate) fn totals_at(&self, head: u64) -> Option<Totals> {
        let head = Head(head);
        if !head.full() {
            return Some(Totals {
                calls: head.seq(),
                failed: head.failed(),
                slow: head.slow(),
            });
        }
        let size = u64::from(self.size());
        // The baseline is the head after call `seq - size - 1`: its own sequence is `seq - size`.
        let base_seq = head.seq().wrapping_sub(size) & SEQ_MASK;
        let slot = base_seq.wrapping_sub(1) & self.mask;
        let base = Head(self.slots[slot as usize].load(Ordering::Acquire));
        if base.tag() != head.tag() || base.seq() != base_seq {
            return None;
        }
        Some(Totals {
            calls: size,
            failed: head.failed().wrapping_sub(base.failed()) & COUNT_MASK,
            slow: head.slow().wrapping_sub(base.slow()) & COUNT_MASK,
        })
    }

    /// The head now.
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The generation of a head.
    pub(crate) const fn tag_of(head: u64) -> u8 {
        Head(head).tag()
    }

    /// The window after `head` when its own baseline is missing (a writer preempted between its
    /// compare-and-swap and its store hides one baseline until it runs again): the last calls
    /// after the nearest newer baseline that is published, exactly, so a slightly shorter
    /// window. `None` if none of the next 64 is.
    pub(crate) fn totals_near(&self, head: u64) -> Option<Totals> {
        let head = Head(head);
        if !head.full() {
            return None;
        }
        let size = u64::from(self.size());
        for shrink in 1..size.min(64) {
            let base_seq = head.seq().wrapping_sub(size - shrink) & SEQ_MASK;
            let slot = base_seq.wrapping_sub(1) & self.mask;
            let base = Head(self.slots[slot as usize].load(Ordering::Acquire));
            if base.tag() == head.tag() && base.seq() == base_seq {
                return Some(Totals {
                    calls: size - shrink,
                    failed: head.failed().wrapping_sub(base.failed()) & COUNT_MASK,
                    slow: head.slow().wrapping_sub(base.slow()) & COUNT_MASK,
                });
            }
        }
        None
    }

    /// Whether the call that produced `head` brought the window to `minimum` calls.
    #[inline]
    pub(crate) fn reached(&self, head: u64, minimum: u64) -> bool {
        let head = Head(head);
        !head.full() && head.seq() == minimum
    }

    /// The current contents of generation `tag` (if a baseline is missing, of a slightly
    /// shorter window: see `totals_near`).
    pub(crate) fn totals(&self, tag: u8) -> Totals {
        for attempt in 0..1000 {
            let head = self.head.load(Ordering::Acquire);
            if Head(head).tag() != tag {
                return Totals::default();
            }
            if let Some(totals) = self.totals_at(head).or_else(|| self.totals_near(head)) {
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

    pub(crate) fn reset(&self, tag: u8) {
        let mut current = self.head.load(Ordering::Acquire);
        loop {
            let seen = Head(current).tag();
            if seen == tag || tag_is_newer(seen, tag) {
                return;
            }
            match self.head.compare_exchange_weak(
                current,
                Head::fresh(tag).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
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
    const SLOW: Sample = Sample {
        failed: false,
        slow: true,
    };

    fn record(w: &CountWindow, sample: Sample) -> Totals {
        let r = w.record(0, sample).expect("current generation");
        w.totals_at(r.head as u64).expect("published")
    }

    fn totals(calls: u64, failed: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failed,
            slow,
        }
    }

    #[test]
    fn counts_up_to_its_size_then_evicts_the_oldest() {
        let w = CountWindow::new(5);
        assert_eq!(record(&w, FAIL), totals(1, 1, 0));
        assert_eq!(record(&w, FAIL), totals(2, 2, 0));
        assert_eq!(record(&w, SLOW), totals(3, 2, 1));
        assert_eq!(record(&w, OK), totals(4, 2, 1));
        assert_eq!(record(&w, OK), totals(5, 2, 1));
        // The first failure leaves.
        assert_eq!(record(&w, OK), totals(5, 1, 1));
        assert_eq!(record(&w, OK), totals(5, 0, 1));
        // The slow call leaves.
        assert_eq!(record(&w, OK), totals(5, 0, 0));
        assert_eq!(w.totals(0), totals(5, 0, 0));
    }

    #[test]
    fn stays_exact_past_every_counter_wrap() {
        // 2^21 sequence numbers and 2^17 counter values wrap many times over.
        let w = CountWindow::new(3);
        let pattern = [FAIL, OK, SLOW, FAIL, FAIL, OK, OK];
        let mut last = [OK; 3];
        for i in 0..3_000_000usize {
            let sample = pattern[i % pattern.len()];
            let t = record(&w, sample);
            last.rotate_left(1);
            last[2] = sample;
            let calls = (i as u64 + 1).min(3);
            let failed = last
                .iter()
                .rev()
                .take(calls as usize)
                .filter(|s| s.failed)
                .count();
            let slow = last
                .iter()
                .rev()
                .take(calls as usize)
                .filter(|s| s.slow)
                .count();
            assert_eq!(t, totals(calls, failed as u64, slow as u64), "call {i}");
        }
    }

    #[test]
    fn a_missing_baseline_gives_the_exact_totals_of_a_shorter_window() {
        let w = CountWindow::new(4);
        for sample in [FAIL, OK, SLOW, FAIL, OK, FAIL] {
            record(&w, sample);
        }
        let head = w.head();
        // The window is the last 4 calls: SLOW, FAIL, OK, FAIL. Its baseline (after call 2) is
        // lost, as if its writer had been preempted before its store.
        w.slots[1].store(u64::MAX, Ordering::Release);
        assert_eq!(w.totals_at(head), None);
        assert_eq!(w.totals_near(head), Some(totals(3, 2, 0)));
        assert_eq!(w.totals(0), totals(3, 2, 0));
    }

    #[test]
    fn a_window_of_one_holds_the_last_call() {
        let w = CountWindow::new(1);
        assert_eq!(record(&w, FAIL), totals(1, 1, 0));
        assert_eq!(record(&w, OK), totals(1, 0, 0));
        assert_eq!(record(&w, SLOW), totals(1, 0, 1));
    }

    #[test]
    fn skips_a_success_only_into_a_clean_window() {
        let w = CountWindow::new(3);
        // Until the window slides, every success is written.
        for calls in [1, 2, 3, 3] {
            let before = w.head();
            assert_eq!(record(&w, OK), totals(calls, 0, 0));
            assert_ne!(w.head(), before);
        }
        // Full of successes: a success leaves the head as it was.
        let head = w.head();
        assert_eq!(record(&w, OK), totals(3, 0, 0));
        assert_eq!(w.head(), head);
        // A failure is written, and so is every success while it is in the window.
        assert_eq!(record(&w, FAIL), totals(3, 1, 0));
        for expected in [totals(3, 1, 0), totals(3, 1, 0), totals(3, 0, 0)] {
            let before = w.head();
            assert_eq!(record(&w, OK), expected);
            assert_ne!(w.head(), before);
        }
        // Clean again: skipped; a slow call makes it unclean.
        let head = w.head();
        record(&w, OK);
        assert_eq!(w.head(), head);
        assert_eq!(record(&w, SLOW), totals(3, 0, 1));
        assert_ne!(w.head(), head);
        // A stale generation is never skipped, only refused.
        w.reset(1);
        assert!(w.record(0, OK).is_none());
    }

    #[test]
    fn matches_a_plain_list_of_the_last_calls() {
        // Every size up to 9, a long pseudo-random run of mostly successes (so both the skipped
        // and the written paths run), against the last `size` calls kept in a list.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for size in 1..10 {
            let w = CountWindow::new(size);
            let mut last = std::collections::VecDeque::new();
            for i in 0..50_000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let sample = match state % 16 {
                    0 => FAIL,
                    1 => SLOW,
                    2 => Sample {
                        failed: true,
                        slow: true,
                    },
                    _ => OK,
                };
                last.push_back(sample);
                if last.len() > size as usize {
                    last.pop_front();
                }
                let failed = last.iter().filter(|s| s.failed).count() as u64;
                let slow = last.iter().filter(|s| s.slow).count() as u64;
                let expected = totals(last.len() as u64, failed, slow);
                assert_eq!(record(&w, sample), expected, "size {size}, call {i}");
                assert_eq!(w.totals(0), expected, "size {size}, call {i}");
            }
        }
    }

    #[test]
    fn reaching_the_minimum_is_reported_once() {
        let w = CountWindow::new(4);
        let reached: Vec<bool> = (0..8)
            .map(|_| {
                let r = w.record(0, OK).unwrap();
                w.reached(r.head as u64, 3)
            })
            .collect();
        assert_eq!(
            reached,
            [false, false, true, false, false, false, false, false]
        );
    }

    #[test]
    fn reset_starts_an_empty_generation_and_refuses_stale_calls() {
        let w = CountWindow::new(10);
        record(&w, FAIL);
        record(&w, FAIL);
        w.reset(1);
        assert_eq!(w.totals(1), totals(0, 0, 0));
        assert_eq!(w.totals(0), Totals::default());
        // A call from generation 0 arrives late: discarded.
        assert!(w.record(0, FAIL).is_none());
        assert_eq!(w.totals(1), totals(0, 0, 0));
        // Resetting to an older or the same generation changes nothing.
        let r = w.record(1, FAIL).unwrap();
        assert_eq!(w.totals_at(r.head as u64), Some(totals(1, 1, 0)));
        w.reset(0);
        w.reset(1);
        assert_eq!(w.totals(1), totals(1, 1, 0));
    }

    #[test]
    fn a_call_of_a_newer_generation_resets_the_window_itself() {
        let w = CountWindow::new(10);
        record(&w, FAIL);
        let r = w.record(2, OK).expect("newer generation");
        assert_eq!(w.totals_at(r.head as u64), Some(totals(1, 0, 0)));
        // The transition's own reset comes late and changes nothing.
        w.reset(2);
        assert_eq!(w.totals(2), totals(1, 0, 0));
    }

    #[test]
    fn slots_of_an_old_generation_are_never_taken_as_baselines() {
        let w = CountWindow::new(2);
        for _ in 0..5 {
            record(&w, FAIL);
        }
        w.reset(1);
        // Generation 1 fills its window: every baseline comes from generation 1.
        assert_eq!(
            w.record(1, OK).map(|r| w.totals_at(r.head as u64)),
            Some(Some(totals(1, 0, 0)))
        );
        assert_eq!(
            w.record(1, OK).map(|r| w.totals_at(r.head as u64)),
            Some(Some(totals(2, 0, 0)))
        );
        assert_eq!(
            w.record(1, FAIL).map(|r| w.totals_at(r.head as u64)),
            Some(Some(totals(2, 1, 0)))
        );
    }

    #[test]
    fn concurrent_recorders_leave_exact_totals() {
        // A window larger than all calls made: its totals must equal the sum of every call.
        let w = std::sync::Arc::new(CountWindow::new(MAX_SIZE));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..16_000u64 {
                        let sample = Sample {
                            failed: t == 0,
                            slow: i % 2 == 0,
                        };
                        let r = w.record(0, sample).unwrap();
                        let seen = w.totals_at(r.head as u64).unwrap();
                        assert!(seen.failed <= seen.calls && seen.slow <= seen.calls);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.totals(0), totals(64_000, 16_000, 32_000));
    }

    #[test]
    fn concurrent_recorders_slide_a_small_window() {
        let w = std::sync::Arc::new(CountWindow::new(100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = std::sync::Arc::clone(&w);
                std::thread::spawn(move || {
                    for i in 0..50_000 {
                        let sample = Sample {
                            failed: i % 3 == 0,
                            slow: false,
                        };
                        let head = w.record(0, sample).unwrap().head as u64;
                        // Exact at this call's head, or, if a whole window of calls overtook
                        // this thread, at a later head: never missing, never inconsistent.
                        let h = Head(head);
                        let expected = if h.full() { 100 } else { h.seq() };
                        let t = match w.totals_at(head) {
                            Some(t) => {
                                assert_eq!(t.calls, expected);
                                t
                            }
                            None => w.totals_near(head).unwrap_or_else(|| w.totals(0)),
                        };
                        assert!(t.calls > expected.saturating_sub(64) && t.calls <= 100);
                        assert!(t.failed <= t.calls);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.totals(0).calls, 100);
        // Whatever interleaving happened, 100 known calls replace it exactly.
        for _ in 0..100 {
            w.record(0, FAIL).unwrap();
        }
        assert_eq!(w.totals(0), totals(100, 100, 0));
    }

    #[test]
    fn concurrent_recorders_across_a_reset_count_only_their_generation() {
        let w = std::sync::Arc::new(CountWindow::new(MAX_SIZE));
        let go = std::sync::Arc::new(std::sync::Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (w, go) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    // Record in generation 0 until it is closed, then in generation 1, as
                    // calls admitted after the transition would.
                    let (mut tag, mut in_new) = (0, 0u64);
                    for _ in 0..10_000 {
                        match w.record(tag, FAIL) {
                            Some(_) if tag == 1 => in_new += 1,
                            Some(_) => {}
                            None => {
                                tag = 1;
                                w.record(1, FAIL).unwrap();
                                in_new += 1;
                            }
                        }
                    }
                    in_new
                })
            })
            .collect();
        go.wait();
        w.reset(1);
        let in_new: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(w.totals(1), totals(in_new, in_new, 0));
        assert!(w.record(0, OK).is_none());
    }
}
