//! breakwater: `tower` middleware that keeps a service standing when what it calls fails.
//!
//! - [`CircuitBreaker`]: a lock-free circuit breaker with resilience4j's semantics (count and
//!   time windows, failure and slow-call rates, half-open probes, manual states), as a tower
//!   [`Layer`](tower_layer::Layer) for any service. See [`circuit_breaker`].
//! - [`classify`]: what a result means to a breaker. For HTTP, `5xx` and errors (timeouts
//!   included) are failures and `4xx` is ignored; for gRPC, `grpc-status` from headers or
//!   trailers decides.
//! - [`timeout`]: [`TimeoutLayer`], with a per-request override, a deadline that can cover the
//!   response body, and a `504` mode for servers.
//! - The [`BreakwaterExt`] trait: `ServiceBuilder::new().circuit_breaker(&b).deadline(d)`.
//! - [`clock`]: breakers follow `tokio::time::pause()` in tests, or a clock of your own.
//! - [`chaos`]: a fault-injection layer (failures, lost responses, latency), seeded so a run
//!   replays, off unless enabled.
//! - [`registry`]: named breakers from resilience4j's `application.yml` (or TOML), reloadable,
//!   with a health report of them all.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::{CircuitBreaker, CircuitOpen};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder("pg-payment")
//!     .count_window(10)
//!     .minimum_calls(10)
//!     .failure_rate_threshold(50.0)
//!     .wait_duration_in_open(Duration::from_secs(30))
//!     .permitted_calls_in_half_open(5)
//!     .build()?;
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::io::Error>(http::Response::builder().status(503).body(()).unwrap())
//!     });
//!
//! for _ in 0..10 {
//!     client.ready().await?.call(http::Request::new(())).await?;
//! }
//! let error = client.ready().await?.call(http::Request::new(())).await.unwrap_err();
//! assert!(error.is::<CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # Ownership, probes and the end of a stream
//!
//! - A breaker is owned by its handles, layers and services: once none is left, its memory is
//!   given back and its event streams end. A call in flight does not keep it alive (its outcome
//!   is then discarded), and the closed path updates no reference count per call. See
//!   [Sharing, lifetime and cost](circuit_breaker#sharing-lifetime-and-cost).
//! - A half-open probe goes only to a service whose inner service is ready. See
//!   [Probes go where they can be used](circuit_breaker#probes-go-where-they-can-be-used).
//! - With [`end_of_stream`](CircuitBreakerLayer::end_of_stream), a call is recorded when its
//!   response body ends; a body dropped before its end records what its head said. See
//!   [When an outcome is recorded](circuit_breaker#when-an-outcome-is-recorded).
//!
//! # Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tonic` | a rejected call reaches a tonic client as `UNAVAILABLE`, a timeout as `DEADLINE_EXCEEDED` |
//! | `tower-http` | `CircuitBreaker::tower_http_layer`: any tower-http `MakeClassifier` drives a breaker |
//! | `yaml` | `Registry::from_yaml` (and `.yml` files for `Registry::from_path`) |
//! | `toml` | `Registry::from_toml` (and `.toml` files) |
//! | `serde` | `Serialize` for [`registry::HealthReport`] and [`CircuitState`] |
//! | `metrics` | the calls, states and durations of the breakers that ask for it, through the [`metrics`](https://docs.rs/metrics) facade (below) |
//!
//! # Metrics
//!
//! The `metrics` feature makes metrics available; a breaker records them when it is asked to:
//! `Builder::metrics(true)` (counts and state gauges) and `Builder::metrics_durations(true)`
//! (also the duration histogram), or `Registry::with_metrics` and
//! `Registry::with_metrics_durations` for every breaker of a registry (these exist with the
//! feature). A breaker that does
//! not ask pays nothing, whoever turned the feature on (cargo unifies features: one crate of
//! the build asking for it turns it on for all). A breaker that asks registers its handles
//! once, when it is built, with the recorder installed then (install it first), labelled
//! `breaker` = the breaker's name:
//!
//! | metric | kind | other labels |
//! |---|---|---|
//! | `breakwater_circuit_breaker_calls_total` | counter | `outcome` = `success`, `failure`, `ignored` or `rejected` |
//! | `breakwater_circuit_breaker_slow_calls_total` | counter | |
//! | `breakwater_circuit_breaker_state` | gauge: 1 for the current state, 0 for the others; for a keyed layer, how many of its keys are in each state (give a keyed layer and a breaker different names, or their series add up) | `state` = `closed`, `open`, `half_open`, `disabled`, `forced_open` or `metrics_only` |
//! | `breakwater_circuit_breaker_call_duration_seconds` | histogram (with `metrics_durations` only) | `outcome` = `success`, `failure` or `ignored` |
//!
//! Every call that ends is counted, even one whose outcome the window discards (it ended
//! after a transition), and calls through a disabled breaker; so a breaker that records
//! metrics reaches its generation on every call (its calls do not take the clean path). The
//! histogram needs every call timed: two clock reads per call. What each costs, measured side
//! by side with the peers, is in BENCHMARKS.md ("Metrics off and on, one thread").
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
// Library code handles its errors; tests and examples may unwrap.
#![warn(clippy::unwrap_used)]

mod builder;
pub mod chaos;
pub mod circuit_breaker;
pub mod classify;
pub mod clock;
pub mod registry;
mod sealed;
mod sync;
pub mod timeout;

pub use builder::BreakwaterExt;
pub use circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, CircuitOpen, CircuitState,
    ConfigError, MetricsSnapshot,
};
pub use registry::Registry;
pub use timeout::{Elapsed, TimeoutLayer};

/// A type-erased error, as tower layers return them: `Box<dyn Error + Send + Sync>`, the same
/// type as `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// The README's snippets use every feature.
#[cfg(all(doctest, feature = "yaml", feature = "tonic"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
