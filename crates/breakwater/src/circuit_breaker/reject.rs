//! What a layered service answers when the breaker rejects a call.

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

use super::{CircuitOpen, CircuitState};
use crate::BoxError;

/// What a layered service answers for a call the breaker rejects, and so which error type it
/// has: [`WithError`] (the default) or [`With503`]. You do not implement this trait.
pub trait OnOpen<T, E>: crate::sealed::Sealed {
    /// The layered service's error type.
    type Error;

    /// The answer to a rejected call.
    fn rejected(open: Box<CircuitOpen>) -> Result<T, Self::Error>;

    /// An error of the inner service, as the layered service returns it.
    fn error(error: E) -> Self::Error;
}

/// A rejected call fails with a boxed [`CircuitOpen`]; the service's error type is
/// [`BoxError`], into which the inner service's errors are converted. The default mode, for
/// clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithError;

impl crate::sealed::Sealed for WithError {}
impl crate::sealed::Sealed for With503 {}

impl<T, E: Into<BoxError>> OnOpen<T, E> for WithError {
    type Error = BoxError;

    #[inline]
    fn rejected(open: Box<CircuitOpen>) -> Result<T, BoxError> {
        Err(open)
    }

    #[inline]
    fn error(error: E) -> BoxError {
        error.into()
    }
}

/// A rejected call is answered `503 Service Unavailable`, with `Retry-After` while the breaker
/// is open (whole seconds, rounded up; `1` while half-open probes are in flight), an empty body, and the [`CircuitOpen`] in the
/// response's extensions; the service keeps its inner error type. For servers: an axum route
/// keeps its `Infallible` error and needs no `HandleErrorLayer`. Made by
/// [`CircuitBreakerLayer::respond_503`](super::CircuitBreakerLayer::respond_503).
///
/// The response body type must have a `Default` (an empty body), as axum's `Body` and
/// `http_body_util::Empty` do.
#[derive(Debug, Clone, Copy, Default)]
pub struct With503;

impl<B: Default, E> OnOpen<Response<B>, E> for With503 {
    type Error = E;

    fn rejected(open: Box<CircuitOpen>) -> Result<Response<B>, E> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let retry_after = match open.state() {
            // Whole seconds, rounded up from whole milliseconds: the breaker's resolution, so
            // that a wait of 30 s just begun reads 30, not 31.
            CircuitState::Open => open.retry_after().map(|wait| {
                let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                millis.div_ceil(1000).max(1)
            }),
            // Probes are in flight: their outcome comes soon.
            CircuitState::HalfOpen => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(*open);
        Ok(response)
    }

    #[inline]
    fn error(error: E) -> E {
        error
    }
}
