//! The atomics and the locks of the state machine, the count window and the slots: the standard
//! library's, or [loom]'s when the crate is built with `RUSTFLAGS="--cfg breakwater_loom"`, so
//! the loom models in `tests/loom.rs` explore every interleaving of the breaker's own code (see
//! TESTING.md). Nothing else changes between the two builds.
//!
//! [loom]: https://docs.rs/loom

#[cfg(breakwater_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(breakwater_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(breakwater_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(breakwater_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
