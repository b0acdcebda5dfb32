//! Slots: the part of a breaker that a call in flight reaches without a reference count.
//!
//! # Why slots
//!
//! A breaker generation is owned: handles, layers and services hold it in an
//! [`Arc`], and it is freed when the last of them goes. A response future could hold an `Arc`
//! too, but cloning one per call is two atomic read-modify-writes on one shared cache line
//! (30–60 ns when two threads call the same breaker), more than the whole closed path is
//! allowed to cost. So a call admitted on the *clean path* (closed, a count window of
//! successes only, nobody timing or counting calls) holds no reference count at all: it holds a
//! `&'static Slot` and the epoch it was admitted in.
//!
//! A slot is the state word and the window: exactly what such a call reads when it ends. Its
//! success into a clean window is then one load of the state word (still this epoch?) and the
//! window's read-only check, with no shared write. Anything else (a failure, a success into a
//! window that has failures in it) reaches the generation through the slot's `owner`, a weak
//! reference behind a lock: rare, since a call is admitted on the clean path only while the
//! window is clean, and calls admitted otherwise hold their `Arc`.
//!
//! # Recycling, not leaking
//!
//! Slots are allocated once and never freed, but they are not leaked: when a generation is
//! dropped, its slot moves to the epoch after the last one it handed out (so every call still
//! holding it finds its outcome stale and discards it) and goes back to a pool, reachable from a
//! static, for the next breaker whose window needs a ring of the same length (count windows of
//! 100 and of 120 calls share one: rings are powers of two). The pool never holds more slots
//! of a shape than were in use at once, and there are few shapes (16 of count window and 12 of time
//! window: one per power of two up to the largest window), so its memory is bounded by the peak number of live breakers of each shape;
//! everything else (name, configuration, subscribers, metric handles, backoff and rejection
//! counters) is freed with the generation.

use std::collections::HashMap;
#[cfg(not(breakwater_loom))]
use std::sync::Mutex;
use std::sync::{Arc, PoisonError, Weak};

use super::Admission;
use super::config::WindowKind;
use super::state::{CircuitState, Epoch, Word};
use super::window::{CountWindow, Padded, TimeWindow, Window};
use crate::classify::Outcome;
use crate::sync::{AtomicU64, Mutex as SyncMutex};

/// The state word and the window of one breaker generation at a time.
pub(crate) struct Slot {
    /// The state word: read by every admission, written only by transitions and probes.
    pub(crate) state: Padded<AtomicU64>,
    pub(crate) window: Window,
    shape: Shape,
    /// The generation using the slot, for calls that hold no reference to it, and the count
    /// of owners the slot has had (which tells a call of an earlier owner apart, whatever the
    /// epochs: they are 21 bits, and would wrap after a million owners).
    owner: SyncMutex<(u64, Option<Weak<dyn Owner>>)>,
    /// The count of owners, to read without the lock.
    owners: AtomicU64,
}

/// The generation that uses a slot, as a call holding only the slot reaches it.
pub(crate) trait Owner: Send + Sync {
    /// Records the outcome of an untimed call admitted as `admission`.
    fn record(&self, admission: Admission, outcome: Outcome);
}

/// What a slot fits: a count or a time window, and the length of its ring. A count window of
/// 100 calls and one of 120 share a ring of 256 baselines, and so a slot: the shapes are few
/// (powers of two), and so is what the pool can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    count: bool,
    ring: usize,
}

impl Shape {
    fn of(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Count(size) => Shape {
                count: true,
                ring: CountWindow::ring_for(size),
            },
            WindowKind::Time(seconds) => Shape {
                count: false,
                ring: TimeWindow::ring_for(seconds),
            },
        }
    }
}

/// Free slots, by shape.
type Free = HashMap<Shape, Vec<&'static Slot>>;

/// The pool: a static, so that every free slot stays reachable.
#[cfg(not(breakwater_loom))]
static POOL: Mutex<Option<Free>> = Mutex::new(None);

#[cfg(not(breakwater_loom))]
fn with_pool<T>(f: impl FnOnce(&mut Free) -> T) -> T {
    // The pool is a list: valid whatever a panicking thread left half done.
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    f(pool.get_or_insert_with(HashMap::new))
}

// Loom models run side by side in one process, each on a thread of its own: each gets a pool
// of its own, so that no model takes a slot whose atomics belong to another.
#[cfg(breakwater_loom)]
thread_local! {
    static POOL: std::cell::RefCell<Free> = std::cell::RefCell::new(HashMap::new());
}

#[cfg(breakwater_loom)]
fn with_pool<T>(f: impl FnOnce(&mut Free) -> T) -> T {
    POOL.with(|pool| f(&mut pool.borrow_mut()))
}

impl Slot {
    /// A slot for a new generation `owner` with a window of `kind`, starting in `state` with
    /// an empty window at `now` (nanoseconds on the owner's timeline): a free slot of that shape
    /// if there is one, or a new one.
    pub(crate) fn take(
        kind: WindowKind,
        owner: Weak<dyn Owner>,
        state: CircuitState,
        now: u64,
    ) -> &'static Slot {
        let shape = Shape::of(kind);
        let free = with_pool(|pool| pool.get_mut(&shape)?.pop());
        if let Some(slot) = free {
            match (kind, &slot.window) {
                (WindowKind::Count(size), Window::Count(window)) => window.resize(size),
                (WindowKind::Time(seconds), Window::Time(window)) => window.resize(seconds),
                // The shape says which: a count window's slot is pooled apart from a time
                // window's.
                _ => {}
            }
        }
        let slot = free.unwrap_or_else(|| {
            let window = match kind {
                WindowKind::Count(size) => Window::Count(CountWindow::new(size)),
                WindowKind::Time(seconds) => Window::Time(TimeWindow::new(seconds)),
            };
            // Never freed, always reachable: from its generation while in use, from the pool
            // after. See the module docs.
            Box::leak(Box::new(Slot {
                state: Padded(AtomicU64::new(
                    Word::plain(CircuitState::ForcedOpen, Epoch::INITIAL).0,
                )),
                window,
                shape,
                owner: SyncMutex::new((0, None)),
                owners: AtomicU64::new(0),
            }))
        });
        slot.count_owner(Some(owner));
        // A new epoch: calls of an earlier owner are stale here, and so are their outcomes.
        let epoch = slot.load().epoch().next();
        slot.window.reset(epoch.window_tag(), now);
        slot.state.store(
            Word::plain(state, epoch).0,
            std::sync::atomic::Ordering::Release,
        );
        slot
    }

    /// Gives the slot back when its generation is dropped: calls still holding it become stale.
    pub(crate) fn give_back(&'static self) {
        self.lock_owner().1 = None;
        self.retire();
        with_pool(|pool| pool.entry(self.shape).or_default().push(self));
    }

    /// Counts a new owner without changing the generation that owns the slot: a keyed layer's
    /// breaker recycled for another key, whose calls for the old key must find nobody however
    /// many times it is recycled (the epoch alone would wrap). Before the state word moves on.
    pub(crate) fn renew_owner(&self) {
        self.count_owner(None);
    }

    /// One more owner: `owner` if given, the same generation otherwise.
    fn count_owner(&self, owner: Option<Weak<dyn Owner>>) {
        let mut owned = self.lock_owner();
        owned.0 += 1;
        if let Some(owner) = owner {
            owned.1 = Some(owner);
        }
        self.owners
            .store(owned.0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Marks the slot's generation retired, in a new epoch: permits it handed out are stale,
    /// and whoever finds it retired asks its successor. Returns the state it left.
    pub(crate) fn retire(&self) -> CircuitState {
        let mut word = self.load();
        loop {
            let next = Word::retired(word.epoch().next());
            match self.swap(word, next) {
                Ok(()) => return word.state(),
                Err(actual) => word = actual,
            }
        }
    }

    fn lock_owner(&self) -> crate::sync::MutexGuard<'_, (u64, Option<Weak<dyn Owner>>)> {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Which owner of the slot this is. Read by a caller that holds the owner (so the count
    /// cannot change meanwhile), after the state word.
    #[inline]
    pub(crate) fn owners(&self) -> u64 {
        self.owners.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The generation using the slot, if it is still the owner that admitted a call (a call
    /// admitted by an earlier one finds nobody: its outcome is discarded). `admitted` is told
    /// the slot's owner count now, and says whether it is the one that admitted the call.
    pub(crate) fn owner_if(&self, admitted: impl FnOnce(u64) -> bool) -> Option<Arc<dyn Owner>> {
        let owned = self.lock_owner();
        if !admitted(owned.0) {
            return None;
        }
        owned.1.as_ref()?.upgrade()
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        Word(self.state.load(std::sync::atomic::Ordering::Acquire))
    }

    #[inline]
    pub(crate) fn swap(&self, current: Word, next: Word) -> Result<(), Word> {
        use std::sync::atomic::Ordering;
        self.state
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Word)
    }

    /// Whether the count window, of `epoch`'s generation, is full of successes (the caller
    /// has just read the state word). Reads only.
    #[inline]
    pub(crate) fn window_is_clean(&self, epoch: Epoch) -> bool {
        match &self.window {
            Window::Count(window) => window.is_clean(epoch.window_tag()),
            Window::Time(_) => false,
        }
    }

    /// Whether a success of a call admitted closed in `epoch` would change nothing: the
    /// breaker is still in that state and its count window is full of successes. Reads only.
    #[inline]
    pub(crate) fn success_is_noop(&self, epoch: Epoch) -> bool {
        self.load().epoch() == epoch && self.window_is_clean(epoch)
    }
}

/// Loom models only: forgets the pooled slots. A model runs many executions, and a slot made
/// in an earlier one holds atomics loom no longer knows; each execution starts with an empty
/// pool (the forgotten slots stay allocated: loom builds are for tests).
#[cfg(breakwater_loom)]
#[doc(hidden)]
pub fn forget_pooled_slots() {
    with_pool(HashMap::clear);
}
