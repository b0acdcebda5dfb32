//! What a configuration file asks that breakwater cannot do, loaded anyway: Java exception
//! classes it has no rule for, and predicates that name Java code. [`Registry::warnings`]
//! lists them; the `_strict` loaders refuse such a file instead.
//!
//! [`Registry::warnings`]: super::Registry::warnings

use std::collections::BTreeMap;
use std::fmt;

use super::binding::Binding;
use super::error::LoadError;
use super::exceptions::simple_of;

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
///      here: ignored (bind the name with `Loader::bind`, or classify outcomes with \
///      `CircuitBreaker::layer_with`)"
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
pub(crate) struct Load<'a> {
    strict: bool,
    /// What the program bound Java names to, by the names it gave.
    bindings: Option<&'a BTreeMap<String, Binding>>,
    pub(crate) warnings: Vec<Warning>,
}

impl<'a> Load<'a> {
    pub(crate) fn is_strict(&self) -> bool {
        self.strict
    }

    pub(crate) fn new(strict: bool, bindings: &'a BTreeMap<String, Binding>) -> Self {
        Self {
            strict,
            bindings: Some(bindings),
            warnings: Vec::new(),
        }
    }

    /// What the program bound the Java name `name` to: the binding of that name, or of a
    /// name with the same last segment when one side is not qualified
    /// (`BusinessException` and `io.github.robwin.exception.BusinessException` are one).
    pub(crate) fn bound(&self, name: &str) -> Option<Binding> {
        let bindings = self.bindings?;
        let name = name.trim();
        if let Some(binding) = bindings.get(name) {
            return Some(binding.clone());
        }
        let simple = simple_of(name);
        bindings
            .iter()
            .find(|(bound, _)| {
                simple_of(bound) == simple && (!bound.contains('.') || !name.contains('.'))
            })
            .map(|(_, binding)| binding.clone())
    }

    /// A setting read and not carried over that is not Java code (a key with no counterpart
    /// here, a section): a warning, strict or not.
    pub(crate) fn note(&mut self, path: &str, line: usize, message: String) {
        self.warnings.push(Warning {
            path: path.to_owned(),
            line,
            message,
        });
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
