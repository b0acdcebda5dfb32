//! `breakwater.NAME` sections the registry keeps for other crates without interpreting them
//! (`breakwater.fleet` is breakwater-fleet's): [`Registry::section`](super::Registry::section).

use std::time::Duration;

#[cfg(any(feature = "yaml", feature = "toml"))]
use std::collections::BTreeMap;

#[cfg(any(feature = "yaml", feature = "toml"))]
use super::error::LoadError;
use super::settings::canonical;
use super::tree::{Node, Value};

/// A `breakwater.NAME` section of a configuration file that the registry keeps as data, for
/// the crate that reads it (breakwater itself reads `breakwater.chaos` only).
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
/// resilience4j.circuitbreaker:
///   instances:
///     pg: {}
/// breakwater:
///   fleet:
///     redis-url: redis://127.0.0.1:6379
///     quorum: 2
///     heartbeat: 1s
/// ",
/// )?;
/// let fleet = registry.section("fleet").unwrap();
/// assert_eq!(fleet.path(), "breakwater.fleet");
/// assert_eq!(fleet.get("redis-url").unwrap().as_str(), Some("redis://127.0.0.1:6379"));
/// assert_eq!(fleet.get("quorum").unwrap().as_integer(), Some(2));
/// assert_eq!(fleet.get("heartbeat").unwrap().as_duration(), Some(Duration::from_secs(1)));
/// assert_eq!(fleet.get("heartbeat").unwrap().line(), 9);
/// # }
/// # Ok::<(), breakwater::registry::LoadError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Section {
    path: String,
    line: usize,
    entries: Vec<Entry>,
}

/// One key of a [`Section`]: its value as the file wrote it, where it is.
#[derive(Debug, Clone)]
pub struct Entry {
    key: String,
    path: String,
    node: Node,
}

impl Section {
    /// The section's key path as the file wrote it (`breakwater.fleet`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The line its settings start on (1-based; 0 when unknown).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The section's keys, in the file's order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The entry of `key`, written in any of kebab-, camel- or snake case
    /// (`redis-url`, `redisUrl`, `redis_url`).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        let wanted = canonical(key);
        self.entries.iter().find(|e| canonical(&e.key) == wanted)
    }
}

impl Entry {
    /// The key as the file wrote it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key without case or separators (`redisurl` for `redis-url`, `redisUrl` or
    /// `redis_url`), as [`Section::get`] matches it: for telling keys apart.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "yaml")] {
    /// let registry = breakwater::Registry::from_yaml("breakwater.fleet:\n  redisUrl: x\n")?;
    /// let fleet = registry.section("fleet").unwrap();
    /// assert_eq!(fleet.entries().next().unwrap().canonical_key(), "redisurl");
    /// # }
    /// # Ok::<(), breakwater::registry::LoadError>(())
    /// ```
    pub fn canonical_key(&self) -> String {
        canonical(&self.key)
    }

    /// The key's full path (`breakwater.fleet.quorum`), for error messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The line the key is on (1-based; 0 when unknown).
    pub fn line(&self) -> usize {
        self.node.line
    }

    /// The value if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match &self.node.value {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The value if it is a whole number.
    pub fn as_integer(&self) -> Option<i64> {
        match self.node.value {
            Value::Integer(n) => Some(n),
            _ => None,
        }
    }

    /// The value if it is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.node.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value if it is a duration as the registry reads them: whole milliseconds
    /// (`30000`), a whole number with a unit of ns, us, ms, s, m, h or d (`30s`), or ISO-8601
    /// (`PT30S`).
    pub fn as_duration(&self) -> Option<Duration> {
        super::duration::parse(&self.node.value)
    }

    /// The value as the file wrote it, near enough to recognise in an error message
    /// (text quoted; `a map` for a map).
    pub fn display_value(&self) -> String {
        self.node.value.to_string()
    }
}

/// The `breakwater.NAME` sections of the file's documents other than `chaos`, by canonical
/// name (`fleet`).
#[cfg(any(feature = "yaml", feature = "toml"))]
pub(crate) fn sections(roots: &[Node]) -> Result<BTreeMap<String, Section>, LoadError> {
    let mut found: BTreeMap<String, Section> = BTreeMap::new();
    let mut add = |name: &str, path: String, node: &Node| -> Result<(), LoadError> {
        let name = canonical(name);
        if name == "chaos" {
            return Ok(());
        }
        let Value::Map(entries) = &node.value else {
            return Err(LoadError::bad_value(
                &path,
                node.line,
                node.value.to_string(),
                "a map of settings",
            ));
        };
        if let Some(first) = found.get(&name) {
            return Err(LoadError::key(
                &path,
                node.line,
                format!(
                    "a second `{}` section (the first is at line {})",
                    first.path, first.line
                ),
            ));
        }
        let entries = entries
            .iter()
            .map(|(key, node)| Entry {
                key: key.clone(),
                path: format!("{path}.{key}"),
                node: node.clone(),
            })
            .collect();
        found.insert(
            name,
            Section {
                line: node.line,
                path,
                entries,
            },
        );
        Ok(())
    };
    for root in roots {
        let Value::Map(entries) = &root.value else {
            continue;
        };
        for (key, node) in entries {
            let segments: Vec<&str> = key.split('.').collect();
            match segments.as_slice() {
                [b] if canonical(b) == "breakwater" => {
                    if let Value::Map(inner) = &node.value {
                        for (name, inner_node) in inner {
                            add(name, format!("{key}.{name}"), inner_node)?;
                        }
                    }
                }
                [b, name] if canonical(b) == "breakwater" => add(name, key.clone(), node)?,
                [b, name, ..] if canonical(b) == "breakwater" && canonical(name) != "chaos" => {
                    return Err(LoadError::key(
                        key,
                        node.line,
                        format!("write this setting nested under `{b}.{name}`"),
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(found)
}
