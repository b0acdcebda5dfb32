//! The `tracing` lines of a breaker: every transition (`warn` when it opens, `info`
//! otherwise), resets and reconfigurations. Logged whether or not anybody subscribes.

use crate::circuit_breaker::CircuitState;
use crate::circuit_breaker::policy::state::Word;
use crate::circuit_breaker::policy::{NANOS_PER_MS, TransitionCause};

/// The breaker `name` moved from `from` to `to` because of `cause`, at `now` (nanoseconds
/// since it was built).
pub(crate) fn transition(
    name: &str,
    from: CircuitState,
    to: Word,
    cause: TransitionCause,
    now: u64,
) {
    match to.state() {
        CircuitState::Open => {
            let wait_ms = to.open_until_ms().saturating_sub(now / NANOS_PER_MS);
            tracing::warn!(breaker = name, %from, ?cause, wait_ms, "circuit breaker opened: calls fail fast until the wait ends");
        }
        CircuitState::HalfOpen => {
            tracing::info!(breaker = name, %from, ?cause, "circuit breaker half-open: letting probe calls through");
        }
        CircuitState::Closed => {
            tracing::info!(breaker = name, %from, ?cause, "circuit breaker closed");
        }
        state => {
            tracing::info!(breaker = name, %from, to = %state, ?cause, "circuit breaker changed state");
        }
    }
}

/// The breaker `name` was reset from `from`.
pub(crate) fn reset(name: &str, from: CircuitState) {
    tracing::info!(breaker = name, %from, "circuit breaker reset");
}

/// The breaker `name` was reconfigured: it left `from` for `to`.
pub(crate) fn reconfigured(name: &str, from: CircuitState, to: CircuitState) {
    tracing::info!(
        breaker = name,
        %from,
        to = %to,
        "circuit breaker reconfigured: its window starts afresh"
    );
}
