//! The metrics recorder of the run: a real one (Prometheus's), installed once at the start,
//! before any breaker is built (a breaker takes its metric handles when it is built).
//!
//! The exporter's users run its upkeep every few seconds on a background task; here it runs
//! between batches, off the clock, so the histograms' samples are drained as they would be and
//! do not pile up in memory, and the draining does not take a core from a measured task.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs Prometheus's recorder as the global one.
pub(crate) fn install() -> Result<(), String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("installing the Prometheus recorder: {e}"))?;
    HANDLE
        .set(handle)
        .map_err(|_| "the Prometheus recorder was installed twice".to_owned())
}

/// Drains the recorder's histograms (its upkeep), if it is installed.
pub(crate) fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// How many samples the recorder holds for the breaker `name`'s call-duration histogram, in
/// its rendered scrape (`…_count`), if it has any: shows that a row's calls were recorded.
pub(crate) fn durations_recorded(name: &str) -> Option<u64> {
    total(
        "breakwater_circuit_breaker_call_duration_seconds_count{",
        name,
    )
}

/// How many calls the breaker `name` counted (every outcome), if it counted any.
pub(crate) fn calls_counted(name: &str) -> Option<u64> {
    total("breakwater_circuit_breaker_calls_total{", name)
}

/// The sum of the series starting with `prefix` and labelled with the breaker `name`.
fn total(prefix: &str, name: &str) -> Option<u64> {
    let rendered = HANDLE.get()?.render();
    rendered
        .lines()
        .filter(|line| line.starts_with(prefix) && line.contains(&format!("breaker=\"{name}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .reduce(|a, b| a + b)
}
