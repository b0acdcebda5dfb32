//! What a builder answers for a setting out of range.

use std::error::Error;
use std::fmt;

/// A setting of a breaker is out of range: which breaker, which setting, the value given and
/// what is allowed.
///
/// # Example
///
/// ```
/// use breakwater::CircuitBreaker;
///
/// let error = CircuitBreaker::builder("search").count_window(0).build().unwrap_err();
/// assert_eq!(error.setting(), "count_window");
/// assert_eq!(error.value(), "0");
/// assert_eq!(error.allowed(), "from 1 to 65535 calls");
/// assert_eq!(
///     error.to_string(),
///     "circuit breaker `search`: count_window is 0, but it must be from 1 to 65535 calls",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    breaker: String,
    setting: &'static str,
    value: String,
    allowed: &'static str,
}

impl ConfigError {
    pub(crate) fn new(
        breaker: &str,
        setting: &'static str,
        value: String,
        allowed: &'static str,
    ) -> Self {
        Self {
            breaker: breaker.to_owned(),
            setting,
            value,
            allowed,
        }
    }

    /// The name of the breaker being built.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// The setting whose value is out of range, as the builder method names it.
    pub fn setting(&self) -> &str {
        self.setting
    }

    /// The value given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting allows.
    pub fn allowed(&self) -> &str {
        self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker `{}`: {} is {}, but it must be {}",
            self.breaker, self.setting, self.value, self.allowed
        )
    }
}

impl Error for ConfigError {}
