//! The error of a call that ran out of time.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A call, or the body of its response, did not finish within its timeout.
///
/// [`Timeout`](super::Timeout) returns it boxed in a [`BoxError`](crate::BoxError): find it with
/// `error.downcast_ref::<Elapsed>()`, or through any wrapping with
/// [`classify::is_timeout`](crate::classify::is_timeout). With the `tonic` feature its
/// [`source`](Error::source) is a `DEADLINE_EXCEEDED` status, so a tonic client reports it as
/// such.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::Elapsed;
///
/// let elapsed = Elapsed::new(Duration::from_secs(3));
/// assert_eq!(elapsed.timeout(), Duration::from_secs(3));
/// assert_eq!(elapsed.to_string(), "request timed out after 3s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    timeout: Duration,
}

impl Elapsed {
    /// A call that ran out of `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout the call ran out of.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {:?}", self.timeout)
    }
}

impl Error for Elapsed {
    #[cfg(feature = "tonic")]
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        static DEADLINE_EXCEEDED: std::sync::OnceLock<tonic::Status> = std::sync::OnceLock::new();
        Some(
            DEADLINE_EXCEEDED.get_or_init(|| tonic::Status::deadline_exceeded("request timed out")),
        )
    }
}
