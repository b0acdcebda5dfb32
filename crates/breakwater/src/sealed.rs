//! Seals traits that appear in public bounds but are breakwater's to implement: a trait with
//! `Sealed` as a supertrait can only be implemented inside this crate.

/// The seal.
pub trait Sealed {}
