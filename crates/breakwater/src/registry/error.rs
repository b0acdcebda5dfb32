//! Why a configuration file could not be loaded.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

/// A configuration file could not be loaded: a syntax error, a setting with a value out of
/// range, an unknown key or exception class, or a file that cannot be read.
///
/// A setting's error names its key path (as written in the file), the line, the value and what
/// is allowed.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "yaml")] {
/// use breakwater::Registry;
///
/// let yaml = "
/// resilience4j:
///   circuitbreaker:
///     instances:
///       pg:
///         failure-rate-threshold: 150
/// ";
/// let error = Registry::from_yaml(yaml).unwrap_err();
/// assert_eq!(
///     error.key_path(),
///     Some("resilience4j.circuitbreaker.instances.pg.failure-rate-threshold")
/// );
/// assert_eq!(error.line(), Some(6));
/// assert_eq!(error.value(), Some("150"));
/// assert_eq!(
///     error.to_string(),
///     "resilience4j.circuitbreaker.instances.pg.failure-rate-threshold (line 6): 150 is not \
///      allowed: it must be a percentage greater than 0 and at most 100"
/// );
/// # }
/// ```
#[derive(Debug)]
pub struct LoadError {
    kind: Kind,
}

#[derive(Debug)]
// Without a file format, no file is read.
#[cfg_attr(not(any(feature = "yaml", feature = "toml")), allow(dead_code))]
enum Kind {
    Syntax {
        format: &'static str,
        line: usize,
        message: String,
    },
    Setting {
        path: String,
        line: usize,
        value: Option<String>,
        problem: String,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Format {
        path: PathBuf,
    },
}

#[cfg_attr(not(any(feature = "yaml", feature = "toml")), allow(dead_code))]
impl LoadError {
    pub(crate) fn syntax(format: &'static str, line: usize, message: String) -> Self {
        Self {
            kind: Kind::Syntax {
                format,
                line,
                message,
            },
        }
    }

    /// A value that is not allowed: `allowed` says what is.
    pub(crate) fn bad_value(path: &str, line: usize, value: String, allowed: &str) -> Self {
        Self {
            kind: Kind::Setting {
                path: path.to_owned(),
                line,
                value: Some(value),
                problem: format!("it must be {allowed}"),
            },
        }
    }

    /// A problem with a key itself (unknown, missing, not supported), not with its value.
    pub(crate) fn key(path: &str, line: usize, problem: String) -> Self {
        Self {
            kind: Kind::Setting {
                path: path.to_owned(),
                line,
                value: None,
                problem,
            },
        }
    }

    pub(crate) fn io(path: PathBuf, error: std::io::Error) -> Self {
        Self {
            kind: Kind::Io { path, error },
        }
    }

    pub(crate) fn format(path: PathBuf) -> Self {
        Self {
            kind: Kind::Format { path },
        }
    }

    /// The key path of the setting at fault, dotted as in Spring properties
    /// (`resilience4j.circuitbreaker.instances.pg.failure-rate-threshold`); `None` for syntax
    /// and file errors.
    pub fn key_path(&self) -> Option<&str> {
        match &self.kind {
            Kind::Setting { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The line (1-based) where the problem is, when known.
    pub fn line(&self) -> Option<usize> {
        match self.kind {
            Kind::Syntax { line, .. } | Kind::Setting { line, .. } if line > 0 => Some(line),
            _ => None,
        }
    }

    /// The value at fault, as written (strings quoted), when a value is at fault.
    pub fn value(&self) -> Option<&str> {
        match &self.kind {
            Kind::Setting { value, .. } => value.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Syntax {
                format,
                line,
                message,
            } => write!(f, "{format} syntax error at line {line}: {message}"),
            Kind::Setting {
                path,
                line,
                value,
                problem,
            } => {
                f.write_str(path)?;
                if *line > 0 {
                    write!(f, " (line {line})")?;
                }
                match value {
                    Some(value) => write!(f, ": {value} is not allowed: {problem}"),
                    None => write!(f, ": {problem}"),
                }
            }
            Kind::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Kind::Format { path } => write!(
                f,
                "cannot tell the format of {}: its name must end in .yml, .yaml or .toml",
                path.display()
            ),
        }
    }
}

impl Error for LoadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}
