//! Loading a file with what the program says its Java names mean.

use std::collections::BTreeMap;
use std::path::Path;

use super::binding::Binding;
use super::error::LoadError;
use super::{Registry, tree, warning};

/// Loads a configuration file into a [`Registry`], with the Java names the program bound
/// ([`bind`](Self::bind)) and, if asked, strictly ([`strict`](Self::strict)).
/// [`Registry::from_yaml`] and the like are a `Loader` with no bindings.
///
/// Keep the loader to read the file again: a [`Registry::reload`] from a registry the same
/// loader made finds the same bindings, so the classification of layers made after it is
/// unchanged.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "yaml")] {
/// use breakwater::Registry;
/// use breakwater::classify::Outcome;
/// use breakwater::registry::Binding;
///
/// #[derive(Debug)]
/// struct BusinessError;
/// impl std::fmt::Display for BusinessError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("refused by the business rules")
///     }
/// }
/// impl std::error::Error for BusinessError {}
///
/// let loader = Registry::loader()
///     .bind("io.github.robwin.exception.BusinessException", Binding::errors(|e| e.is::<BusinessError>()));
/// let registry = loader.from_yaml(
///     "
/// resilience4j.circuitbreaker:
///   configs:
///     default:
///       ignoreExceptions: [io.github.robwin.exception.BusinessException]
/// ",
/// )?;
/// assert!(registry.warnings().is_empty()); // bound: nothing left out
/// let refused: tower::BoxError = Box::new(BusinessError);
/// let classify = |e| {
///     breakwater::classify::Classify::<http::Response<()>, _>::classify(&registry.classifier("pg"), Err(e))
/// };
/// assert_eq!(classify(&refused), Outcome::Ignored);
/// # }
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Loader {
    bindings: BTreeMap<String, Binding>,
    strict: bool,
}

impl Loader {
    /// No bindings, not strict: [`Registry::loader`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The Java class `name` (an exception class, or a predicate class named by
    /// `record-failure-predicate` and the like) means `binding`. A fully qualified name
    /// matches that name and its last segment written alone; a simple name (`BusinessException`)
    /// matches any package's class of that name. A bound name wins over breakwater's own
    /// meaning for it. Binding a name again replaces its binding.
    #[must_use]
    pub fn bind(mut self, name: &str, binding: Binding) -> Self {
        self.bindings.insert(name.trim().to_owned(), binding);
        self
    }

    /// Whether what cannot be carried over (Java names left unbound) is an error rather than
    /// a warning; `false` by default.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Reads YAML, as [`Registry::from_yaml`] does (feature `yaml`).
    ///
    /// # Errors
    ///
    /// As `Registry::from_yaml`, and, strictly, as `Registry::from_yaml_strict`.
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml(&self, text: &str) -> Result<Registry, LoadError> {
        let documents =
            tree::yaml::parse(text).map_err(|e| LoadError::syntax("YAML", e.line, e.message))?;
        self.loaded(&documents)
    }

    /// Reads TOML, as [`Registry::from_toml`] does (feature `toml`).
    ///
    /// # Errors
    ///
    /// As `Registry::from_toml`, and, strictly, as `Registry::from_toml_strict`.
    #[cfg(feature = "toml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "toml")))]
    pub fn from_toml(&self, text: &str) -> Result<Registry, LoadError> {
        let root =
            tree::toml::parse(text).map_err(|e| LoadError::syntax("TOML", e.line, e.message))?;
        self.loaded(&[root])
    }

    /// Reads a file, YAML or TOML by its extension, as [`Registry::from_path`] does.
    ///
    /// # Errors
    ///
    /// As `Registry::from_path`, and, strictly, as `Registry::from_path_strict`.
    pub fn from_path(&self, path: impl AsRef<Path>) -> Result<Registry, LoadError> {
        let path = path.as_ref();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse: fn(&Self, &str) -> Result<Registry, LoadError> = match extension.as_deref() {
            #[cfg(feature = "yaml")]
            Some("yml" | "yaml") => Self::from_yaml,
            #[cfg(feature = "toml")]
            Some("toml") => Self::from_toml,
            _ => return Err(LoadError::format(path.into())),
        };
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::io(path.into(), e))?;
        parse(self, &text)
    }

    /// The registry of a file's documents; its warnings logged once.
    fn loaded(&self, roots: &[tree::Node]) -> Result<Registry, LoadError> {
        let mut load = warning::Load::new(self.strict, &self.bindings);
        let mut templates = super::document::templates(roots, &mut load)?;
        // In the file's order (the sections are read one after the other).
        load.warnings.sort_by_key(super::Warning::line);
        for warning in &load.warnings {
            tracing::warn!(%warning, "breakwater registry: a setting could not be carried over");
        }
        templates.warnings = load.warnings;
        Ok(Registry::with_templates(templates))
    }
}
