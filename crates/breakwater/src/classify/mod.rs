//! Deciding what a call's result means to a breaker.
//!
//! A breaker counts calls by their [`Outcome`]: a success, a failure, or a result it ignores
//! (counted neither way, like a `404` caused by the caller). A [`Classify`] turns a call's result
//! into an outcome; any `Fn(Result<&Response, &Error>) -> Outcome` closure is one.
//!
//! Ready-made classifiers:
//! - [`HttpClassifier`](http::HttpClassifier) (the default of
//!   [`CircuitBreaker::layer`](crate::CircuitBreaker::layer)): `5xx` is a failure, `4xx` is
//!   ignored, anything else is a success; every error is a failure. Rules by status and range
//!   change that.
//! - [`FailOnError`]: for any service, `Ok` is a success and `Err` a failure.
//!
//! Timeouts are recognised by [`is_timeout`], which walks an error's [`source()`] chain because
//! layers such as `tower::buffer::Buffer` wrap the errors of what they call.
//!
//! # Example
//!
//! ```
//! use breakwater::classify::{Classify, Outcome};
//!
//! // A database client: "not found" is the caller's business, every other error a failure.
//! #[derive(Debug)]
//! enum DbError { NotFound, Unavailable }
//!
//! let classify = |result: Result<&String, &DbError>| match result {
//!     Ok(_) => Outcome::Success,
//!     Err(DbError::NotFound) => Outcome::Ignored,
//!     Err(DbError::Unavailable) => Outcome::Failure,
//! };
//! assert_eq!(classify.classify(Err(&DbError::NotFound)), Outcome::Ignored);
//! assert_eq!(classify.classify(Ok(&"row".to_string())), Outcome::Success);
//! ```
//!
//! [`source()`]: std::error::Error::source

pub mod grpc;
pub mod http;
mod table;

use std::any::Any;
use std::error::Error;
use std::time::Duration;

use ::http::HeaderMap;

/// What a call's result means to a breaker.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::classify::Outcome;
///
/// assert!(Outcome::Failure.is_failure());
/// assert!(Outcome::FailureFor(Duration::from_secs(5)).is_failure());
/// assert!(!Outcome::Ignored.is_failure());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The call worked; it counts toward the success side of the window.
    Success,
    /// The call failed in a way that says the callee is unhealthy (a `5xx`, a timeout).
    Failure,
    /// The call is not evidence either way (a `4xx` the caller caused): not recorded at all, and
    /// a half-open permit it held is given back.
    Ignored,
    /// A failure after which the callee asked not to be called for a while (a `503` or `429`
    /// with `Retry-After`): recorded as a failure, and the breaker opens at once for this long
    /// (in place of its configured wait).
    FailureFor(Duration),
}

impl Outcome {
    /// Whether the outcome counts as a failure ([`Failure`](Self::Failure) or
    /// [`FailureFor`](Self::FailureFor)).
    pub const fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failure | Outcome::FailureFor(_))
    }
}

/// Turns a call's result into an [`Outcome`].
///
/// Implemented for every `Fn(Result<&Res, &E>) -> Outcome + Clone + Send + Sync` closure; give
/// the closure's argument type explicitly so that it accepts any lifetime (see the example).
/// A classifier is cloned into each call's future, so keep it small (or share what it holds).
///
/// `Sync` is required because axum's `Router::layer` needs layers to be `Sync`.
///
/// # Example
///
/// ```
/// use breakwater::classify::{Classify, Outcome};
///
/// #[derive(Debug, Clone, Copy)]
/// struct SlowIsFine;
///
/// impl Classify<u32, std::io::Error> for SlowIsFine {
///     fn classify(&self, result: Result<&u32, &std::io::Error>) -> Outcome {
///         match result {
///             Ok(_) => Outcome::Success,
///             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Outcome::Ignored,
///             Err(_) => Outcome::Failure,
///         }
///     }
/// }
///
/// assert_eq!(SlowIsFine.classify(Ok(&7)), Outcome::Success);
/// ```
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// The outcome of one call, from its response (or error).
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// When the breaker records at the end of the response body
    /// ([`end_of_stream`](crate::CircuitBreakerLayer::end_of_stream)): the outcome once the
    /// body has ended, given the outcome of the response head and the trailers, if any. By
    /// default, the head's outcome; a gRPC classifier reads `grpc-status` here.
    fn classify_end(&self, head: Outcome, trailers: Option<&HeaderMap>) -> Outcome {
        let _ = trailers;
        head
    }

    /// When the breaker records at the end of the response body: the outcome when the body
    /// fails instead of ending (a reset stream, a body deadline). By default a failure.
    fn classify_body_error(&self, head: Outcome, error: &(dyn Error + 'static)) -> Outcome {
        let _ = (head, error);
        Outcome::Failure
    }

    /// What a call takes with it to classify its result, made when the call starts: by
    /// default a clone. A classifier that costs something to clone (an update of a shared
    /// count) returns a cheaper value that classifies alike while the classifier it came from
    /// is alive, as [`HttpClassifier`](http::HttpClassifier) does for rules of its own.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::classify::{Classify, FailOnError, Outcome};
    ///
    /// let call = Classify::<u8, std::io::Error>::for_call(&FailOnError);
    /// assert_eq!(Classify::<u8, std::io::Error>::classify(&call, Ok(&1)), Outcome::Success);
    /// ```
    fn for_call(&self) -> Self {
        self.clone()
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome + Clone + Send + Sync + 'static,
{
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

/// For any service: every response is a success, every error a failure.
///
/// # Example
///
/// ```
/// use breakwater::classify::{Classify, FailOnError, Outcome};
///
/// let ok: Result<&u8, &std::io::Error> = Ok(&1);
/// assert_eq!(FailOnError.classify(ok), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailOnError;

impl<Res, E> Classify<Res, E> for FailOnError {
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Whether an error is, or was caused by, a timeout.
///
/// Walks the [`source()`](Error::source) chain looking for breakwater's
/// [`Elapsed`](crate::Elapsed), `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`
/// or an [`std::io::Error`] of kind [`TimedOut`](std::io::ErrorKind::TimedOut).
///
/// # Example
///
/// ```
/// use breakwater::classify::is_timeout;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
/// assert!(is_timeout(&io));
/// let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// assert!(!is_timeout(&other));
/// ```
pub fn is_timeout(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<crate::Elapsed>()
            || error.is::<tower::timeout::error::Elapsed>()
            || error.is::<tokio::time::error::Elapsed>()
            || error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        // A rejection is not a timeout, and its source (a tonic status) is made when asked for:
        // not walked into.
        if error.is::<crate::CircuitOpen>() {
            return false;
        }
        current = error.source();
    }
    false
}

/// `error` as an `Error` trait object, for the types that can be looked into: boxed errors,
/// `std::io::Error`, and the timeout errors.
pub(crate) fn as_error<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    let any = error as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return Some(&**boxed);
    }
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return Some(io);
    }
    if let Some(elapsed) = any.downcast_ref::<crate::Elapsed>() {
        return Some(elapsed);
    }
    if let Some(elapsed) = any.downcast_ref::<tower::timeout::error::Elapsed>() {
        return Some(elapsed);
    }
    None
}

/// [`is_timeout`] for an error of any type, as a service hands it to a classifier.
///
/// An error that is a `BoxError` (`Box<dyn Error + Send + Sync>`, what most tower layers
/// return), an [`std::io::Error`], breakwater's [`Elapsed`](crate::Elapsed), a
/// `tower::timeout::error::Elapsed` or a `tokio::time::error::Elapsed` is inspected, with its
/// source chain; an error of any other type is not a timeout.
///
/// # Example
///
/// ```
/// use breakwater::classify::error_is_timeout;
///
/// let boxed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert!(error_is_timeout(&boxed));
/// assert!(!error_is_timeout(&"not an error type"));
/// ```
pub fn error_is_timeout<E: 'static>(error: &E) -> bool {
    match as_error(error) {
        Some(error) => is_timeout(error),
        None => (error as &dyn Any).is::<tokio::time::error::Elapsed>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("buffered service failed")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn timeouts_are_found_through_the_source_chain() {
        let inner: Box<dyn Error + Send + Sync> = Box::new(tower::timeout::error::Elapsed::new());
        let wrapped: Box<dyn Error + Send + Sync> = Box::new(Wrapper(Box::new(Wrapper(inner))));
        assert!(error_is_timeout(&wrapped));
        let refused: Box<dyn Error + Send + Sync> = Box::new(Wrapper(Box::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )));
        assert!(!error_is_timeout(&refused));
    }

    #[test]
    fn concrete_error_types_are_recognised() {
        assert!(error_is_timeout(&tower::timeout::error::Elapsed::new()));
        assert!(error_is_timeout(&std::io::Error::from(
            std::io::ErrorKind::TimedOut
        )));
        assert!(!error_is_timeout(&std::io::Error::from(
            std::io::ErrorKind::BrokenPipe
        )));
        assert!(!error_is_timeout(&fmt::Error));
    }

    #[test]
    fn closures_and_fail_on_error_classify() {
        let by_value = |r: Result<&i32, &()>| match r {
            Ok(v) if *v < 0 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Ignored,
        };
        assert_eq!(by_value.classify(Ok(&-1)), Outcome::Failure);
        assert_eq!(by_value.classify(Ok(&1)), Outcome::Success);
        assert_eq!(by_value.classify(Err(&())), Outcome::Ignored);
        assert_eq!(
            Classify::<i32, ()>::classify(&FailOnError, Err(&())),
            Outcome::Failure
        );
    }
}
