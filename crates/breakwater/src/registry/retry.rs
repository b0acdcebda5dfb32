//! resilience4j's retry as a `tower::retry::Policy`, for tower's own `Retry`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use super::limiters::RetrySettings;
use crate::CircuitOpen;
use crate::classify::Classify;
use crate::classify::http::HttpClassifier;

/// A file's `resilience4j.retry` for one name ([`Registry::retry_policy`](crate::Registry::retry_policy)),
/// as a [`tower::retry::Policy`]: put it in tower's own `RetryLayer`, outside the breaker
/// ([`Registry::stack`](crate::Registry::stack) does).
///
/// - `max-attempts` counts the first call, as in resilience4j: 3 means two retries at most.
/// - A result is retried when the retry's classification counts it a failure: without
///   `retry-exceptions`, a `5xx` or an error (a timeout included); with it, what it names
///   (classes breakwater knows, or names bound with `Loader::bind`); never what
///   `ignore-exceptions` names. Whatever the file says, a `4xx` (the request is at fault) and
///   a call the breaker refused ([`CircuitOpen`], anywhere in the error's `source()` chain,
///   or in the extensions of a `503` answered by a breaker in its `respond_503` mode) are never
///   retried; a `retry-exceptions` naming client errors says so with a warning. A
///   `retry-exceptions` (or `retry-exception-predicate`) naming nothing breakwater can use
///   retries no error, rather than every one.
/// - Between attempts it waits `wait-duration` (500 ms by default), or, with
///   `enable-exponential-backoff`, `wait-duration × multiplier^(n-1)` before retry `n` (1.5 by
///   default), at most `exponential-max-wait-duration`. The waits are on tokio's timer.
/// - Every retry is spent from a [`TpsBudget`], shared by every policy the registry hands out
///   for the name: tower's defaults, deposits living 10 seconds, at least 10 retries a second,
///   and beyond that retries up to 20 % of the requests (each request deposits once). A retry
///   the budget cannot pay is not made: the answer at hand is returned. Another budget:
///   [`with_budget`](Self::with_budget).
///
/// Classes mean here what they mean to a breaker (see the [registry's
/// docs](crate::registry)): `java.net.ConnectException`, say, stands for every error that is
/// not a timeout, since breakwater cannot tell, for every client, a connection refused from an
/// error after the request was sent. Retry only requests that may arrive twice.
///
/// tower's `TpsBudget` takes a lock (a `Mutex`) on every deposit and withdrawal: one per
/// request, one per retry.
///
/// Requests must be `Clone` (tower retries a copy); `http::Request` is not, so put the policy
/// around a service of a request type that is (a client's own request struct, say, or
/// `http::Request<Full<Bytes>>` mapped from one).
///
/// # Example
///
/// ```
/// # #[cfg(feature = "yaml")] {
/// use breakwater::Registry;
///
/// let registry = Registry::from_yaml(
///     "
/// resilience4j.retry:
///   configs:
///     default: { maxAttempts: 3, waitDuration: 100 }
/// ",
/// )?;
/// let policy = registry.retry_policy("pg").expect("configs.default applies to every name");
/// assert_eq!(policy.max_attempts(), 3);
/// # }
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    settings: Arc<RetrySettings>,
    budget: Arc<TpsBudget>,
    /// The attempts made so far for the request this copy serves.
    attempts: u32,
}

impl RetryPolicy {
    pub(crate) fn new(settings: RetrySettings, budget: Arc<TpsBudget>) -> Self {
        Self {
            settings: Arc::new(settings),
            budget,
            attempts: 1,
        }
    }

    /// Calls in all for one request, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    /// The wait before retry `n` (1 for the first retry).
    pub fn wait_before(&self, n: u32) -> Duration {
        let settings = &self.settings;
        let Some(multiplier) = settings.multiplier else {
            return settings.wait;
        };
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = settings.wait.as_secs_f64() * multiplier.powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(Duration::MAX)
            .min(settings.max_wait)
    }

    /// Spends retries from `budget` instead of the registry's for the name.
    #[must_use]
    pub fn with_budget(mut self, budget: Arc<TpsBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Whether `result` is worth another attempt.
    fn retries<B, E: 'static>(&self, result: &Result<Response<B>, E>) -> bool {
        if let Ok(response) = result {
            // A client error, or a breaker's refusal answered `503` (`respond_503`).
            if response.status().is_client_error()
                || response.extensions().get::<CircuitOpen>().is_some()
            {
                return false;
            }
        }
        if let Err(error) = result {
            if refused(crate::classify::as_error(error)) {
                return false;
            }
        }
        let outcome =
            Classify::<Response<B>, E>::classify(&self.settings.classifier, result.as_ref());
        outcome.is_failure()
    }
}

/// Whether a breaker refused the call: a [`CircuitOpen`] in the error's chain.
fn refused(error: Option<&(dyn Error + 'static)>) -> bool {
    let mut current = error;
    while let Some(error) = current {
        if error.is::<CircuitOpen>() {
            return true;
        }
        current = error.source();
    }
    false
}

impl<Req: Clone, B, E: 'static> Policy<Req, Response<B>, E> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut Req,
        result: &mut Result<Response<B>, E>,
    ) -> Option<Self::Future> {
        if self.attempts >= self.settings.max_attempts || !self.retries(result) {
            return None;
        }
        if !self.budget.withdraw() {
            return None;
        }
        let wait = self.wait_before(self.attempts);
        self.attempts += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        if self.attempts >= self.settings.max_attempts {
            // No attempt left (or none ever, for a stack's name without a retry): no copy, and
            // the budget (tower's takes a lock) is not touched.
            return None;
        }
        if self.attempts == 1 {
            // One deposit per request, before its first call.
            self.budget.deposit();
        }
        Some(request.clone())
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.settings.max_attempts)
            .field("wait", &self.settings.wait)
            .field("multiplier", &self.settings.multiplier)
            .field("classifier", &self.settings.classifier)
            .field("budget", &self.budget)
            .finish()
    }
}

/// A policy that never retries: the stack's for a name with no retry configured.
pub(crate) fn none(budget: Arc<TpsBudget>) -> RetryPolicy {
    RetryPolicy::new(
        RetrySettings {
            max_attempts: 1,
            wait: Duration::ZERO,
            multiplier: None,
            max_wait: Duration::ZERO,
            classifier: HttpClassifier::new(),
        },
        budget,
    )
}
