//! The `breakwater.chaos` section: one set of [`Chaos`](crate::chaos::Chaos) settings per
//! name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration;
use super::error::LoadError;
use super::settings::{boolean, canonical, number};
use super::tree::{Node, Value};
use crate::chaos::{Chaos, ChaosBuilder};

/// The keys an instance accepts.
const KEYS: &[&str] = &[
    "enabled",
    "seed",
    "failure-rate",
    "response-loss-rate",
    "latency-rate",
    "latency",
    "latency-min",
    "latency-max",
];

/// The chaos settings of the file's documents, by name (empty when it has no section).
pub(crate) fn instances(roots: &[Node]) -> Result<BTreeMap<String, ChaosBuilder>, LoadError> {
    let mut found: Option<(String, &Node)> = None;
    for root in roots {
        let Value::Map(entries) = &root.value else {
            continue;
        };
        for (key, node) in entries {
            let segments: Vec<String> = key.split('.').map(canonical).collect();
            let section = match segments.as_slice() {
                [b, c] if b == "breakwater" && c == "chaos" => Some((key.clone(), node)),
                [b] if b == "breakwater" => match &node.value {
                    Value::Map(inner) => inner
                        .iter()
                        .find(|(k, _)| canonical(k) == "chaos")
                        .map(|(k, n)| (format!("{key}.{k}"), n)),
                    _ => None,
                },
                [b, c, ..] if b == "breakwater" && c == "chaos" => {
                    return Err(LoadError::key(
                        key,
                        node.line,
                        "write this setting nested under `breakwater.chaos`".into(),
                    ));
                }
                _ => None,
            };
            if let Some((path, node)) = section {
                if let Some((first, _)) = &found {
                    return Err(LoadError::key(
                        &path,
                        node.line,
                        format!("a second chaos section (the first is `{first}`)"),
                    ));
                }
                found = Some((path, node));
            }
        }
    }
    let Some((path, node)) = found else {
        return Ok(BTreeMap::new());
    };
    let mut instances = BTreeMap::new();
    let Value::Map(entries) = &node.value else {
        return Err(LoadError::bad_value(
            &path,
            node.line,
            node.value.to_string(),
            "a map holding `instances`",
        ));
    };
    for (key, node) in entries {
        let path = format!("{path}.{key}");
        if canonical(key) != "instances" {
            return Err(LoadError::key(
                &path,
                node.line,
                "unknown key; the chaos section holds `instances`".into(),
            ));
        }
        match &node.value {
            Value::Map(named) => {
                for (name, settings) in named {
                    let builder = instance(&format!("{path}.{name}"), settings)?;
                    instances.insert(name.clone(), builder);
                }
            }
            Value::Null => {}
            other => {
                return Err(LoadError::bad_value(
                    &path,
                    node.line,
                    other.to_string(),
                    "a map from names to chaos settings",
                ));
            }
        }
    }
    Ok(instances)
}

/// One instance's settings, checked.
fn instance(path: &str, node: &Node) -> Result<ChaosBuilder, LoadError> {
    let Value::Map(entries) = &node.value else {
        return Err(LoadError::bad_value(
            path,
            node.line,
            node.value.to_string(),
            "a map of chaos settings",
        ));
    };
    let mut builder = Chaos::builder();
    let (mut fixed, mut min, mut max): (Option<Duration>, Option<Duration>, Option<Duration>) =
        (None, None, None);
    // Where each builder setting was written, to place the builder's refusals.
    let mut written: BTreeMap<&'static str, (String, usize)> = BTreeMap::new();
    for (key, value) in entries {
        let key_path = format!("{path}.{key}");
        let line = value.line;
        let duration = || {
            duration::parse(&value.value).ok_or_else(|| {
                LoadError::bad_value(&key_path, line, value.value.to_string(), duration::ALLOWED)
            })
        };
        let setting = match canonical(key).as_str() {
            "enabled" => {
                builder = builder.enabled(boolean(&key_path, value)?);
                "enabled"
            }
            "seed" => {
                let seed = match &value.value {
                    Value::Integer(n) => u64::try_from(*n).ok(),
                    Value::Text(text) => text.trim().parse().ok(),
                    _ => None,
                };
                let seed = seed.ok_or_else(|| {
                    LoadError::bad_value(
                        &key_path,
                        line,
                        value.value.to_string(),
                        "a whole number from 0 to 18446744073709551615",
                    )
                })?;
                builder = builder.seed(seed);
                "seed"
            }
            "failurerate" => {
                builder = builder.failure_rate(number(&key_path, value)?);
                "failure_rate"
            }
            "responselossrate" => {
                builder = builder.response_loss_rate(number(&key_path, value)?);
                "response_loss_rate"
            }
            "latencyrate" => {
                builder = builder.latency_rate(number(&key_path, value)?);
                "latency_rate"
            }
            "latency" => {
                fixed = Some(duration()?);
                "latency"
            }
            "latencymin" => {
                min = Some(duration()?);
                "latency"
            }
            "latencymax" => {
                max = Some(duration()?);
                "latency"
            }
            _ => {
                return Err(LoadError::key(
                    &key_path,
                    line,
                    format!(
                        "unknown setting; the chaos settings are {} (kebab-case, camelCase or \
                         snake_case)",
                        KEYS.join(", ")
                    ),
                ));
            }
        };
        written.insert(setting, (key_path.clone(), line));
    }
    builder = match (fixed, min, max) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            let (key_path, line) = &written["latency"];
            return Err(LoadError::key(
                key_path,
                *line,
                "give `latency` (a fixed latency) or `latency-min` and `latency-max`, not both"
                    .into(),
            ));
        }
        (Some(fixed), None, None) => builder.latency(fixed),
        (None, Some(min), Some(max)) => builder.latency(min..=max),
        (None, Some(one), None) | (None, None, Some(one)) => {
            let (key_path, line) = &written["latency"];
            return Err(LoadError::key(
                key_path,
                *line,
                format!(
                    "`latency-min` and `latency-max` go together; for a fixed latency write \
                     `latency: {one:?}`"
                ),
            ));
        }
        (None, None, None) => builder,
    };
    match builder.build() {
        Ok(_) => Ok(builder),
        Err(e) => {
            let (key_path, line) = written
                .get(e.setting())
                .cloned()
                .unwrap_or_else(|| (path.to_owned(), node.line));
            Err(LoadError::bad_value(
                &key_path,
                line,
                e.value().to_owned(),
                e.allowed(),
            ))
        }
    }
}
