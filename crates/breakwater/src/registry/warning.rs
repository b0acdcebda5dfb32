//! What a configuration file asks that breakwater cannot do, loaded anyway: Java exception
//! classes it has no rule for, and predicates that name Java code. [`Registry::warnings`]
//! lists them; the `_strict` loaders refuse such a file instead.
//!
//! [`Registry::warnings`]: super::Registry::warnings

use std::fmt;

use super::error::LoadError;

/// A setting of the file that breakwater read and could not carry over: where it is, what it
/// says, and what happens instead. Its `Display` is one line.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "yaml")] {
/// use breakwater::Registry;
///
/// let registry = Registry::from_yaml(
///     "
/// resilience4j.circuitbreaker:
///   instances:
///     backendB:
///       recordFailurePredicate: io.github.robwin.exception.RecordFailurePredicate
/// ",
/// )?;
/// let warning = &registry.warnings()[0];
/// assert_eq!(warning.key_path(), "resilience4j.circuitbreaker.instances.backendB.recordFailurePredicate");
/// assert_eq!(warning.line(), 5);
/// assert_eq!(
///     warning.to_string(),
///     "resilience4j.circuitbreaker.instances.backendB.recordFailurePredicate (line 5): \
///      \"io.github.robwin.exception.RecordFailurePredicate\" names Java code, which cannot run \
///      here: ignored (classify outcomes with `CircuitBreaker::layer_with`)"
/// );
/// # }
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    path: String,
    line: usize,
    message: String,
}

impl Warning {
    /// The setting's key path, as the file wrote it.
    pub fn key_path(&self) -> &str {
        &self.path
    }

    /// Its line (1-based; 0 when unknown).
    pub fn line(&self) -> usize {
        self.line
    }

    /// What it says and what happens instead.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (line {}): {}", self.path, self.line, self.message)
    }
}

/// How a file is being loaded: strictly (what cannot be carried over is an error) or not (a
/// warning), and the warnings so far.
#[derive(Debug, Default)]
pub(crate) struct Load {
    strict: bool,
    pub(crate) warnings: Vec<Warning>,
}

impl Load {
    pub(crate) fn is_strict(&self) -> bool {
        self.strict
    }

    pub(crate) fn new(strict: bool) -> Self {
        Self {
            strict,
            warnings: Vec::new(),
        }
    }

    /// A setting that cannot be carried over: `problem` says why, `instead` what happens
    /// when the file loads anyway. An error when strict.
    pub(crate) fn cannot(
        &mut self,
        path: &str,
        line: usize,
        problem: String,
        instead: &str,
    ) -> Result<(), LoadError> {
        if self.strict {
            return Err(LoadError::key(path, line, problem));
        }
        self.warnings.push(Warning {
            path: path.to_owned(),
            line,
            message: format!("{problem}: {instead}"),
        });
        Ok(())
    }
}
