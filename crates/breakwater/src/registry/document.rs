//! Finding the breakers' section of a file, and resolving each configuration's inheritance.

use std::collections::BTreeMap;

use super::error::LoadError;
use super::limiters::{self, Limiters, SECTIONS};
use super::settings::{Inherits, Spec, canonical};
use super::tree::{Node, Value};
use super::warning::Load;
use super::{Template, Templates};

/// The breakers' section: its key path as written, and its node.
struct Section<'a> {
    path: String,
    node: &'a Node,
}

/// The templates a file describes. `roots` are its documents (YAML may hold several).
pub(crate) fn templates(roots: &[Node], load: &mut Load<'_>) -> Result<Templates, LoadError> {
    // Each section breakwater reads, once per file: the first one found of each name.
    let mut found: BTreeMap<String, Section<'_>> = BTreeMap::new();
    for root in roots {
        for (name, section) in sections(root)? {
            if name != "circuitbreaker" && !SECTIONS.contains(&name.as_str()) {
                let written = section.path.rsplit('.').next().unwrap_or(&name);
                load.note(
                    &section.path,
                    section.node.line,
                    format!(
                        "resilience4j's {written} has no counterpart in breakwater or tower here: \
                         ignored (breakwater reads circuitbreaker, {})",
                        SECTIONS.join(", ")
                    ),
                );
                continue;
            }
            if let Some(first) = found.get(&name) {
                return Err(LoadError::key(
                    &section.path,
                    section.node.line,
                    format!(
                        "a second {name} section (the first is at line {}): Spring profiles \
                         are not supported, keep one section per file",
                        first.node.line
                    ),
                ));
            }
            found.insert(name, section);
        }
    }
    let chaos = super::chaos::instances(roots)?;
    let sections = super::section::sections(roots)?;
    let mut limiters = Limiters::default();
    for (name, section) in &found {
        if name != "circuitbreaker" {
            limiters::read(&mut limiters, name, &section.path, section.node, load)?;
        }
    }
    let breakers = match found.get("circuitbreaker") {
        Some(section) => resolve(section, load)?,
        None if found.is_empty() && chaos.is_empty() && sections.is_empty() => {
            return Err(LoadError::key(
                "resilience4j.circuitbreaker",
                0,
                "missing: the file has no `resilience4j.circuitbreaker` (or `circuitbreaker`) \
                 section, no other resilience4j section breakwater reads, nor a `breakwater` \
                 section"
                    .into(),
            ));
        }
        // No breakers' section: every breaker gets breakwater's defaults.
        None => Templates::default(),
    };
    Ok(Templates {
        chaos,
        sections,
        limiters,
        ..breakers
    })
}

/// The resilience4j sections of one document, with their canonical names
/// (`circuitbreaker`, `timelimiter`, ...): `resilience4j.NAME`, nested or dotted, or, for the
/// sections breakwater reads, `NAME` at the top. Every other top-level key belongs to someone
/// else.
fn sections(root: &Node) -> Result<Vec<(String, Section<'_>)>, LoadError> {
    let Value::Map(entries) = &root.value else {
        return Ok(Vec::new());
    };
    let read = |name: &str| name == "circuitbreaker" || SECTIONS.contains(&name);
    let mut found = Vec::new();
    for (key, node) in entries {
        let segments: Vec<String> = key.split('.').map(canonical).collect();
        match segments.as_slice() {
            [r, name] if r == "resilience4j" => {
                found.push((
                    name.clone(),
                    Section {
                        path: key.clone(),
                        node,
                    },
                ));
            }
            // At the top, `circuitbreaker` (TOML's shape), and the others only when they have
            // resilience4j's shape: a top-level `retry` may be the application's own.
            [name] if name == "circuitbreaker" || (read(name) && has_configs(node)) => {
                found.push((
                    name.clone(),
                    Section {
                        path: key.clone(),
                        node,
                    },
                ));
            }
            [r] if r == "resilience4j" => {
                if let Value::Map(inner) = &node.value {
                    for (inner_key, inner_node) in inner {
                        found.push((
                            canonical(inner_key),
                            Section {
                                path: format!("{key}.{inner_key}"),
                                node: inner_node,
                            },
                        ));
                    }
                }
            }
            [r, name, ..] if r == "resilience4j" && read(name) => {
                return Err(LoadError::key(
                    key,
                    node.line,
                    format!("write this setting nested under `resilience4j.{name}`"),
                ));
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Whether a section's node holds `configs`, `instances` or `backends`.
fn has_configs(node: &Node) -> bool {
    matches!(&node.value, Value::Map(entries)
    if entries.iter().any(|(key, _)| {
        matches!(canonical(key).as_str(), "configs" | "instances" | "backends")
    }))
}

/// The `configs` and `instances` of a section at `path`, each parsed by `parse`, with the key
/// path of each. Another key of the section is an error for the breakers' section (a typo
/// would lose every setting), a warning for the others; resilience4j's aspect orders are
/// warnings everywhere.
pub(crate) type Configs<T> = BTreeMap<String, (String, T)>;

pub(crate) fn named<T>(
    path: &str,
    node: &Node,
    strict_keys: bool,
    parse: impl Fn(&str, &Node, &mut Load<'_>) -> Result<T, LoadError>,
    load: &mut Load<'_>,
) -> Result<(Configs<T>, Configs<T>), LoadError> {
    let mut configs = BTreeMap::new();
    let mut instances = BTreeMap::new();
    match &node.value {
        Value::Map(entries) => {
            for (key, node) in entries {
                let path = format!("{path}.{key}");
                let target = match canonical(key).as_str() {
                    "configs" => &mut configs,
                    // `backends` is resilience4j's older name for `instances`.
                    "instances" | "backends" => &mut instances,
                    other if other.ends_with("aspectorder") => {
                        load.note(
                            &path,
                            node.line,
                            format!(
                                "{}: ignored: the order of a stack is fixed (`Registry::stack`: \
                                 retry, circuit breaker, time limiter, bulkhead, from the \
                                 outside in)",
                                node.value
                            ),
                        );
                        continue;
                    }
                    _ if !strict_keys => {
                        load.note(
                            &path,
                            node.line,
                            "not a key breakwater reads: ignored (a resilience4j section holds \
                             `configs` and `instances`)"
                                .to_owned(),
                        );
                        continue;
                    }
                    _ => {
                        return Err(LoadError::key(
                            &path,
                            node.line,
                            "unknown key; a resilience4j section holds `configs` and \
                             `instances`"
                                .into(),
                        ));
                    }
                };
                match &node.value {
                    Value::Map(entries) => {
                        for (name, settings) in entries {
                            let path = format!("{path}.{name}");
                            let parsed = parse(&path, settings, load)?;
                            target.insert(name.clone(), (path, parsed));
                        }
                    }
                    Value::Null => {}
                    other => {
                        return Err(LoadError::bad_value(
                            &path,
                            node.line,
                            other.to_string(),
                            "a map from names to settings",
                        ));
                    }
                }
            }
        }
        Value::Null => {}
        other => {
            return Err(LoadError::bad_value(
                path,
                node.line,
                other.to_string(),
                "a map holding `configs` and `instances`",
            ));
        }
    }
    Ok((configs, instances))
}

/// Every configuration of the section, resolved through `base-config`.
fn resolve(section: &Section<'_>, load: &mut Load<'_>) -> Result<Templates, LoadError> {
    let (configs, instances) = named(&section.path, section.node, true, Spec::parse, load)?;

    // `config`: the name of a shared config being resolved; `None` for an instance.
    let resolved = |name: &str, own: &(String, Spec), config: Option<&str>| {
        let spec = inherit(&configs, own, config)?;
        let (builder, classifier) = spec.build(name, &own.0)?;
        Ok::<_, LoadError>(Template::new(builder, classifier))
    };
    let default = match configs.get("default") {
        Some(own) => resolved("default", own, Some("default"))?,
        None => Template::library_default(),
    };
    let mut shared = BTreeMap::new();
    for (name, own) in &configs {
        shared.insert(name.clone(), resolved(name, own, Some(name))?);
    }
    let mut named = BTreeMap::new();
    for (name, own) in &instances {
        named.insert(name.clone(), resolved(name, own, None)?);
    }
    Ok(Templates {
        default,
        configs: shared,
        instances: named,
        ..Templates::default()
    })
}

/// `own`'s settings over those of its `base-config` chain. Without `base-config`, every
/// configuration but `default` itself inherits `configs.default` when there is one, as in
/// resilience4j.
pub(crate) fn inherit<T: Inherits>(
    configs: &Configs<T>,
    own: &(String, T),
    config: Option<&str>,
) -> Result<T, LoadError> {
    let mut spec = own.1.clone();
    // The shared configs visited so far.
    let mut chain: Vec<String> = config.map(str::to_owned).into_iter().collect();
    let mut current = own;
    loop {
        let base_name = match current.1.base() {
            Some(base) => base.value().to_owned(),
            None if chain.iter().all(|n| n != "default") && configs.contains_key("default") => {
                "default".to_owned()
            }
            None => return Ok(spec),
        };
        let Some(base) = configs.get(&base_name) else {
            let set = current.1.base();
            let (path, line) = set.map_or((current.0.as_str(), 0), |s| {
                (s.origin().path.as_str(), s.origin().line)
            });
            return Err(LoadError::key(
                path,
                line,
                format!(
                    "base-config {base_name:?} names no config; the configs are: {}",
                    if configs.is_empty() {
                        "none".to_owned()
                    } else {
                        configs.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        };
        if chain.contains(&base_name) {
            chain.push(base_name);
            let origin = current.1.base().map(super::settings::Set::origin);
            return Err(LoadError::key(
                origin.map_or(current.0.as_str(), |o| o.path.as_str()),
                origin.map_or(0, |o| o.line),
                format!("base-config goes round in a circle: {}", chain.join(" -> ")),
            ));
        }
        chain.push(base_name);
        spec = spec.over(&base.1);
        current = base;
    }
}
