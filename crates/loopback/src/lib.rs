//! Servers on 127.0.0.1 for breakwater's examples and end-to-end tests.
//!
//! - [`FlakyServer`]: an HTTP server whose answer can be switched while it runs: a status, a
//!   delay, or headers followed by a body that stalls.
//! - [`inventory`]: a gRPC service (`inventory.Inventory/Reserve`, hand-written prost messages,
//!   no `protoc`) whose answer can be switched too, with the status in the headers or in the
//!   trailers, and a client for it.
//!
//! Both bind `127.0.0.1:0` and stop when dropped.

mod flaky;
pub mod inventory;

pub use flaky::{Answer, FlakyServer};
