//! A fleet from the registry's file: `breakwater.fleet`, beside resilience4j's sections.
//!
//! ```yaml
//! breakwater:
//!   fleet:
//!     redis-url: redis://127.0.0.1:6379   # required
//!     quorum: 2                           # optional, as the builder's methods
//!     heartbeat: 1s
//!     ttl: 3s
//!     key-prefix: breakwater
//!     max-open: 10m
//!     max-probe-time: 30s
//! ```

use std::fmt;
use std::time::Duration;

use breakwater::Registry;
use breakwater::registry::Entry;

use crate::{Fleet, FleetBuilder, FleetError};

/// The keys `breakwater.fleet` accepts.
const KEYS: &str = "redis-url, quorum, heartbeat, ttl, key-prefix, max-open, max-probe-time";

/// A `breakwater.fleet` section that cannot be used: the key path, its line, the value and
/// what is allowed.
///
/// # Example
///
/// ```
/// use breakwater::Registry;
/// use breakwater_fleet::FleetBuilder;
///
/// let registry = Registry::from_yaml("breakwater:\n  fleet:\n    quorum: 2\n")?;
/// let error = FleetBuilder::from_registry(&registry).unwrap_err();
/// assert_eq!(error.path, "breakwater.fleet.redis-url");
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFleetError {
    /// The key path (`breakwater.fleet.quorum`).
    pub path: String,
    /// The line it is on (1-based; 0 when unknown).
    pub line: usize,
    /// The value as the file wrote it.
    pub value: String,
    /// What is allowed.
    pub allowed: String,
}

impl fmt::Display for RegistryFleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}): {}: {}",
            self.path, self.line, self.value, self.allowed
        )
    }
}

impl std::error::Error for RegistryFleetError {}

fn refuse(entry: &Entry, allowed: impl Into<String>) -> RegistryFleetError {
    RegistryFleetError {
        path: entry.path().to_owned(),
        line: entry.line(),
        value: entry.display_value(),
        allowed: allowed.into(),
    }
}

fn duration(entry: &Entry) -> Result<Duration, RegistryFleetError> {
    entry.as_duration().ok_or_else(|| {
        refuse(
            entry,
            "a duration: whole milliseconds (`1000`) or a whole number with a unit (`1s`, `500ms`)",
        )
    })
}

impl FleetBuilder {
    /// A builder with the settings of the registry's `breakwater.fleet` section (see the
    /// [module docs](crate#the-registrys-file)); `None` if the file has none. Set the
    /// [`instance`](Self::instance) (it differs per process, so it is not in the shared file)
    /// and [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// A [`RegistryFleetError`] naming the key path, the line, the value and what is allowed,
    /// for an unknown key or a value of the wrong kind or out of range.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::Registry;
    /// use breakwater_fleet::FleetBuilder;
    ///
    /// let registry = Registry::from_yaml(
    ///     "breakwater.fleet:\n  redis-url: redis://127.0.0.1:6379\n  quorum: 2\n",
    /// )?;
    /// let builder = FleetBuilder::from_registry(&registry)?.expect("the file has one");
    /// let builder = builder.instance("pay-1"); // then `.connect().await?`
    /// # let _ = builder;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_registry(registry: &Registry) -> Result<Option<Self>, RegistryFleetError> {
        let Some(section) = registry.section("fleet") else {
            return Ok(None);
        };
        let url = section.get("redis-url").ok_or_else(|| RegistryFleetError {
            path: format!("{}.redis-url", section.path()),
            line: section.line(),
            value: "nothing".to_owned(),
            allowed: "required: the Redis server's URL (`redis://127.0.0.1:6379`)".to_owned(),
        })?;
        let url = url
            .as_str()
            .ok_or_else(|| refuse(url, "a Redis URL (`redis://127.0.0.1:6379`)"))?;
        let mut builder = Fleet::builder(url);
        for entry in section.entries() {
            builder = match entry.canonical_key().as_str() {
                "redisurl" => builder,
                "quorum" => {
                    let quorum = entry
                        .as_integer()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| refuse(entry, "a whole number of instances, at least 1"))?;
                    builder.quorum(quorum)
                }
                "heartbeat" => builder.heartbeat(duration(entry)?),
                "ttl" => builder.ttl(duration(entry)?),
                "keyprefix" => builder.key_prefix(
                    entry
                        .as_str()
                        .ok_or_else(|| refuse(entry, "text (`breakwater`)"))?,
                ),
                "maxopen" => builder.max_open(duration(entry)?),
                "maxprobetime" => builder.max_probe_time(duration(entry)?),
                _ => {
                    return Err(refuse(
                        entry,
                        format!("not a fleet setting; the settings are {KEYS}"),
                    ));
                }
            };
        }
        // What only the builder checks (ranges between settings), placed in the file.
        if let Err(error) = builder.clone().instance("check").validate() {
            let (setting, value, allowed) = match error {
                FleetError::Setting {
                    setting,
                    value,
                    allowed,
                } => (setting, value, allowed.to_owned()),
                FleetError::Url { url, reason } => ("redis-url", url, reason),
            };
            return Err(match section.get(setting) {
                Some(entry) => refuse(entry, allowed),
                None => RegistryFleetError {
                    path: format!("{}.{setting}", section.path()),
                    line: section.line(),
                    value,
                    allowed,
                },
            });
        }
        Ok(Some(builder))
    }
}

impl Fleet {
    /// Joins every breaker the registry has made so far ([`Registry::breakers`]); returns how
    /// many joined. Breakers the registry makes later join with [`join`](Self::join).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use breakwater::Registry;
    /// use breakwater_fleet::FleetBuilder;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::from_path("application.yml")?;
    /// let pg = registry.circuit_breaker("pg-payment");
    /// if let Some(builder) = FleetBuilder::from_registry(&registry)? {
    ///     let fleet = builder.instance("pay-1").connect().await?;
    ///     assert_eq!(fleet.join_registry(&registry), 1);
    /// }
    /// # let _ = pg;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_registry(&self, registry: &Registry) -> usize {
        registry
            .breakers()
            .iter()
            .filter(|breaker| self.join(breaker))
            .count()
    }
}
