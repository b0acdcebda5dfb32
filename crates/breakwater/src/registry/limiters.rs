//! resilience4j's other sections: `timelimiter`, `retry` and `bulkhead`, each with `configs`,
//! `instances` and `base-config` as the breakers' section has them, read onto breakwater's
//! timeout and tower's own retry and concurrency limit. A key with no counterpart here is a
//! warning, not an error.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration;
use super::error::LoadError;
use super::exceptions::{self, Target};
use super::settings::{
    Inherits, Lists, Set, boolean, canonical, classes, entries, java_code, names_any, number, whole,
};
use super::tree::{Node, Value};
use super::warning::Load;
use crate::classify::http::HttpClassifier;

/// A setting per name: the instances the file lists, and `configs.default` for the others.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Named<T> {
    pub(crate) default: Option<T>,
    pub(crate) instances: BTreeMap<String, T>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self {
            default: None,
            instances: BTreeMap::new(),
        }
    }
}

impl<T> Named<T> {
    /// The setting of `name`: its instance's, or the default config's.
    pub(crate) fn of(&self, name: &str) -> Option<&T> {
        self.instances.get(name).or(self.default.as_ref())
    }
}

/// A retry, resolved: resilience4j's meaning of each setting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetrySettings {
    /// Calls in all, the first one included.
    pub(crate) max_attempts: u32,
    pub(crate) wait: Duration,
    /// `Some` for an exponential backoff.
    pub(crate) multiplier: Option<f64>,
    pub(crate) max_wait: Duration,
    /// Which results are retried: those it counts as failures.
    pub(crate) classifier: HttpClassifier,
}

/// The three sections, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Limiters {
    pub(crate) time_limits: Named<Duration>,
    pub(crate) retries: Named<RetrySettings>,
    pub(crate) bulkheads: Named<u32>,
}

/// The sections this module reads, by their canonical names.
pub(crate) const SECTIONS: &[&str] = &["timelimiter", "retry", "bulkhead"];

/// What a key's value is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Duration,
    /// A whole number from this minimum.
    Whole(u32),
    /// A number from this minimum.
    Number(f64),
    Bool,
    /// Exception classes.
    Classes,
    /// A predicate class: Java code, unless bound.
    JavaCode,
}

/// Which values of a key read and not carried over are reported.
#[derive(Debug, Clone, Copy)]
enum When {
    Always,
    /// This boolean.
    Is(bool),
    /// A duration other than zero.
    NotZero,
}

/// One key a section reads: its kebab-case name, its kind, and, for a key read and not
/// carried over, which values are reported and what happens instead.
struct Key {
    name: &'static str,
    kind: Kind,
    report: Option<(When, &'static str)>,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        report: None,
    }
}

const fn reported(name: &'static str, kind: Kind, when: When, instead: &'static str) -> Key {
    Key {
        name,
        kind,
        report: Some((when, instead)),
    }
}

/// Accepted and without effect here, as in the breakers' section.
const ACCEPTED: &str = "";

const TIME_LIMITER: &[Key] = &[
    key("timeout-duration", Kind::Duration),
    reported(
        "cancel-running-future",
        Kind::Bool,
        When::Is(false),
        "read as true: a call that runs out of time is dropped, and so cancelled, in Rust",
    ),
    reported(
        "event-consumer-buffer-size",
        Kind::Whole(0),
        When::Always,
        ACCEPTED,
    ),
];

const RETRY: &[Key] = &[
    key("max-attempts", Kind::Whole(1)),
    key("wait-duration", Kind::Duration),
    key("enable-exponential-backoff", Kind::Bool),
    key("exponential-backoff-multiplier", Kind::Number(1.0)),
    key("exponential-max-wait-duration", Kind::Duration),
    key("retry-exceptions", Kind::Classes),
    key("ignore-exceptions", Kind::Classes),
    key("retry-exception-predicate", Kind::JavaCode),
    key("result-predicate", Kind::JavaCode),
    reported(
        "enable-randomized-wait",
        Kind::Bool,
        When::Is(true),
        "ignored: the waits are not randomized",
    ),
    reported(
        "randomized-wait-factor",
        Kind::Number(0.0),
        When::Always,
        "ignored: the waits are not randomized",
    ),
    reported(
        "fail-after-max-attempts",
        Kind::Bool,
        When::Is(true),
        "ignored: after the last attempt its answer is returned as it is",
    ),
    reported(
        "event-consumer-buffer-size",
        Kind::Whole(0),
        When::Always,
        ACCEPTED,
    ),
];

const BULKHEAD: &[Key] = &[
    key("max-concurrent-calls", Kind::Whole(1)),
    reported(
        "max-wait-duration",
        Kind::Duration,
        When::NotZero,
        "read as 0: a call beyond max-concurrent-calls is refused at once (tower's LoadShed \
         over its ConcurrencyLimit), where resilience4j would let it wait that long for a \
         permit",
    ),
    reported(
        "fair-call-handling-strategy-enabled",
        Kind::Bool,
        When::Always,
        ACCEPTED,
    ),
    reported(
        "event-consumer-buffer-size",
        Kind::Whole(0),
        When::Always,
        ACCEPTED,
    ),
    reported(
        "writable-stack-trace-enabled",
        Kind::Bool,
        When::Always,
        ACCEPTED,
    ),
];

/// A value read.
#[derive(Debug, Clone, PartialEq)]
enum Read {
    Duration(Duration),
    Whole(u32),
    Number(f64),
    Bool(bool),
    Targets(Vec<Target>),
}

/// The value of `key` in `raw`, if it was read as `variant`.
macro_rules! read_as {
    ($raw:expr, $key:expr, $variant:ident) => {
        match $raw.values.get($key).map(Set::value) {
            Some(Read::$variant(value)) => Some(value.clone()),
            _ => None,
        }
    };
}

/// One configuration of a section as written: its `base-config`, and each key read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Raw {
    base: Option<Set<String>>,
    values: BTreeMap<&'static str, Set<Read>>,
}

impl Inherits for Raw {
    fn base(&self) -> Option<&Set<String>> {
        self.base.as_ref()
    }

    fn over(&self, base: &Self) -> Self {
        let mut values = base.values.clone();
        values.extend(self.values.clone());
        Raw {
            base: self.base.clone(),
            values,
        }
    }
}

impl Raw {
    /// The settings of the map at `path`, in the section whose keys are `keys`.
    fn parse(
        section: &str,
        keys: &'static [Key],
        path: &str,
        node: &Node,
        load: &mut Load<'_>,
    ) -> Result<Self, LoadError> {
        let mut raw = Raw::default();
        for (name, value, origin) in entries(path, node)? {
            let key_path = origin.path.clone();
            let canonical_key = canonical(name);
            if canonical_key == "baseconfig" {
                let Value::Text(base) = &value.value else {
                    return Err(LoadError::bad_value(
                        &key_path,
                        value.line,
                        origin.text,
                        "a string",
                    ));
                };
                raw.base = Some(Set::new(base.clone(), origin));
                continue;
            }
            let Some(key) = keys.iter().find(|k| canonical(k.name) == canonical_key) else {
                let known: Vec<&str> = keys.iter().map(|k| k.name).collect();
                load.note(
                    &key_path,
                    value.line,
                    format!(
                        "not a setting of resilience4j's {section} that breakwater reads: \
                         ignored (it reads base-config, {})",
                        known.join(", ")
                    ),
                );
                continue;
            };
            let read = match key.kind {
                Kind::Duration => {
                    Read::Duration(duration::parse(&value.value).ok_or_else(|| {
                        LoadError::bad_value(
                            &key_path,
                            value.line,
                            origin.text.clone(),
                            duration::ALLOWED,
                        )
                    })?)
                }
                Kind::Whole(min) => {
                    let n = whole(&key_path, value).ok().filter(|n| *n >= min);
                    let Some(n) = n else {
                        return Err(LoadError::bad_value(
                            &key_path,
                            value.line,
                            origin.text.clone(),
                            &format!("a whole number from {min} to {}", u32::MAX),
                        ));
                    };
                    Read::Whole(n)
                }
                Kind::Number(min) => {
                    let x = number(&key_path, value)?;
                    if x < min {
                        return Err(LoadError::bad_value(
                            &key_path,
                            value.line,
                            origin.text,
                            &format!("a number from {min}"),
                        ));
                    }
                    Read::Number(x)
                }
                Kind::Bool => Read::Bool(boolean(&key_path, value)?),
                Kind::Classes => {
                    let targets = classes(&key_path, value, Lists::of(section, key.name), load)?;
                    if key.name == "retry-exceptions"
                        && targets.iter().any(Target::names_client_errors)
                    {
                        load.note(
                            &key_path,
                            value.line,
                            "names client errors (4xx): a 4xx is never retried (the request is \
                             at fault), whatever the file says"
                                .to_owned(),
                        );
                    }
                    if !names_any(value) {
                        // An empty list is the setting left out, as in resilience4j.
                        continue;
                    }
                    Read::Targets(targets)
                }
                Kind::JavaCode => {
                    let instead = if key.name == "retry-exception-predicate" {
                        (
                            "ignored (bind the name with `Loader::bind`); without a \
                             retry-exceptions breakwater can use, no error is retried",
                            "bind the name with `Loader::bind`",
                        )
                    } else {
                        (
                            "ignored (bind the name with `Loader::bind`)",
                            "bind the name with `Loader::bind`",
                        )
                    };
                    Read::Targets(
                        java_code(&key_path, value, instead, load)?
                            .into_iter()
                            .collect(),
                    )
                }
            };
            if let Some((when, instead)) = key.report {
                let applies = match (when, &read) {
                    (When::Is(when), Read::Bool(b)) => *b == when,
                    (When::NotZero, Read::Duration(d)) => !d.is_zero(),
                    _ => true,
                };
                if applies && !instead.is_empty() {
                    load.note(&key_path, value.line, format!("{}: {instead}", origin.text));
                }
            }
            raw.values.insert(key.name, Set::new(read, origin));
        }
        Ok(raw)
    }

    fn duration(&self, key: &str) -> Option<Duration> {
        read_as!(self, key, Duration)
    }

    fn whole(&self, key: &str) -> Option<u32> {
        read_as!(self, key, Whole)
    }

    fn number(&self, key: &str) -> Option<f64> {
        read_as!(self, key, Number)
    }

    fn boolean(&self, key: &str) -> Option<bool> {
        read_as!(self, key, Bool)
    }

    fn targets(&self, key: &str) -> Vec<Target> {
        read_as!(self, key, Targets).unwrap_or_default()
    }

    /// The time limiter's timeout: resilience4j's default is one second.
    fn time_limit(&self) -> Duration {
        self.duration("timeout-duration")
            .unwrap_or(Duration::from_secs(1))
    }

    /// The retry these settings describe, with resilience4j's defaults: 3 attempts, 500 ms
    /// apart, a multiplier of 1.5 when the backoff is exponential.
    fn retry(&self) -> RetrySettings {
        let exponential = self.boolean("enable-exponential-backoff").unwrap_or(false);
        let mut retry = self.targets("retry-exceptions");
        retry.extend(self.targets("retry-exception-predicate"));
        // Named, with nothing breakwater can use: retry no error (a warning said so), rather
        // than every one.
        let named = ["retry-exceptions", "retry-exception-predicate"]
            .iter()
            .any(|k| self.values.contains_key(k));
        if named && retry.is_empty() {
            retry.push(Target::Known(exceptions::NOTHING));
        }
        let classifier = exceptions::classifier(
            &retry,
            &self.targets("result-predicate"),
            &self.targets("ignore-exceptions"),
        );
        RetrySettings {
            max_attempts: self.whole("max-attempts").unwrap_or(3),
            wait: self
                .duration("wait-duration")
                .unwrap_or(Duration::from_millis(500)),
            multiplier: exponential
                .then(|| self.number("exponential-backoff-multiplier").unwrap_or(1.5)),
            max_wait: self
                .duration("exponential-max-wait-duration")
                .unwrap_or(Duration::MAX),
            classifier,
        }
    }

    /// The bulkhead's limit: resilience4j's default is 25 calls.
    fn bulkhead(&self) -> u32 {
        self.whole("max-concurrent-calls").unwrap_or(25)
    }
}

/// The section named `name` (canonical) at `path`, resolved.
pub(crate) fn read(
    limiters: &mut Limiters,
    name: &str,
    path: &str,
    node: &Node,
    load: &mut Load<'_>,
) -> Result<(), LoadError> {
    let keys = match name {
        "timelimiter" => TIME_LIMITER,
        "retry" => RETRY,
        _ => BULKHEAD,
    };
    let section = match name {
        "timelimiter" => "time limiter",
        other => other,
    };
    let (configs, instances) = super::document::named(
        path,
        node,
        false,
        |path, node, load| Raw::parse(section, keys, path, node, load),
        load,
    )?;
    let resolve =
        |own: &(String, Raw), config: Option<&str>| super::document::inherit(&configs, own, config);
    let mut resolved = Named::default();
    if let Some(own) = configs.get("default") {
        resolved.default = Some(resolve(own, Some("default"))?);
    }
    for (config, own) in &configs {
        // A config named by base-config is checked through its inheritors; resolve the others
        // too, so that a circle or a missing base is found whoever uses them.
        resolve(own, Some(config))?;
    }
    for (instance, own) in &instances {
        resolved
            .instances
            .insert(instance.clone(), resolve(own, None)?);
    }
    match name {
        "timelimiter" => limiters.time_limits = map(&resolved, Raw::time_limit),
        "retry" => limiters.retries = map(&resolved, Raw::retry),
        _ => limiters.bulkheads = map(&resolved, Raw::bulkhead),
    }
    Ok(())
}

fn map<T>(named: &Named<Raw>, f: impl Fn(&Raw) -> T) -> Named<T> {
    Named {
        default: named.default.as_ref().map(&f),
        instances: named
            .instances
            .iter()
            .map(|(k, v)| (k.clone(), f(v)))
            .collect(),
    }
}
