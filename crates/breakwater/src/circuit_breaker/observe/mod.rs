//! What a breaker does with what its policy reports: events for subscribers, `tracing`
//! lines, and metrics through the `metrics` facade. The policy decides; this tells.

pub(crate) mod events;
pub(crate) mod log;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;

/// Which metrics a breaker records: none unless its builder or its registry asks (feature
/// `metrics`), so that a breaker that does not ask pays nothing, whoever else turned the
/// feature on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Metering {
    /// Counters of calls by outcome, of rejections and of slow calls; the state gauges.
    pub(crate) counts: bool,
    /// Every call timed for the duration histogram (with the counts).
    pub(crate) durations: bool,
}
