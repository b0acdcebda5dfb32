//! Named breakers built from configuration files in resilience4j's shape.
//!
//! A [`Registry`] holds configurations and the breakers made from them: ask it for a breaker by
//! name and it returns the same breaker every time, built from the instance configuration of
//! that name, or from the default configuration for a name it does not know. It is cheap to
//! clone (clones share everything) and safe to share across threads.
//!
//! # The file
//!
//! A resilience4j Spring Boot `application.yml` loads unchanged: the registry reads
//! `resilience4j.circuitbreaker`, and `timelimiter`, `retry` and `bulkhead` (see
//! [below](#time-limiter-retry-and-bulkhead)); another resilience4j section (`ratelimiter`,
//! `thread-pool-bulkhead`) is a `Warning`; every other top-level key belongs to someone else
//! and is ignored.
//!
//! ```yaml
//! resilience4j:
//!   circuitbreaker:
//!     configs:
//!       default:                    # every name the file does not list gets this
//!         sliding-window-size: 10
//!         failure-rate-threshold: 50
//!         wait-duration-in-open-state: 10000
//!     instances:
//!       beeceptor-payment:
//!         base-config: default      # inherit, then override
//!         minimum-number-of-calls: 10
//!         wait-duration-in-open-state: 30s
//!         permitted-number-of-calls-in-half-open-state: 5
//!         ignore-exceptions:
//!           - org.springframework.web.client.HttpClientErrorException
//! ```
//!
//! TOML has the same shape, with a `circuitbreaker` table at the top (or
//! `resilience4j.circuitbreaker`):
//!
//! ```toml
//! [circuitbreaker.configs.default]
//! sliding-window-size = 10
//!
//! [circuitbreaker.instances.beeceptor-payment]
//! base-config = "default"
//! wait-duration-in-open-state = "30s"
//! ```
//!
//! - Keys are read in kebab-case, camelCase or snake_case (`failure-rate-threshold`,
//!   `failureRateThreshold`). An unknown key is an error that lists the known ones.
//! - Durations are whole milliseconds (`10000`), a whole number with a unit (`500ms`, `30s`,
//!   `5m`, `1h`, `1d`, `100us`, `10ns`), or ISO-8601 (`PT30S`).
//! - `sliding-window-type` is `COUNT_BASED` (the last `sliding-window-size` calls) or
//!   `TIME_BASED` (the calls of the last `sliding-window-size` seconds).
//! - `base-config` names a shared config to inherit from. Without it, every instance and every
//!   config but `default` itself inherits `configs.default` when the file has one, as in
//!   resilience4j. Inheritance chains are followed; a circle is an error.
//! - `enable-exponential-backoff` (with `exponential-backoff-multiplier`, 1.5 by default, and
//!   `exponential-max-wait-duration-in-open-state`) and `enable-randomized-wait` (with
//!   `randomized-wait-factor`, 0.5 by default) shape the open wait; a
//!   `max-wait-duration-in-half-open-state` of 0 means no limit, as in resilience4j.
//! - `record-exceptions` and `ignore-exceptions` name Java exception classes. Those whose
//!   meaning for an HTTP client is clear are understood (`HttpClientErrorException`: `4xx`,
//!   and its nested classes such as `HttpClientErrorException.NotFound`: one status;
//!   `HttpServerErrorException`: `5xx`; `TimeoutException`, `SocketTimeoutException`:
//!   timeouts; `IOException`, `ResourceAccessException`: transport errors and timeouts;
//!   `ConnectException`, `UnknownHostException`: transport errors; `Exception`: everything);
//!   a name the program bound ([below](#binding-java-names)) means what it was bound to; any
//!   other class (the application's own, say) is left out with a `Warning` (a strict load,
//!   `Registry::from_yaml_strict`, refuses it, listing those understood). They shape the
//!   [`HttpClassifier`] of [`Registry::classifier`] and [`Registry::layer`] as resilience4j
//!   applies them: without `record-exceptions`, breakwater's default (`5xx` and errors fail,
//!   `4xx` is ignored — resilience4j would count a client's exception for a `4xx` as a
//!   failure); with it, what it names fails and all else succeeds; what `ignore-exceptions`
//!   names is ignored, whatever `record-exceptions` says.
//! - `register-health-indicator`, `allow-health-indicator-to-fail`,
//!   `event-consumer-buffer-size`, `writable-stack-trace-enabled` and
//!   `ignore-class-binding-exceptions` are accepted and have no effect ([`Registry::health`] reports every breaker). Predicates
//!   (`record-failure-predicate`, `record-result-predicate`, `ignore-exception-predicate`)
//!   name Java code: a bound name means what it was bound to (a record predicate's matches
//!   fail, an ignore predicate's are ignored, a result predicate's responses fail); an unbound
//!   one is left out with a `Warning` (refused by a strict load); or classify with
//!   [`CircuitBreaker::layer_with`] instead.
//! - `Registry::warnings` lists what was left out, each with its key path, line, value and
//!   what happens instead; they are logged once, at `warn`, when the file is read.
//! - Defaults are breakwater's (see [`Builder`]), which are resilience4j's except that
//!   slow-call detection is off until one of its settings is given.
//!
//! A YAML file may hold several documents; each section may appear in one of them (Spring
//! profiles are not followed).
//!
//! # Binding Java names
//!
//! A file names the application's own exception classes (`ignoreExceptions:
//! [com.acme.BusinessException]`) and predicate classes. `Registry::loader` says what they
//! mean before the file is read, with a `Binding` (feature `yaml` or `toml`): an HTTP status
//! range, a predicate over the call's errors (`|e| e.is::<BusinessError>()`, asked of each error
//! of the `source()` chain), a predicate over its responses, or several. A bound name is no
//! longer a warning, and takes part in classification as the names breakwater knows do, in
//! every section that names it (`record-exceptions`, `ignore-exceptions`, the predicates, a
//! retry's `retry-exceptions`). A qualified name also matches its simple name written alone,
//! and a simple name binds that class in any package. See `Loader` for an example.
//!
//! # Time limiter, retry and bulkhead
//!
//! Each has `configs` (with `default`), `instances` and `base-config` as the breakers' section
//! has them; a name a section does not list gets its `configs.default`, if it has one.
//! Values out of range are errors that name the key; a key breakwater does not read is a
//! `Warning` (also when loading strictly), as is each key read and not carried over.
//!
//! | section | read | reported (a warning: what happens instead) |
//! |---|---|---|
//! | `timelimiter` | `timeout-duration` (1 s if a config leaves it out) | `cancel-running-future: false` (a call that runs out of time is dropped, so cancelled) |
//! | `retry` | `max-attempts` (3; counts the first call), `wait-duration` (500 ms), `enable-exponential-backoff`, `exponential-backoff-multiplier` (1.5), `exponential-max-wait-duration`, `retry-exceptions`, `ignore-exceptions`, `retry-exception-predicate`, `result-predicate` (bound names) | `enable-randomized-wait: true` and `randomized-wait-factor` (waits are not randomized), `fail-after-max-attempts: true` (the last answer is returned as it is) |
//! | `bulkhead` | `max-concurrent-calls` (25), `max-wait-duration` (0) | `max-wait-duration` other than 0 (read as 0: a call beyond the limit is refused at once) |
//!
//! `event-consumer-buffer-size`, and `writable-stack-trace-enabled` and
//! `fair-call-handling-strategy-enabled` for a bulkhead, are accepted without effect.
//!
//! - [`Registry::timeout`] gives a name's timeout and [`Registry::timeout_layer`] a
//!   [`TimeoutLayer`] whose timeout a reload changes, for the calls that start after it.
//! - `Registry::retry_policy` gives a `tower::retry::Policy` (a `RetryPolicy`: never a `4xx`
//!   nor a call the breaker refused, spending tower's retry budget), and `Registry::bulkhead`
//!   tower's own concurrency limit under tower's load shedding (a call beyond the limit is
//!   refused at once, as resilience4j's bulkhead refuses it), one semaphore per name.
//! - A section's own keys other than `configs` and `instances` are warnings
//!   (`retryAspectOrder` and the like: the order of a stack is fixed), except in the breakers'
//!   section, where an unknown key is an error. A top-level `timelimiter`, `retry` or
//!   `bulkhead` (TOML's shape) is read only when it holds `configs` or `instances`: otherwise
//!   it is the application's own.
//! - `Registry::stack` composes them in resilience4j's order: retry outside the breaker, the
//!   breaker outside the time limiter, the time limiter outside the bulkhead.
//!   [`Registry::layer`] stays the breaker alone.
//!
//! # Chaos
//!
//! A `breakwater.chaos` section (nested or dotted, beside `resilience4j`) configures
//! [fault injection](crate::chaos) by name; [`Registry::chaos`] hands out the [`Chaos`] of a
//! name, to put in a stack with [`Chaos::layer`]:
//!
//! ```yaml
//! breakwater:
//!   chaos:
//!     instances:
//!       pg-client:
//!         enabled: true          # nothing happens without it
//!         seed: 7                # the same seed replays the same faults
//!         failure-rate: 0.05     # fractions from 0 to 1
//!         response-loss-rate: 0.02
//!         latency-rate: 0.1
//!         latency-min: 200ms     # or `latency: 1s` for a fixed one
//!         latency-max: 2s
//! ```
//!
//! Keys are read in any of the three cases, durations as above; an unknown key or a value out
//! of range is an error naming the key path, the line, the value and what is allowed. A file
//! may hold chaos settings without a breakers' section.
//!
//! # Reconfiguring at run time
//!
//! [`Registry::reload`] takes the configurations of another registry (a file read again) and
//! reconfigures every breaker already made whose configuration changed, with
//! [`CircuitBreaker::reconfigure`]: layers and services in use follow, subscribers stay, the
//! window starts afresh. [`Registry::reconfigure`] does the same for one instance, from code.
//! The classification from `record-exceptions`/`ignore-exceptions` is copied into a layer
//! when the layer is made: layers made before a reload keep the classification they had.
//! Time limiters in use follow a reload (their [`SharedTimeout`] changes); retries and
//! bulkheads take effect in the stacks and layers made after it, since tower's layers are
//! fixed once built.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "yaml")] {
//! use std::time::Duration;
//! use breakwater::{CircuitState, Registry};
//!
//! let registry = Registry::from_yaml(
//!     "
//! spring.application.name: payments   # not ours: ignored
//! resilience4j.circuitbreaker:
//!   configs:
//!     default:
//!       slidingWindowSize: 10            # camelCase works too
//!   instances:
//!     pg:
//!       wait-duration-in-open-state: 30s
//! ",
//! )?;
//! let pg = registry.circuit_breaker("pg");
//! assert_eq!(pg, registry.circuit_breaker("pg")); // the same breaker
//! let other = registry.circuit_breaker("search"); // not listed: the default config
//! assert_eq!(other.state(), CircuitState::Closed);
//! # }
//! # Ok::<(), breakwater::registry::LoadError>(())
//! ```

#[cfg(any(feature = "yaml", feature = "toml"))]
mod binding;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod chaos;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod document;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod duration;
mod error;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod exceptions;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod limiters;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod loader;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod retry;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod section;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod settings;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod stack;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod tree;
#[cfg(any(feature = "yaml", feature = "toml"))]
mod warning;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::binding::Binding;
pub use self::error::LoadError;
#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::loader::Loader;
#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::retry::RetryPolicy;
#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::section::{Entry, Section};
#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::stack::{BulkheadLayer, Stack, StackService};
#[cfg(any(feature = "yaml", feature = "toml"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
pub use self::warning::Warning;
pub use crate::circuit_breaker::{BreakerHealth, HealthReport, HealthStatus};

use crate::CircuitBreaker;
use crate::chaos::{Chaos, ChaosBuilder};
use crate::circuit_breaker::observe::Metering;
use crate::circuit_breaker::{Builder, CircuitBreakerLayer, ConfigError, KeyedCircuitBreakerLayer};
use crate::classify::http::HttpClassifier;
use crate::clock::Clock;
use crate::timeout::{SharedTimeout, TimeoutLayer};

/// Named circuit breakers and the configurations they are built from; see the
/// [module docs](self) for the file format.
///
/// # Example
///
/// ```
/// use breakwater::Registry;
///
/// // No file: every breaker gets breakwater's defaults, or what `reconfigure` sets.
/// let registry = Registry::new();
/// registry.reconfigure("ledger", |b| b.count_window(20).minimum_calls(20))?;
/// let ledger = registry.circuit_breaker("ledger");
/// assert_eq!(ledger.name(), "ledger");
/// assert_eq!(registry.breakers(), [ledger]);
/// # Ok::<(), breakwater::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    templates: Templates,
    breakers: BTreeMap<String, CircuitBreaker>,
    keyed: BTreeMap<String, KeyedCircuitBreakerLayer>,
    chaos: BTreeMap<String, Chaos>,
    /// The time limiters handed out, by name: a reload changes them.
    timeouts: BTreeMap<String, SharedTimeout>,
    /// The retry budgets, by name.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    budgets: BTreeMap<String, Arc<tower::retry::budget::TpsBudget>>,
    /// The bulkheads' semaphores, by name, with their sizes.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    bulkheads: BTreeMap<String, (u32, Arc<tokio::sync::Semaphore>)>,
    clock: Option<Arc<dyn Clock>>,
    /// The metrics its breakers record.
    metering: Metering,
}

/// Every configuration of a file, resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Templates {
    pub(crate) default: Template,
    pub(crate) configs: BTreeMap<String, Template>,
    pub(crate) instances: BTreeMap<String, Template>,
    /// The `breakwater.chaos` instances, checked.
    pub(crate) chaos: BTreeMap<String, ChaosBuilder>,
    /// The other `breakwater.NAME` sections, kept for the crates that read them.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    pub(crate) sections: BTreeMap<String, Section>,
    /// What the file asked that could not be carried over.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    pub(crate) warnings: Vec<Warning>,
    /// The time limiters, retries and bulkheads.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    pub(crate) limiters: limiters::Limiters,
}

impl Templates {
    /// The configuration of the breaker `name`: its instance's, or the default.
    fn of(&self, name: &str) -> &Template {
        self.instances.get(name).unwrap_or(&self.default)
    }

    /// The time limiter's timeout of `name`, if the file gives one.
    fn time_limit(&self, name: &str) -> Option<std::time::Duration> {
        #[cfg(any(feature = "yaml", feature = "toml"))]
        {
            self.limiters.time_limits.of(name).copied()
        }
        #[cfg(not(any(feature = "yaml", feature = "toml")))]
        {
            let _ = name;
            None
        }
    }
}

/// One resolved configuration: the breaker it builds (checked) and its classification.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    builder: Builder,
    classifier: HttpClassifier,
}

impl Template {
    pub(crate) const fn new(builder: Builder, classifier: HttpClassifier) -> Self {
        Self {
            builder,
            classifier,
        }
    }

    pub(crate) fn library_default() -> Self {
        Self::new(CircuitBreaker::builder("default"), HttpClassifier::new())
    }

    /// Whether a breaker built from `self` would behave as one built from `other` (its
    /// classification aside: that belongs to the layers).
    fn builds_as(&self, other: &Template) -> bool {
        matches!((self.builder.check(), other.builder.check()), (Ok(a), Ok(b)) if a == b)
    }
}

impl Default for Template {
    fn default() -> Self {
        Self::library_default()
    }
}

impl Registry {
    /// A registry without a file: every breaker gets breakwater's defaults (see [`Builder`])
    /// until [`reconfigure`](Self::reconfigure) says otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(any(feature = "yaml", feature = "toml"))]
    pub(crate) fn with_templates(templates: Templates) -> Self {
        Self {
            inner: Arc::new(RwLock::new(State {
                templates,
                ..State::default()
            })),
        }
    }

    /// Reads a YAML file's `resilience4j.circuitbreaker` section (feature `yaml`).
    ///
    /// What the file names that breakwater cannot carry over (an exception class it has no
    /// rule for, a predicate naming Java code) does not stop the load: each becomes a
    /// [`Warning`] ([`warnings`](Self::warnings)), logged once here at `warn`, and the setting
    /// is left out. [`from_yaml_strict`](Self::from_yaml_strict) refuses such a file.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] for a syntax error, an unknown key, or a value out of range, naming the
    /// key path, the line, the value and what is allowed.
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml(text: &str) -> Result<Self, LoadError> {
        Loader::new().from_yaml(text)
    }

    /// As [`from_yaml`](Self::from_yaml), but what cannot be carried over is an error, not a
    /// warning.
    ///
    /// # Errors
    ///
    /// As `from_yaml`, and for an exception class breakwater has no rule for or a predicate
    /// naming Java code.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::Registry;
    ///
    /// let yaml = "
    /// resilience4j.circuitbreaker:
    ///   configs:
    ///     default:
    ///       ignoreExceptions: [io.github.robwin.exception.BusinessException]
    /// ";
    /// assert_eq!(Registry::from_yaml(yaml)?.warnings().len(), 1);
    /// assert!(Registry::from_yaml_strict(yaml).is_err());
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml_strict(text: &str) -> Result<Self, LoadError> {
        Loader::new().strict(true).from_yaml(text)
    }

    /// Reads a TOML file's `circuitbreaker` (or `resilience4j.circuitbreaker`) table (feature
    /// `toml`). What cannot be carried over is a warning, as with
    /// [`from_yaml`](Self::from_yaml).
    ///
    /// # Errors
    ///
    /// As `from_yaml`: a [`LoadError`] naming the key path, the line, the value and what is
    /// allowed.
    #[cfg(feature = "toml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "toml")))]
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        Loader::new().from_toml(text)
    }

    /// As [`from_toml`](Self::from_toml), but what cannot be carried over is an error.
    ///
    /// # Errors
    ///
    /// As `from_yaml_strict`.
    #[cfg(feature = "toml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "toml")))]
    pub fn from_toml_strict(text: &str) -> Result<Self, LoadError> {
        Loader::new().strict(true).from_toml(text)
    }

    /// A [`Loader`]: what the program says the file's Java names mean
    /// ([`Loader::bind`]), then the file.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn loader() -> Loader {
        Loader::new()
    }

    /// Reads a file, YAML or TOML by its extension (`.yml`, `.yaml`, `.toml`; each needs its
    /// feature). What cannot be carried over is a warning, as with
    /// [`from_yaml`](Self::from_yaml).
    ///
    /// # Errors
    ///
    /// A [`LoadError`] if the file cannot be read, its extension is not one of those (or its
    /// feature is off), or its contents are refused (as by `from_yaml`).
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        Loader::new().from_path(path)
    }

    /// As [`from_path`](Self::from_path), but what cannot be carried over is an error.
    ///
    /// # Errors
    ///
    /// As `from_path`, and as `from_yaml_strict`.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn from_path_strict(path: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        Loader::new().strict(true).from_path(path)
    }

    /// What the file asked that could not be carried over (empty without a file, or for a
    /// strict load): each names the key path, the line, the value and what happens instead.
    /// After a [`reload`](Self::reload), the reloaded file's.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::from_yaml(
    ///     "
    /// resilience4j.circuitbreaker:
    ///   configs:
    ///     default:
    ///       ignoreExceptions:
    ///         - io.github.robwin.exception.BusinessException
    /// ",
    /// )?;
    /// assert_eq!(
    ///     registry.warnings()[0].to_string(),
    ///     "resilience4j.circuitbreaker.configs.default.ignoreExceptions[0] (line 6): \
    ///      \"io.github.robwin.exception.BusinessException\" is not an exception class \
    ///      breakwater understands: ignored (no rule for it: bind the name with `Loader::bind`)"
    /// );
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn warnings(&self) -> Vec<Warning> {
        self.read().templates.warnings.clone()
    }

    /// Breakers made from now on read time from `clock` (tests; see
    /// [`clock`](crate::clock)). Breakers already made keep theirs.
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.write().clock = Some(Arc::new(clock));
        self
    }

    /// Breakers made from now on record their metrics (feature `metrics`): see
    /// [`Builder::metrics`](crate::circuit_breaker::Builder::metrics). Breakers already made
    /// keep their choice; `false` also stops [`with_metrics_durations`](Self::with_metrics_durations).
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::Registry;
    ///
    /// // Every breaker of the registry counts its calls in the `metrics` facade.
    /// let registry = Registry::new().with_metrics(true);
    /// let _breaker = registry.circuit_breaker("pg");
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn with_metrics(self, enabled: bool) -> Self {
        {
            let mut state = self.write();
            state.metering = Metering {
                counts: enabled,
                durations: enabled && state.metering.durations,
            };
        }
        self
    }

    /// Breakers made from now on also time every call for the duration histogram (feature
    /// `metrics`): see [`Builder::metrics_durations`](crate::circuit_breaker::Builder::metrics_durations).
    /// Implies [`with_metrics(true)`](Self::with_metrics).
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::new().with_metrics_durations(true);
    /// # let _ = registry;
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn with_metrics_durations(self, enabled: bool) -> Self {
        {
            let mut state = self.write();
            state.metering = Metering {
                counts: enabled || state.metering.counts,
                durations: enabled,
            };
        }
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is valid whatever a panicking thread left: every change is one assignment.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker named `name`: the same breaker for the same name, every time. Made on
    /// first use from the instance configuration of that name, or from the default
    /// configuration for a name the registry does not list.
    ///
    /// The registry keeps every breaker it made until it is dropped: names should come from
    /// a fixed set (downstreams), not from requests.
    pub fn circuit_breaker(&self, name: &str) -> CircuitBreaker {
        if let Some(breaker) = self.read().breakers.get(name) {
            return breaker.clone();
        }
        let mut state = self.write();
        if let Some(breaker) = state.breakers.get(name) {
            return breaker.clone();
        }
        let breaker = state.build(name);
        state.breakers.insert(name.to_owned(), breaker.clone());
        breaker
    }

    /// The classification of `name`'s configuration: its `record-exceptions` and
    /// `ignore-exceptions` applied to breakwater's HTTP default.
    pub fn classifier(&self, name: &str) -> HttpClassifier {
        self.read().templates.of(name).classifier.clone()
    }

    /// A layer for `name`'s breaker, classifying `http::Response`s as its configuration says.
    pub fn layer(&self, name: &str) -> CircuitBreakerLayer<HttpClassifier> {
        self.circuit_breaker(name).layer_with(self.classifier(name))
    }

    /// The time limiter's timeout for `name` (`resilience4j.timelimiter`): its instance's
    /// `timeout-duration`, or `configs.default`'s for a name the section does not list
    /// (resilience4j's default, one second, when a config leaves it out). `None` when the
    /// section has neither (or the registry has no file).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "yaml")] {
    /// use std::time::Duration;
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::from_yaml(
    ///     "
    /// resilience4j.timelimiter:
    ///   configs:
    ///     default: { timeoutDuration: 2s }
    ///   instances:
    ///     backendB: { timeoutDuration: 500ms }
    /// ",
    /// )?;
    /// assert_eq!(registry.timeout("backendA"), Some(Duration::from_secs(2)));
    /// assert_eq!(registry.timeout("backendB"), Some(Duration::from_millis(500)));
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    pub fn timeout(&self, name: &str) -> Option<std::time::Duration> {
        self.read().templates.time_limit(name)
    }

    /// A layer bounding calls by `name`'s [`timeout`](Self::timeout) (no bound while it is
    /// `None`), through a [`SharedTimeout`] kept per name: a [`reload`](Self::reload) that
    /// changes the timeout reaches the services already built, for the calls they start after
    /// it. Put it inside the breaker ([`layer`](Self::layer)) so that the breaker counts its
    /// timeouts, or use `stack` (features `yaml`, `toml`).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "yaml")] {
    /// use breakwater::Registry;
    /// use tower::ServiceBuilder;
    ///
    /// let registry = Registry::from_yaml(
    ///     "
    /// resilience4j.timelimiter:
    ///   configs:
    ///     default: { timeoutDuration: 2s }
    /// ",
    /// )?;
    /// let client = ServiceBuilder::new()
    ///     .layer(registry.layer("pg"))
    ///     .layer(registry.timeout_layer("pg"))
    ///     .service_fn(|_: http::Request<()>| async {
    ///         Ok::<_, std::io::Error>(http::Response::new(()))
    ///     });
    /// # let _ = client;
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    pub fn timeout_layer(
        &self,
        name: &str,
    ) -> TimeoutLayer<crate::timeout::CallOnly, crate::timeout::FromRequest, SharedTimeout> {
        TimeoutLayer::shared(self.shared_timeout(name))
    }

    /// The one [`SharedTimeout`] of `name`.
    fn shared_timeout(&self, name: &str) -> SharedTimeout {
        if let Some(timeout) = self.read().timeouts.get(name) {
            return timeout.clone();
        }
        let mut state = self.write();
        // Read under the lock that a reload takes: the value and the timeout it lands in are
        // one file's.
        let timeout = state.templates.time_limit(name);
        state
            .timeouts
            .entry(name.to_owned())
            .or_insert_with(|| SharedTimeout::new(timeout))
            .clone()
    }

    /// `name`'s retry (`resilience4j.retry`: its instance, or `configs.default`) as a
    /// [`tower::retry::Policy`]: see [`RetryPolicy`]. `None` when the section has neither.
    /// Every policy of a name spends one retry budget. A reload reaches the policies handed
    /// out after it (tower's `Retry` keeps the policy it was built with).
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn retry_policy(&self, name: &str) -> Option<RetryPolicy> {
        let settings = self.read().templates.limiters.retries.of(name).cloned()?;
        Some(RetryPolicy::new(settings, self.budget(name)))
    }

    #[cfg(any(feature = "yaml", feature = "toml"))]
    fn budget(&self, name: &str) -> Arc<tower::retry::budget::TpsBudget> {
        self.write()
            .budgets
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// `name`'s bulkhead (`resilience4j.bulkhead`: `max-concurrent-calls` of its instance, or
    /// of `configs.default`): tower's own concurrency limit under tower's load shedding (see
    /// [`BulkheadLayer`]), one semaphore per name, so that every service made from every
    /// layer handed out for the name shares the limit, as resilience4j's bulkhead of a name
    /// does, and a call beyond it is refused at once. `None` when the section has neither.
    ///
    /// A reload that changes the limit gives the layers handed out after it a new semaphore;
    /// those in use keep theirs (tower's limit is fixed once built), so until they are gone,
    /// calls through the old and the new layers together may reach both limits added up.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "yaml")] {
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::from_yaml(
    ///     "
    /// resilience4j.bulkhead:
    ///   configs:
    ///     default: { maxConcurrentCalls: 100 }
    /// ",
    /// )?;
    /// assert!(registry.bulkhead("pg").is_some());
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn bulkhead(&self, name: &str) -> Option<BulkheadLayer> {
        let mut state = self.write();
        let limit = *state.templates.limiters.bulkheads.of(name)?;
        let semaphore = match state.bulkheads.get(name) {
            Some((size, semaphore)) if *size == limit => semaphore.clone(),
            _ => {
                // At most tokio's maximum of permits.
                let permits = usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS);
                let semaphore = Arc::new(tokio::sync::Semaphore::new(permits));
                state
                    .bulkheads
                    .insert(name.to_owned(), (limit, semaphore.clone()));
                semaphore
            }
        };
        Some(tower::layer::util::Stack::new(
            tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(semaphore),
            tower::load_shed::LoadShedLayer::new(),
        ))
    }

    /// `name`'s whole stack in resilience4j's order, on tower's own layers: retry, breaker,
    /// time limiter, bulkhead (see [`Stack`]). Unlike [`layer`](Self::layer) (the breaker
    /// alone), it needs requests that can be cloned.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn stack(&self, name: &str) -> Stack {
        let retry = self
            .retry_policy(name)
            .unwrap_or_else(|| retry::none(self.budget(name)));
        Stack {
            retry: tower::retry::RetryLayer::new(retry),
            breaker: self.layer(name),
            timeout: self.timeout_layer(name).without_override(),
            bulkhead: self.bulkhead(name),
        }
    }

    /// A [keyed layer](crate::circuit_breaker::keyed) whose breakers (one per downstream) get
    /// `name`'s configuration and classification, with the default bounds (1024 keys, 10
    /// minutes idle): the same layer (the same breakers) for the same name, every time. Its
    /// breakers are in [`health`](Self::health), with their keys. A reload does not change
    /// them: their configuration is the one the layer was made with.
    pub fn keyed_layer(&self, name: &str) -> KeyedCircuitBreakerLayer {
        if let Some(layer) = self.read().keyed.get(name) {
            return layer.clone();
        }
        let mut state = self.write();
        if let Some(layer) = state.keyed.get(name) {
            return layer.clone();
        }
        let template = state.templates.of(name);
        let mut builder = template
            .builder
            .clone()
            .named(name)
            .metering(state.metering);
        if let Some(clock) = &state.clock {
            builder = builder.shared_clock(clock.clone());
        }
        let classifier = template.classifier.clone();
        // Checked when the file was read (under another name: any name goes here).
        let layer = builder.keyed().assemble().classify_with(classifier);
        state.keyed.insert(name.to_owned(), layer.clone());
        layer
    }

    /// The [`Chaos`] named `name` (see [Chaos](self#chaos)): the same one (one call counter)
    /// for the same name, every time, with the settings of `breakwater.chaos.instances.NAME`,
    /// or disabled for a name the file does not list (so that it can stay in the stack).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "yaml")] {
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::from_yaml(
    ///     "
    /// breakwater.chaos:
    ///   instances:
    ///     pg-client: { enabled: true, seed: 7, failure-rate: 0.05, latency-rate: 0.1, latency: 2s }
    /// ",
    /// )?;
    /// assert!(registry.chaos("pg-client").is_enabled());
    /// assert!(!registry.chaos("database").is_enabled());
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    pub fn chaos(&self, name: &str) -> Chaos {
        if let Some(chaos) = self.read().chaos.get(name) {
            return chaos.clone();
        }
        let mut state = self.write();
        if let Some(chaos) = state.chaos.get(name) {
            return chaos.clone();
        }
        // Checked when the file was read; a name it does not list gets a disabled one.
        let chaos = state
            .templates
            .chaos
            .get(name)
            .and_then(|builder| builder.build().ok())
            .unwrap_or_default();
        state.chaos.insert(name.to_owned(), chaos.clone());
        chaos
    }

    /// Replaces the configuration of the instance `name`: `configure` gets a builder with
    /// breakwater's defaults. If its breaker is made already, it is reconfigured (see
    /// [`CircuitBreaker::reconfigure`]): the window starts afresh, layers in use follow.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if a setting is out of range, or if `configure` sets a clock or asks
    /// for metrics (a breaker keeps those it was built with); nothing changes then.
    pub fn reconfigure(
        &self,
        name: &str,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Result<(), ConfigError> {
        let builder = configure(CircuitBreaker::builder(name));
        // The registry's clock serves every breaker it makes: a builder may not bring its
        // own (the same refusal as `CircuitBreaker::reconfigure`'s), checked before anything
        // changes.
        builder.clone().validate_for_reconfigure()?;
        let mut state = self.write();
        let classifier = state.templates.of(name).classifier.clone();
        state
            .templates
            .instances
            .insert(name.to_owned(), Template::new(builder.clone(), classifier));
        if let Some(breaker) = state.breakers.get(name) {
            breaker.reconfigure(|_| builder)?;
        }
        Ok(())
    }

    /// Takes every configuration of `from` (a file read again, say) in place of this
    /// registry's, and reconfigures each breaker already made whose configuration changed,
    /// each [`Chaos`] already handed out whose settings changed (one the file no longer lists
    /// is disabled), and each time limiter handed out ([`timeout_layer`](Self::timeout_layer))
    /// whose timeout changed. Returns the names of those reconfigured, each once. Retries and
    /// bulkheads take effect in what is handed out after it. Its warnings become this
    /// registry's. Bindings are the loader's: read the file again with the same `Loader`.
    ///
    /// A change of `record-exceptions` or `ignore-exceptions` reaches the layers made after
    /// the reload ([`layer`](Self::layer), [`classifier`](Self::classifier)); layers in use
    /// keep the classification they were made with. Keyed layers keep their configuration.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "toml")] {
    /// use breakwater::Registry;
    ///
    /// let registry = Registry::from_toml("[circuitbreaker.instances.pg]\nsliding-window-size = 10")?;
    /// let pg = registry.circuit_breaker("pg");
    /// let search = registry.circuit_breaker("search");
    ///
    /// let changed = Registry::from_toml("[circuitbreaker.instances.pg]\nsliding-window-size = 20")?;
    /// assert_eq!(registry.reload(&changed), ["pg"]);
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    pub fn reload(&self, from: &Registry) -> Vec<String> {
        let templates = from.read().templates.clone();
        let mut state = self.write();
        let mut reconfigured = Vec::new();
        for (name, breaker) in &state.breakers {
            let (old, new) = (state.templates.of(name), templates.of(name));
            // Only the breaker's settings: a layer keeps the classification it was made with,
            // so a change of classification alone (or bindings made anew) resets nothing.
            if old.builds_as(new) {
                continue;
            }
            let builder = new.builder.clone().named(name);
            // Checked when the file was read; a failure would leave the breaker as it was.
            if breaker.reconfigure(|_| builder).is_ok() {
                reconfigured.push(name.clone());
            }
        }
        for (name, chaos) in &state.chaos {
            let builder = templates.chaos.get(name).cloned().unwrap_or_default();
            if chaos.settings() != builder
                && chaos.reconfigure(&builder).is_ok()
                && !reconfigured.contains(name)
            {
                reconfigured.push(name.clone());
            }
        }
        for (name, timeout) in &state.timeouts {
            let new = templates.time_limit(name);
            if timeout.get() != new {
                timeout.set(new);
                if !reconfigured.contains(name) {
                    reconfigured.push(name.clone());
                }
            }
        }
        state.templates = templates;
        reconfigured
    }

    /// The file's `breakwater.NAME` section (`fleet` for `breakwater.fleet`), kept as data
    /// for the crate that reads it: breakwater-fleet reads `breakwater.fleet`. `None` if the
    /// file has none (or the registry has no file). `breakwater.chaos` is the registry's own
    /// ([`chaos`](Self::chaos)). After a [`reload`](Self::reload), the reloaded file's.
    #[cfg(any(feature = "yaml", feature = "toml"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "yaml", feature = "toml"))))]
    pub fn section(&self, name: &str) -> Option<Section> {
        let name = settings::canonical(name);
        self.read().templates.sections.get(&name).cloned()
    }

    /// Every breaker made so far, by name.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        self.read().breakers.values().cloned().collect()
    }

    /// The health of every breaker made so far (see [`HealthReport`]), the breakers of keyed
    /// layers included, by name (and key).
    pub fn health(&self) -> HealthReport {
        let (breakers, keyed) = {
            let state = self.read();
            let breakers: Vec<CircuitBreaker> = state.breakers.values().cloned().collect();
            let keyed: Vec<KeyedCircuitBreakerLayer> = state.keyed.values().cloned().collect();
            (breakers, keyed)
        };
        let mut entries: Vec<BreakerHealth> = breakers.iter().map(BreakerHealth::of).collect();
        for layer in keyed {
            entries.extend(layer.health().breakers);
        }
        entries.sort_by(|a, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
        #[allow(unused_mut)]
        let mut report = HealthReport::from_entries(entries);
        #[cfg(any(feature = "yaml", feature = "toml"))]
        {
            report.warnings = self.warnings().iter().map(ToString::to_string).collect();
        }
        report
    }
}

impl State {
    fn build(&self, name: &str) -> CircuitBreaker {
        let mut builder = self
            .templates
            .of(name)
            .builder
            .clone()
            .named(name)
            .metering(self.metering);
        if let Some(clock) = &self.clock {
            builder = builder.shared_clock(clock.clone());
        }
        builder.build_checked()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("Registry")
            .field("configs", &state.templates.configs.keys())
            .field("instances", &state.templates.instances.keys())
            .field("breakers", &state.breakers.keys())
            .finish()
    }
}
