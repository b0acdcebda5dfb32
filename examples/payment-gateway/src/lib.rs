//! The payment system of breakwater's seeds, runnable offline: a mock PG (payment gateway), a
//! PG client protected by breakwater, a store on SQLite or PostgreSQL through sqlx, the confirm
//! flow with compensation, a reconciler, an axum API, a demo that drives it all through a PG
//! outage, and a chaos run that audits the money under injected faults.
//!
//! ```text
//!  customer ──► axum API ──► confirm flow ──► store (SQLite): prepare, one transaction
//!                                  │
//!                                  ├────────► PG client ──► mock PG   (no transaction open)
//!                                  │          breaker ► timeout ► hyper-util client
//!                                  └────────► store: complete, one transaction
//! ```
//!
//! - [`mock_pg`]: the PG, on loopback, with switchable faults and a ledger.
//! - [`pg_client`]: the protected client, whose outcomes are [`PgError::Rejected`] (4xx, not
//!   counted by the breaker), [`PgError::ExternalApiFailed`] (5xx, timeout, transport: counted;
//!   the PG may have charged), [`PgError::InProgress`] (the PG still processes a request with
//!   the same idempotency key) and [`PgError::Unavailable`] (the breaker is open: no request
//!   made).
//! - [`store`]: orders, payments and subscriptions with explicit states; times from the
//!   database's clock.
//! - [`confirm`]: prepare → PG → complete, and the refund (its intent written first) when a
//!   charge cannot be recorded: the one policy for a charge not recorded.
//! - [`reconcile`]: settles what the flow left unsettled by asking the PG, retries refunds,
//!   checks `done` payments.
//! - [`billing`]: seed 2's subscriptions, charged with a billing key once per period.
//! - [`crash`]: crashes injected at the flows' step boundaries.
//! - [`chaos_run`]: N confirmations (or subscriptions) under faults, then an audit of the DB
//!   against the PG's ledger.
//! - [`api`]: the service's HTTP API, `/health` and `/metrics`.
//! - [`demo`]: the phases, the timeline and the chart.
//! - [`serve`]: the service as a team runs it: settings from flags, environment and file,
//!   health, metrics, logs and graceful shutdown; with `--redis-url`, one instance of a fleet.
//! - [`fleet_run`]: three instances sharing one database and one Redis through a PG outage,
//!   the fleet off and on, side by side.
//!
//! Run with: `cargo run -p payment-gateway`.

pub mod api;
pub mod app;
pub mod billing;
pub mod chaos_run;
pub mod confirm;
pub mod crash;
pub mod demo;
pub mod fleet_run;
pub mod mock_pg;
pub mod pg_answer;
pub mod pg_client;
pub mod reconcile;
pub mod serve;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use confirm::{ConfirmError, PaymentConfirm};
pub use pg_client::{PgClient, PgError, PgSettings};
pub use store::{PaymentState, Store};

/// The configuration file shipped with the example (the seed's values).
pub const CONFIG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/application.yml");

/// The name of the breaker in front of the PG, as the configuration file names its instance.
pub const PG_BREAKER: &str = "beeceptor-payment";

/// The name of the chaos on the PG client (`breakwater.chaos.instances.pg-client`).
pub const PG_CHAOS: &str = "pg-client";

/// The name of the chaos on the payment flow's database writes
/// (`breakwater.chaos.instances.database`).
pub const DB_CHAOS: &str = "database";
