//! One configuration (a shared config or an instance) as a file gives it: every setting with
//! the place it was written, inheritance through `base-config`, and the breaker it builds.

use std::time::Duration;

use super::duration;
use super::error::LoadError;
use super::exceptions::{self, Target};
use super::tree::{Node, Value};
use super::warning::Load;
use crate::circuit_breaker::{Builder, ConfigError, ExponentialBackoff};
use crate::classify::http::HttpClassifier;

/// Where a setting was written: its key path and line, and its value as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Origin {
    pub(crate) path: String,
    pub(crate) line: usize,
    pub(crate) text: String,
}

/// A setting's value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Set<T> {
    value: T,
    origin: Origin,
}

impl<T> Set<T> {
    pub(crate) fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }

    pub(crate) fn value(&self) -> &T {
        &self.value
    }

    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowType {
    Count,
    Time,
}

/// The settings one configuration gives (each `None` when not given there).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Spec {
    pub(crate) base: Option<Set<String>>,
    window_type: Option<Set<WindowType>>,
    window_size: Option<Set<u32>>,
    minimum_calls: Option<Set<u32>>,
    failure_rate: Option<Set<f64>>,
    slow_rate: Option<Set<f64>>,
    slow_duration: Option<Set<Duration>>,
    wait_in_open: Option<Set<Duration>>,
    permitted_in_half_open: Option<Set<u32>>,
    max_wait_in_half_open: Option<Set<Duration>>,
    automatic_transition: Option<Set<bool>>,
    exponential: Option<Set<bool>>,
    multiplier: Option<Set<f64>>,
    max_wait_in_open: Option<Set<Duration>>,
    randomized: Option<Set<bool>>,
    randomized_factor: Option<Set<f64>>,
    record: Option<Set<Vec<Target>>>,
    ignore: Option<Set<Vec<Target>>>,
    /// Bound predicates: `record-failure-predicate`, `record-result-predicate`,
    /// `ignore-exception-predicate`.
    record_predicate: Option<Set<Target>>,
    result_predicate: Option<Set<Target>>,
    ignore_predicate: Option<Set<Target>>,
}

/// A configuration that may inherit another's settings through `base-config`.
pub(crate) trait Inherits: Clone {
    /// Its `base-config`, if it has one.
    fn base(&self) -> Option<&Set<String>>;
    /// Its settings, with `base`'s filling in what it leaves out.
    #[must_use]
    fn over(&self, base: &Self) -> Self;
}

impl Inherits for Spec {
    fn base(&self) -> Option<&Set<String>> {
        self.base.as_ref()
    }

    fn over(&self, base: &Self) -> Self {
        self.over_base(base)
    }
}

/// The keys a configuration accepts, as resilience4j's Spring Boot properties name them.
pub(crate) const KEYS: &[&str] = &[
    "base-config",
    "sliding-window-type",
    "sliding-window-size",
    "minimum-number-of-calls",
    "failure-rate-threshold",
    "slow-call-rate-threshold",
    "slow-call-duration-threshold",
    "wait-duration-in-open-state",
    "permitted-number-of-calls-in-half-open-state",
    "max-wait-duration-in-half-open-state",
    "automatic-transition-from-open-to-half-open-enabled",
    "enable-exponential-backoff",
    "exponential-backoff-multiplier",
    "exponential-max-wait-duration-in-open-state",
    "enable-randomized-wait",
    "randomized-wait-factor",
    "record-exceptions",
    "ignore-exceptions",
    "record-failure-predicate",
    "record-result-predicate",
    "ignore-exception-predicate",
    "register-health-indicator",
    "allow-health-indicator-to-fail",
    "event-consumer-buffer-size",
    "writable-stack-trace-enabled",
    "ignore-class-binding-exceptions",
];

/// A key in kebab-case, camelCase or snake_case, reduced to one form: lower case, no
/// separators (`failureRateThreshold`, `failure-rate-threshold` and `failure_rate_threshold`
/// are one key, as Spring Boot's relaxed binding has it).
pub(crate) fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The settings of the map at `path`: each key as written, its value, and where it was
/// written.
pub(super) fn entries<'a>(
    path: &str,
    node: &'a Node,
) -> Result<impl Iterator<Item = (&'a String, &'a Node, Origin)>, LoadError> {
    let Value::Map(entries) = &node.value else {
        return Err(LoadError::bad_value(
            path,
            node.line,
            node.value.to_string(),
            "a map of settings",
        ));
    };
    let path = path.to_owned();
    Ok(entries.iter().map(move |(key, value)| {
        let origin = Origin {
            path: format!("{path}.{key}"),
            line: value.line,
            text: value.value.to_string(),
        };
        (key, value, origin)
    }))
}

const WHOLE: &str = "a whole number";
const NUMBER: &str = "a number";
const BOOLEAN: &str = "true or false";

impl Spec {
    /// Reads the settings of the map at `path`.
    pub(crate) fn parse(path: &str, node: &Node, load: &mut Load<'_>) -> Result<Self, LoadError> {
        let mut spec = Spec::default();
        for (key, value, origin) in entries(path, node)? {
            let key_path = origin.path.clone();
            let whole = || whole(&key_path, value);
            let number = || number(&key_path, value);
            let duration = || {
                duration::parse(&value.value).ok_or_else(|| {
                    LoadError::bad_value(
                        &key_path,
                        value.line,
                        origin.text.clone(),
                        duration::ALLOWED,
                    )
                })
            };
            let boolean = || boolean(&key_path, value);
            match canonical(key).as_str() {
                "baseconfig" => spec.base = set(text(&key_path, value)?, &origin),
                "slidingwindowtype" => {
                    let kind = match canonical(&text(&key_path, value)?).as_str() {
                        "countbased" => WindowType::Count,
                        "timebased" => WindowType::Time,
                        _ => {
                            return Err(LoadError::bad_value(
                                &key_path,
                                value.line,
                                origin.text,
                                "COUNT_BASED or TIME_BASED",
                            ));
                        }
                    };
                    spec.window_type = set(kind, &origin);
                }
                "slidingwindowsize" => spec.window_size = set(whole()?, &origin),
                "minimumnumberofcalls" => spec.minimum_calls = set(whole()?, &origin),
                "failureratethreshold" => spec.failure_rate = set(number()?, &origin),
                "slowcallratethreshold" => spec.slow_rate = set(number()?, &origin),
                "slowcalldurationthreshold" => spec.slow_duration = set(duration()?, &origin),
                "waitdurationinopenstate" => spec.wait_in_open = set(duration()?, &origin),
                "permittednumberofcallsinhalfopenstate" => {
                    spec.permitted_in_half_open = set(whole()?, &origin);
                }
                "maxwaitdurationinhalfopenstate" => {
                    spec.max_wait_in_half_open = set(duration()?, &origin);
                }
                "automatictransitionfromopentohalfopenenabled" => {
                    spec.automatic_transition = set(boolean()?, &origin);
                }
                "enableexponentialbackoff" => spec.exponential = set(boolean()?, &origin),
                "exponentialbackoffmultiplier" => spec.multiplier = set(number()?, &origin),
                "exponentialmaxwaitdurationinopenstate" => {
                    spec.max_wait_in_open = set(duration()?, &origin);
                }
                "enablerandomizedwait" => spec.randomized = set(boolean()?, &origin),
                "randomizedwaitfactor" => spec.randomized_factor = set(number()?, &origin),
                "recordexceptions" => {
                    spec.record = set(classes(&key_path, value, Lists::Record, load)?, &origin);
                }
                "ignoreexceptions" => {
                    spec.ignore = set(classes(&key_path, value, Lists::Ignore, load)?, &origin);
                }
                // Spring Boot actuator and Java runtime settings: nothing to do here (the
                // registry's health report covers every breaker), but the value is checked.
                "registerhealthindicator"
                | "allowhealthindicatortofail"
                | "writablestacktraceenabled"
                | "ignoreclassbindingexceptions" => {
                    boolean()?;
                }
                "eventconsumerbuffersize" => {
                    whole()?;
                }
                predicate @ ("recordfailurepredicate"
                | "ignoreexceptionpredicate"
                | "recordresultpredicate") => {
                    let target = java_code(
                        &key_path,
                        value,
                        (
                            "ignored (bind the name with `Loader::bind`, or classify outcomes \
                             with `CircuitBreaker::layer_with`)",
                            "bind the name with `Loader::bind`, or classify outcomes with \
                             `CircuitBreaker::layer_with`",
                        ),
                        load,
                    )?;
                    let slot = match predicate {
                        "recordfailurepredicate" => &mut spec.record_predicate,
                        "recordresultpredicate" => &mut spec.result_predicate,
                        _ => &mut spec.ignore_predicate,
                    };
                    *slot = target.and_then(|target| set(target, &origin));
                }
                _ => {
                    return Err(LoadError::key(
                        &key_path,
                        value.line,
                        format!(
                            "unknown setting; the settings are {} (kebab-case, camelCase or \
                             snake_case)",
                            KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(spec)
    }

    /// These settings, with `base`'s filling in what they leave out.
    fn over_base(&self, base: &Spec) -> Spec {
        fn or<T: Clone>(mine: &Option<Set<T>>, base: &Option<Set<T>>) -> Option<Set<T>> {
            mine.clone().or_else(|| base.clone())
        }
        Spec {
            base: self.base.clone(),
            window_type: or(&self.window_type, &base.window_type),
            window_size: or(&self.window_size, &base.window_size),
            minimum_calls: or(&self.minimum_calls, &base.minimum_calls),
            failure_rate: or(&self.failure_rate, &base.failure_rate),
            slow_rate: or(&self.slow_rate, &base.slow_rate),
            slow_duration: or(&self.slow_duration, &base.slow_duration),
            wait_in_open: or(&self.wait_in_open, &base.wait_in_open),
            permitted_in_half_open: or(&self.permitted_in_half_open, &base.permitted_in_half_open),
            max_wait_in_half_open: or(&self.max_wait_in_half_open, &base.max_wait_in_half_open),
            automatic_transition: or(&self.automatic_transition, &base.automatic_transition),
            exponential: or(&self.exponential, &base.exponential),
            multiplier: or(&self.multiplier, &base.multiplier),
            max_wait_in_open: or(&self.max_wait_in_open, &base.max_wait_in_open),
            randomized: or(&self.randomized, &base.randomized),
            randomized_factor: or(&self.randomized_factor, &base.randomized_factor),
            record: or(&self.record, &base.record),
            ignore: or(&self.ignore, &base.ignore),
            record_predicate: or(&self.record_predicate, &base.record_predicate),
            result_predicate: or(&self.result_predicate, &base.result_predicate),
            ignore_predicate: or(&self.ignore_predicate, &base.ignore_predicate),
        }
    }

    /// The breaker these settings describe (named `name`), checked, and the classification
    /// their exception lists describe. `path` names the configuration, for errors about
    /// settings left at their defaults.
    pub(crate) fn build(
        &self,
        name: &str,
        path: &str,
    ) -> Result<(Builder, HttpClassifier), LoadError> {
        let mut builder = crate::CircuitBreaker::builder(name);
        let size = self.window_size.as_ref().map_or(100, |s| s.value);
        builder = match self.window_type.as_ref().map(|t| t.value) {
            Some(WindowType::Time) => builder.time_window(Duration::from_secs(u64::from(size))),
            _ => builder.count_window(size),
        };
        if let Some(s) = &self.minimum_calls {
            builder = builder.minimum_calls(s.value);
        }
        if let Some(s) = &self.failure_rate {
            builder = builder.failure_rate_threshold(s.value);
        }
        if let Some(s) = &self.slow_rate {
            builder = builder.slow_call_rate_threshold(s.value);
        }
        if let Some(s) = &self.slow_duration {
            builder = builder.slow_call_duration_threshold(s.value);
        }
        let wait = self
            .wait_in_open
            .as_ref()
            .map_or(Duration::from_secs(60), |s| s.value);
        let exponential = self.exponential.as_ref().is_some_and(|s| s.value);
        let randomized = self.randomized.as_ref().is_some_and(|s| s.value);
        // resilience4j's defaults: a multiplier of 1.5 and a randomization factor of 0.5.
        let factor = if randomized {
            self.randomized_factor.as_ref().map_or(0.5, |s| s.value)
        } else {
            0.0
        };
        builder = if exponential {
            let max = self.max_wait_in_open.as_ref().map_or(MAX_WAIT, |s| s.value);
            builder.wait_backoff_in_open(
                ExponentialBackoff::new(wait, max)
                    .multiplier(self.multiplier.as_ref().map_or(1.5, |s| s.value))
                    .jitter(factor),
            )
        } else if randomized {
            // A fixed wait spread by `± factor`: a backoff that does not grow.
            // Never panics on a huge wait or a bad factor: the builder's check names those.
            let spread = if factor.is_finite() {
                factor.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let max = Duration::try_from_secs_f64(wait.as_secs_f64() * (1.0 + spread))
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT);
            builder.wait_backoff_in_open(
                ExponentialBackoff::new(wait, max)
                    .multiplier(1.0)
                    .jitter(factor),
            )
        } else {
            builder.wait_duration_in_open(wait)
        };
        if let Some(s) = &self.permitted_in_half_open {
            builder = builder.permitted_calls_in_half_open(s.value);
        }
        // resilience4j: zero means "wait for the probes however long they take".
        if let Some(s) = self
            .max_wait_in_half_open
            .as_ref()
            .filter(|s| !s.value.is_zero())
        {
            builder = builder.max_wait_in_half_open(s.value);
        }
        if let Some(s) = &self.automatic_transition {
            builder = builder.automatic_transition_from_open_to_half_open(s.value);
        }
        if let Err(error) = builder.check() {
            return Err(self.located(&error, path));
        }
        let with = |list: &Option<Set<Vec<Target>>>, predicate: &Option<Set<Target>>| {
            let mut targets = list.as_ref().map(|s| s.value.clone()).unwrap_or_default();
            targets.extend(predicate.as_ref().map(|s| s.value.clone()));
            targets
        };
        let record = with(&self.record, &self.record_predicate);
        let ignore = with(&self.ignore, &self.ignore_predicate);
        let results: Vec<Target> = self
            .result_predicate
            .iter()
            .map(|s| s.value.clone())
            .collect();
        Ok((builder, exceptions::classifier(&record, &results, &ignore)))
    }

    /// A builder's error, placed at the key that set the value at fault.
    fn located(&self, error: &ConfigError, path: &str) -> LoadError {
        let (origin, key) = match error.setting() {
            "count_window" | "time_window" => (origin(&self.window_size), "sliding-window-size"),
            "minimum_calls" => (origin(&self.minimum_calls), "minimum-number-of-calls"),
            "failure_rate_threshold" => (origin(&self.failure_rate), "failure-rate-threshold"),
            "slow_call_rate_threshold" => (origin(&self.slow_rate), "slow-call-rate-threshold"),
            "slow_call_duration_threshold" => {
                (origin(&self.slow_duration), "slow-call-duration-threshold")
            }
            "wait_duration_in_open" | "wait_backoff_in_open.initial" => {
                (origin(&self.wait_in_open), "wait-duration-in-open-state")
            }
            "wait_backoff_in_open.max" => (
                origin(&self.max_wait_in_open),
                "exponential-max-wait-duration-in-open-state",
            ),
            "wait_backoff_in_open.multiplier" => {
                (origin(&self.multiplier), "exponential-backoff-multiplier")
            }
            "wait_backoff_in_open.jitter" => {
                (origin(&self.randomized_factor), "randomized-wait-factor")
            }
            "permitted_calls_in_half_open" => (
                origin(&self.permitted_in_half_open),
                "permitted-number-of-calls-in-half-open-state",
            ),
            "max_wait_in_half_open" => (
                origin(&self.max_wait_in_half_open),
                "max-wait-duration-in-half-open-state",
            ),
            _ => (None, "name"),
        };
        let allowed = error.allowed();
        match origin {
            Some(origin) => {
                LoadError::bad_value(&origin.path, origin.line, origin.text.clone(), allowed)
            }
            // A default (or a name) at fault: it was not written anywhere.
            None => LoadError::bad_value(
                &format!("{path}.{key}"),
                0,
                error.value().to_owned(),
                allowed,
            ),
        }
    }
}

/// The longest open wait a configuration may give; an exponential backoff without a maximum
/// grows up to it.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

fn set<T>(value: T, origin: &Origin) -> Option<Set<T>> {
    Some(Set {
        value,
        origin: origin.clone(),
    })
}

fn origin<T>(set: &Option<Set<T>>) -> Option<&Origin> {
    set.as_ref().map(|s| &s.origin)
}

fn text(path: &str, node: &Node) -> Result<String, LoadError> {
    match &node.value {
        Value::Text(text) => Ok(text.clone()),
        other => Err(LoadError::bad_value(
            path,
            node.line,
            other.to_string(),
            "a string",
        )),
    }
}

pub(super) fn whole(path: &str, node: &Node) -> Result<u32, LoadError> {
    let parsed = match &node.value {
        Value::Integer(n) => u32::try_from(*n).ok(),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        LoadError::bad_value(
            path,
            node.line,
            node.value.to_string(),
            &format!("{WHOLE} from 0 to {}", u32::MAX),
        )
    })
}

pub(super) fn number(path: &str, node: &Node) -> Result<f64, LoadError> {
    let parsed = match &node.value {
        Value::Integer(n) => Some(*n as f64),
        Value::Float(x) => Some(*x),
        Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed
        .filter(|x: &f64| x.is_finite())
        .ok_or_else(|| LoadError::bad_value(path, node.line, node.value.to_string(), NUMBER))
}

pub(super) fn boolean(path: &str, node: &Node) -> Result<bool, LoadError> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::Text(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::Text(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(LoadError::bad_value(
            path,
            node.line,
            other.to_string(),
            BOOLEAN,
        )),
    }
}

/// Which list of exception classes is read: what it means when none is left that breakwater
/// can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lists {
    /// A breaker's `record-exceptions`: breakwater's default classification applies.
    Record,
    /// A retry's `retry-exceptions`: no error is retried.
    Retry,
    /// An `ignore-exceptions`: nothing more is ignored.
    Ignore,
}

impl Lists {
    /// The list `key` (kebab-case) of the section `section`.
    pub(crate) fn of(section: &str, key: &str) -> Self {
        match (section, key) {
            (_, "ignore-exceptions") => Lists::Ignore,
            ("retry", _) => Lists::Retry,
            _ => Lists::Record,
        }
    }
}

/// Whether a list of class names names any (an empty list, a null or an empty string does
/// not: resilience4j reads those as the setting left out).
pub(super) fn names_any(node: &Node) -> bool {
    match &node.value {
        Value::List(items) => !items.is_empty(),
        Value::Text(text) => text.split(',').any(|name| !name.trim().is_empty()),
        _ => false,
    }
}

/// A list of Java exception class names (or one name, or a comma-separated string, as Spring
/// Boot reads lists), each mapped to what it means here: a bound name to its binding, a class
/// breakwater knows to its rule. What it has no rule for is an error when loading strictly,
/// and otherwise a warning, the class left out; `list` says what a list left with none means
/// (and its warning says so).
pub(super) fn classes(
    path: &str,
    node: &Node,
    list: Lists,
    load: &mut Load<'_>,
) -> Result<Vec<Target>, LoadError> {
    let names: Vec<(String, &Node, String)> = match &node.value {
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok((
                    text(&format!("{path}[{i}]"), item)?,
                    item,
                    format!("{path}[{i}]"),
                ))
            })
            .collect::<Result<_, LoadError>>()?,
        Value::Text(text) => text
            .split(',')
            .map(|name| (name.trim().to_owned(), node, path.to_owned()))
            .filter(|(name, ..)| !name.is_empty())
            .collect(),
        Value::Null => Vec::new(),
        other => {
            return Err(LoadError::bad_value(
                path,
                node.line,
                other.to_string(),
                "a list of exception class names",
            ));
        }
    };
    let given = names.len();
    let mut targets = Vec::with_capacity(given);
    for (name, item, item_path) in names {
        if let Some(binding) = load.bound(&name) {
            targets.push(Target::Bound(binding));
            continue;
        }
        match exceptions::target(&name) {
            Some(rule) => targets.push(Target::Known(rule)),
            None if load.is_strict() => {
                return Err(LoadError::key(
                    &item_path,
                    item.line,
                    format!(
                        "{name:?} is not an exception class breakwater understands; it \
                         understands {}",
                        exceptions::understood()
                    ),
                ));
            }
            None => load.cannot(
                &item_path,
                item.line,
                format!("{name:?} is not an exception class breakwater understands"),
                "ignored (no rule for it: bind the name with `Loader::bind`)",
            )?,
        }
    }
    let instead = match list {
        Lists::Record => {
            "breakwater's default classification applies (5xx and errors fail, 4xx is ignored)"
        }
        Lists::Retry => "no error is retried",
        Lists::Ignore => return Ok(targets),
    };
    if given > 0 && targets.is_empty() {
        load.cannot(
            path,
            node.line,
            "no class left that breakwater understands".to_owned(),
            instead,
        )?;
    }
    Ok(targets)
}

/// A setting naming Java code (a predicate class): what the program bound the name to, or,
/// unbound, a warning saying what happens `instead` and `None`; when strict, an error
/// giving the `remedy`.
pub(super) fn java_code(
    path: &str,
    node: &Node,
    (instead, remedy): (&str, &str),
    load: &mut Load<'_>,
) -> Result<Option<Target>, LoadError> {
    if let Value::Text(name) = &node.value {
        if let Some(binding) = load.bound(name) {
            return Ok(Some(Target::Bound(binding)));
        }
    }
    let problem = format!("{} names Java code, which cannot run here", node.value);
    if load.is_strict() {
        return Err(LoadError::key(
            path,
            node.line,
            format!("{problem}: {remedy}"),
        ));
    }
    load.cannot(path, node.line, problem, instead)?;
    Ok(None)
}
