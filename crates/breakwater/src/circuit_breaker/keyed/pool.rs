//! The breakers of a keyed layer: at most `max_keys` of them, made on demand, evicted when
//! idle or when room is needed, and recycled for the next new key rather than built anew (a
//! key churning through a busy layer costs no allocation). They are freed with the layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::CircuitBreaker;
use crate::CircuitState;
use crate::circuit_breaker::Builder;
use crate::circuit_breaker::generation::Core;
use crate::clock::Clock;

/// One key and its breaker.
pub(crate) struct Entry {
    pub(crate) key: Arc<str>,
    pub(crate) breaker: CircuitBreaker,
    /// The breaker's generation, kept here so that a call reaches it without the handle's
    /// lock (a keyed breaker is never reconfigured: it is made from the layer's template).
    core: Arc<Core>,
    /// Set when the entry leaves the pool: its breaker is about to serve another key.
    evicted: AtomicBool,
    /// The pool's tick when the entry was last used.
    seen: AtomicU32,
}

impl Entry {
    /// The breaker's generation.
    #[inline]
    pub(crate) fn core(&self) -> Arc<Core> {
        Arc::clone(&self.core)
    }

    /// Whether the entry left the pool. A caller that took a permit from the breaker and then
    /// finds the entry still in the pool knows the permit is for this key: eviction marks the
    /// entry before it recycles the breaker (which makes older permits stale).
    #[inline]
    pub(crate) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Marks the entry used in the pool's current tick (a store only when the tick moved on).
    #[inline]
    pub(crate) fn touch(&self, pool: &Pool) {
        let tick = pool.tick.load(Ordering::Relaxed);
        if self.seen.load(Ordering::Relaxed) != tick {
            self.seen.store(tick, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Pool {
    pub(crate) name: String,
    template: Builder,
    clock: Arc<dyn Clock>,
    pub(crate) max_keys: usize,
    pub(crate) idle_timeout: Duration,
    /// A logical clock, moved on by every new key and every sweep; entries remember the tick
    /// they were last used in. It orders uses between new keys (for least-recently-used
    /// eviction) without a shared write per call.
    tick: AtomicU32,
    map: RwLock<Map>,
}

struct Map {
    entries: HashMap<Arc<str>, Arc<Entry>>,
    /// Recycled breakers, waiting for a key.
    free: Vec<CircuitBreaker>,
    last_sweep: Instant,
    /// The ticks of the last sweeps, oldest first (at most `SWEEPS`).
    sweeps: std::collections::VecDeque<u32>,
}

/// Sweeps come every half idle timeout; a sweep evicts the entries unused since the sweep two
/// sweeps before it: they were idle for at least the idle timeout (and at most one and a half
/// times it, when sweeps come on time). The map keeps the ticks of the last three sweeps.
const SWEEPS: usize = 3;

impl Pool {
    /// `template` is checked already.
    pub(crate) fn new(
        template: Builder,
        clock: Arc<dyn Clock>,
        max_keys: usize,
        idle_timeout: Duration,
    ) -> Self {
        let now = clock.now();
        Self {
            name: template.name().to_owned(),
            template,
            clock,
            max_keys,
            idle_timeout,
            tick: AtomicU32::new(0),
            map: RwLock::new(Map {
                entries: HashMap::new(),
                free: Vec::new(),
                last_sweep: now,
                sweeps: std::collections::VecDeque::with_capacity(SWEEPS + 1),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        // Every change to the map is complete before the lock is released, or not started.
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of `key`, made (and room made for it) if there is none.
    pub(crate) fn entry(&self, key: &str) -> Arc<Entry> {
        if let Some(entry) = self.read().entries.get(key) {
            return entry.clone();
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.entries.get(key) {
            return entry.clone();
        }
        self.sweep(&mut map);
        if map.entries.len() >= self.max_keys {
            self.evict_one(&mut map);
        }
        // Uses before this key and after it are told apart.
        self.tick.fetch_add(1, Ordering::Relaxed);
        let breaker = match map.free.pop() {
            Some(breaker) => {
                #[cfg(feature = "metrics")]
                breaker.core().gauge(true);
                breaker
            }
            // Fewer than `max_keys` breakers exist: entries and free ones never exceed it.
            None => self.template.clone().build_checked(),
        };
        let key: Arc<str> = key.into();
        *breaker
            .core()
            .shared
            .key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(key.clone());
        let entry = Arc::new(Entry {
            key: key.clone(),
            core: breaker.core(),
            breaker,
            evicted: AtomicBool::new(false),
            seen: AtomicU32::new(self.tick.load(Ordering::Relaxed)),
        });
        map.entries.insert(key, entry.clone());
        entry
    }

    /// Every half idle timeout: a new tick, and out with the entries unused since the sweep
    /// two sweeps ago.
    fn sweep(&self, map: &mut Map) {
        let now = self.clock.now();
        if now.saturating_duration_since(map.last_sweep) < self.idle_timeout / 2 {
            return;
        }
        map.last_sweep = now;
        let tick = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        map.sweeps.push_back(tick);
        if map.sweeps.len() > SWEEPS {
            map.sweeps.pop_front();
        }
        if map.sweeps.len() < SWEEPS {
            return;
        }
        let Some(&since) = map.sweeps.front() else {
            return;
        };
        // Used before the sweep of tick `since`: ticks are compared on their ring.
        let idle: Vec<Arc<str>> = map
            .entries
            .iter()
            .filter(|(_, e)| {
                let seen = e.seen.load(Ordering::Relaxed);
                since.wrapping_sub(seen) != 0 && since.wrapping_sub(seen) < u32::MAX / 2
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            self.evict(map, &key);
        }
    }

    /// Makes room: out with the least recently used closed breaker, or, when every breaker is
    /// open or half-open, the least recently used of all.
    fn evict_one(&self, map: &mut Map) {
        let tick = self.tick.load(Ordering::Relaxed);
        let victim = map
            .entries
            .iter()
            .max_by_key(|(_, e)| {
                let closed = e.breaker.state() == CircuitState::Closed;
                (closed, tick.wrapping_sub(e.seen.load(Ordering::Relaxed)))
            })
            .map(|(key, _)| key.clone());
        if let Some(key) = victim {
            self.evict(map, &key);
        }
    }

    fn evict(&self, map: &mut Map, key: &str) {
        let Some(entry) = map.entries.remove(key) else {
            return;
        };
        // Marked first, recycled next: see `Entry::evicted`.
        entry.evicted.store(true, Ordering::Release);
        let core = entry.breaker.core();
        core.recycle();
        *core
            .shared
            .key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        #[cfg(feature = "metrics")]
        core.gauge(false);
        map.free.push(entry.breaker.clone());
        tracing::debug!(breaker = %self.name, key, "keyed circuit breaker evicted");
    }

    /// The keys and their breakers, by key.
    pub(crate) fn entries(&self) -> Vec<(Arc<str>, CircuitBreaker)> {
        let mut entries: Vec<_> = self
            .read()
            .entries
            .values()
            .map(|e| (e.key.clone(), e.breaker.clone()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// The breaker of `key`, if the pool has it.
    pub(crate) fn breaker(&self, key: &str) -> Option<CircuitBreaker> {
        self.read().entries.get(key).map(|e| e.breaker.clone())
    }

    /// How many keys the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// How many breakers the pool has made, in use or free: never more than `max_keys`.
    pub(crate) fn breakers_made(&self) -> usize {
        let map = self.read();
        map.entries.len() + map.free.len()
    }
}
