//! What a breaker does with what its policy reports: events for subscribers, `tracing`
//! lines, and metrics through the `metrics` facade. The policy decides; this tells.

pub(crate) mod events;
pub(crate) mod log;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
