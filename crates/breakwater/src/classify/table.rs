//! Where an [`HttpClassifier`](super::http::HttpClassifier) with rules of its own keeps them:
//! a table in a pool reachable from a static, so that a call can take the rules with it as a
//! plain number (which table, and which use of it) instead of a reference count.
//!
//! Each call clones its layer's classifier into its future. With rules in an `Arc`, that is
//! two atomic read-modify-writes per call on one cache line that every thread calling the
//! layer shares (measured here: 39 ns against 30 ns a call on one thread, 205 ns against 40 ns
//! with two threads). Here a classifier that owns its rules holds its table (a count of
//! holders, changed when a classifier is cloned or dropped: when a layer makes a service, or a
//! service is cloned); a call holds only a *view*, the table's index and the use it was made
//! for, and reads the rules through it.
//!
//! A table whose last holder goes moves to its next use and waits in the pool for the next
//! classifier, which rewrites its words (under an odd number, then the next even one). A view
//! of an earlier use finds the use changed and reads nothing (the call's outcome is then
//! ignored: the classifier that made the call is gone). Readers check the use after reading
//! the words, as a sequence lock does, so a view never acts on rules half rewritten.
//!
//! The pool never holds more tables than were in use at once, and its memory is reachable from
//! a static (the slots of the breaker do the same: see `circuit_breaker::policy::slot`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The words of one set of rules.
pub(super) const WORDS: usize = 22;

/// Tables per segment; segments are made as the pool grows.
const SEGMENT: usize = 64;
/// At most `SEGMENTS * SEGMENT` tables (about a million sets of rules in use at once).
const SEGMENTS: usize = 16_384;

/// One set of rules, and who holds it.
struct Table {
    /// Even while in use (the use's number), odd while its words are rewritten.
    generation: AtomicU32,
    /// Classifiers holding the table; 0 in the pool.
    holders: AtomicU32,
    words: [AtomicU64; WORDS],
}

impl Table {
    fn new() -> Self {
        Self {
            generation: AtomicU32::new(0),
            holders: AtomicU32::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

static SEGMENTS_MADE: [OnceLock<Box<[Table]>>; SEGMENTS] = [const { OnceLock::new() }; SEGMENTS];

/// Tables made so far, and those free.
struct Pool {
    made: usize,
    free: Vec<u32>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    made: 0,
    free: Vec::new(),
});

fn table(index: u32) -> Option<&'static Table> {
    let index = index as usize;
    SEGMENTS_MADE
        .get(index / SEGMENT)?
        .get()?
        .get(index % SEGMENT)
}

/// A table in use, by its index and its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// Takes a table for `words`, held once.
///
/// # Panics
///
/// When a million sets of rules are in use at once (each classifier with rules of its own
/// that is alive holds one; clones share it).
pub(super) fn take(words: &[u64; WORDS]) -> Held {
    let index = {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        match pool.free.pop() {
            Some(index) => index,
            None => {
                let index = pool.made;
                assert!(
                    index < SEGMENTS * SEGMENT,
                    "breakwater: more than {} HttpClassifiers with rules of their own are in use \
                     at once",
                    SEGMENTS * SEGMENT
                );
                SEGMENTS_MADE[index / SEGMENT]
                    .get_or_init(|| (0..SEGMENT).map(|_| Table::new()).collect());
                pool.made += 1;
                // Below SEGMENTS * SEGMENT, which fits in a u32.
                index as u32
            }
        }
    };
    let Some(table) = table(index) else {
        unreachable!("a table handed out by the pool exists");
    };
    // A free table's generation is even (its last use), and nobody writes it but its taker.
    let odd = table.generation.load(Ordering::Relaxed).wrapping_add(1);
    table.generation.store(odd, Ordering::Relaxed);
    fence(Ordering::Release);
    for (word, value) in table.words.iter().zip(words) {
        word.store(*value, Ordering::Relaxed);
    }
    let generation = odd.wrapping_add(1);
    table.generation.store(generation, Ordering::Release);
    table.holders.store(1, Ordering::Release);
    Held { index, generation }
}

/// One more holder of `held` (the caller holds it: it cannot go meanwhile).
pub(super) fn hold(held: Held) {
    if let Some(table) = table(held.index) {
        table.holders.fetch_add(1, Ordering::Relaxed);
    }
}

/// One holder fewer; the last one gives the table back to the pool.
pub(super) fn release(held: Held) {
    let Some(table) = table(held.index) else {
        return;
    };
    if table.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
        // The next use: views of this one read nothing from now on.
        table.generation.fetch_add(2, Ordering::Release);
        POOL.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free
            .push(held.index);
    }
}

/// The words at `at` of `held`, if the table is still in that use: what a call reads to
/// classify one result (a few words, not the whole table).
#[inline]
pub(super) fn read_words<const N: usize>(held: Held, at: [usize; N]) -> Option<[u64; N]> {
    let table = table(held.index)?;
    if table.generation.load(Ordering::Acquire) != held.generation {
        return None;
    }
    let mut words = [0; N];
    for (word, i) in words.iter_mut().zip(at) {
        *word = table.words.get(i)?.load(Ordering::Relaxed);
    }
    fence(Ordering::Acquire);
    (table.generation.load(Ordering::Relaxed) == held.generation).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_given_back_is_reused_and_old_views_read_nothing() {
        let first = take(&[7; WORDS]);
        let all: [usize; WORDS] = std::array::from_fn(|i| i);
        let read = |held| read_words(held, all);
        assert_eq!(read(first), Some([7; WORDS]));
        hold(first);
        release(first);
        assert_eq!(read(first), Some([7; WORDS]), "one holder left");
        release(first);
        assert_eq!(read(first), None, "no holder left");
        // Taken again (by this test or another at the same time): never this use.
        let second = take(&[9; WORDS]);
        assert_eq!(read(second), Some([9; WORDS]));
        assert_eq!(read(first), None);
        release(second);
    }
}
