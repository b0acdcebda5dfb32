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

    #[inline]
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
#[path = "count_tests.rs"]
mod tests;
