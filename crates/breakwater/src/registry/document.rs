//! Finding the breakers' section of a file, and resolving each configuration's inheritance.

use std::collections::BTreeMap;

use super::error::LoadError;
use super::settings::{Spec, canonical};
use super::tree::{Node, Value};
use super::warning::Load;
use super::{Template, Templates};

/// The breakers' section: its key path as written, and its node.
struct Section<'a> {
    path: String,
    node: &'a Node,
}

/// The templates a file describes. `roots` are its documents (YAML may hold several).
pub(crate) fn templates(roots: &[Node], load: &mut Load) -> Result<Templates, LoadError> {
    let mut found: Option<Section<'_>> = None;
    for root in roots {
        for section in sections(root)? {
            if let Some(first) = &found {
                return Err(LoadError::key(
                    &section.path,
                    section.node.line,
                    format!(
                        "a second breakers' section (the first is at line {}): Spring profiles \
                         are not supported, keep one section per file",
                        first.node.line
                    ),
                ));
            }
            found = Some(section);
        }
    }
    let chaos = super::chaos::instances(roots)?;
    let sections = super::section::sections(roots)?;
    let Some(section) = found else {
        if !chaos.is_empty() || !sections.is_empty() {
            // Chaos settings alone: every breaker gets breakwater's defaults.
            return Ok(Templates {
                chaos,
                sections,
                ..Templates::default()
            });
        }
        return Err(LoadError::key(
            "resilience4j.circuitbreaker",
            0,
            "missing: the file has no `resilience4j.circuitbreaker` (or `circuitbreaker`) \
             section, nor a `breakwater` section"
                .into(),
        ));
    };
    Ok(Templates {
        chaos,
        sections,
        ..resolve(&section, load)?
    })
}

/// The breakers' sections of one document: `resilience4j.circuitbreaker`, nested or dotted, or
/// `circuitbreaker` at the top. Every other top-level key belongs to someone else.
fn sections(root: &Node) -> Result<Vec<Section<'_>>, LoadError> {
    let Value::Map(entries) = &root.value else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for (key, node) in entries {
        let segments: Vec<String> = key.split('.').map(canonical).collect();
        match segments.as_slice() {
            [r, c] if r == "resilience4j" && c == "circuitbreaker" => found.push(Section {
                path: key.clone(),
                node,
            }),
            [c] if c == "circuitbreaker" => found.push(Section {
                path: key.clone(),
                node,
            }),
            [r] if r == "resilience4j" => {
                if let Value::Map(inner) = &node.value {
                    for (inner_key, inner_node) in inner {
                        if canonical(inner_key) == "circuitbreaker" {
                            found.push(Section {
                                path: format!("{key}.{inner_key}"),
                                node: inner_node,
                            });
                        }
                    }
                }
            }
            [r, c, ..] if r == "resilience4j" && c == "circuitbreaker" => {
                return Err(LoadError::key(
                    key,
                    node.line,
                    "write this setting nested under `resilience4j.circuitbreaker`".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Every configuration of the section, resolved through `base-config`.
fn resolve(section: &Section<'_>, load: &mut Load) -> Result<Templates, LoadError> {
    let mut configs: BTreeMap<String, (String, Spec)> = BTreeMap::new();
    let mut instances: BTreeMap<String, (String, Spec)> = BTreeMap::new();
    match &section.node.value {
        Value::Map(entries) => {
            for (key, node) in entries {
                let path = format!("{}.{key}", section.path);
                let target = match canonical(key).as_str() {
                    "configs" => &mut configs,
                    // `backends` is resilience4j's older name for `instances`.
                    "instances" | "backends" => &mut instances,
                    _ => {
                        return Err(LoadError::key(
                            &path,
                            node.line,
                            "unknown key; the breakers' section holds `configs` and \
                             `instances`"
                                .into(),
                        ));
                    }
                };
                match &node.value {
                    Value::Map(named) => {
                        for (name, settings) in named {
                            let path = format!("{path}.{name}");
                            let spec = Spec::parse(&path, settings, load)?;
                            target.insert(name.clone(), (path, spec));
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
                &section.path,
                section.node.line,
                other.to_string(),
                "a map holding `configs` and `instances`",
            ));
        }
    }

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
        chaos: BTreeMap::new(),
        sections: BTreeMap::new(),
        warnings: Vec::new(),
    })
}

/// `own`'s settings over those of its `base-config` chain. Without `base-config`, every
/// configuration but `default` itself inherits `configs.default` when there is one, as in
/// resilience4j.
fn inherit(
    configs: &BTreeMap<String, (String, Spec)>,
    own: &(String, Spec),
    config: Option<&str>,
) -> Result<Spec, LoadError> {
    let mut spec = own.1.clone();
    // The shared configs visited so far.
    let mut chain: Vec<String> = config.map(str::to_owned).into_iter().collect();
    let mut current = own;
    loop {
        let base_name = match &current.1.base {
            Some(base) => base.value().to_owned(),
            None if chain.iter().all(|n| n != "default") && configs.contains_key("default") => {
                "default".to_owned()
            }
            None => return Ok(spec),
        };
        let Some(base) = configs.get(&base_name) else {
            let set = current.1.base.as_ref();
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
            let origin = current.1.base.as_ref().map(super::settings::Set::origin);
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
