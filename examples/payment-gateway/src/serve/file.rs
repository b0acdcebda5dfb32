//! The service's own keys in the configuration file, beside the sections breakwater reads
//! (the registry ignores them):
//!
//! ```yaml
//! payment-gateway:
//!   pg:
//!     connect-timeout: 1100ms
//!     read-timeout: 3s
//! ```
//!
//! As Spring reads a file: nested or dotted (`payment-gateway.pg.read-timeout: 3s`), in
//! kebab-case, camelCase or snake_case, a duration as whole milliseconds (`3000`) or a whole
//! number with a unit (`3s`).

use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// The key of the PG client's connect timeout.
pub const CONNECT_TIMEOUT_KEY: &str = "payment-gateway.pg.connect-timeout";

/// The key of the PG client's read timeout.
pub const READ_TIMEOUT_KEY: &str = "payment-gateway.pg.read-timeout";

/// The longest timeout allowed, in the file and on the command line.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// What a timeout may be, for error messages.
const ALLOWED: &str = "a duration from 1ms to 10m: whole milliseconds (`3000`) or \
     a whole number with a unit of ms, s or m (`1100ms`, `3s`)";

/// The PG client's timeouts as the file gives them; `None` where it is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileSettings {
    /// `payment-gateway.pg.connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `payment-gateway.pg.read-timeout`.
    pub read_timeout: Option<Duration>,
}

impl FileSettings {
    /// Reads the keys from the YAML `text` of a configuration file, named `origin` in
    /// errors.
    ///
    /// # Errors
    ///
    /// A message naming the key, its line, the value and what is allowed, if a value is not
    /// a duration in range, or a key is given twice; or the parser's, if `text` is not YAML.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, String> {
        let documents = MarkedYaml::load_from_str(text).map_err(|e| {
            format!(
                "{origin} is not YAML: line {}: {}",
                e.marker().line(),
                e.info()
            )
        })?;
        Ok(Self {
            connect_timeout: timeout(&documents, CONNECT_TIMEOUT_KEY, origin)?,
            read_timeout: timeout(&documents, READ_TIMEOUT_KEY, origin)?,
        })
    }
}

/// The timeout at `key` in any of `documents`.
fn timeout(
    documents: &[MarkedYaml<'_>],
    key: &str,
    origin: &str,
) -> Result<Option<Duration>, String> {
    let path: Vec<String> = key.split('.').map(canonical).collect();
    let mut found = Vec::new();
    for document in documents {
        find(document, &path, &mut found);
    }
    let node = match found.as_slice() {
        [] => return Ok(None),
        [node] => *node,
        [first, second, ..] => {
            return Err(format!(
                "`{key}` is given twice in {origin}, at lines {} and {}: keep one (Spring \
                 profiles are not followed)",
                first.span.start.line(),
                second.span.start.line()
            ));
        }
    };
    let duration = match &node.data {
        YamlData::Value(Scalar::Integer(ms)) => u64::try_from(*ms).ok().map(Duration::from_millis),
        YamlData::Value(Scalar::String(text)) | YamlData::Representation(text, ..) => {
            parse_duration(text)
        }
        _ => None,
    };
    match duration {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(Some(d)),
        _ => Err(format!(
            "`{key}` at line {} of {origin} is {}: it must be {ALLOWED}",
            node.span.start.line(),
            shown(node)
        )),
    }
}

/// Pushes every node at `path` (canonical segments) under `node` onto `found`. A key may
/// hold several segments, dotted.
fn find<'a>(node: &'a MarkedYaml<'a>, path: &[String], found: &mut Vec<&'a MarkedYaml<'a>>) {
    let node = match &node.data {
        YamlData::Tagged(_, inner) => inner,
        _ => node,
    };
    let YamlData::Mapping(entries) = &node.data else {
        return;
    };
    for (key, value) in entries {
        let key = match &key.data {
            YamlData::Value(Scalar::String(text)) | YamlData::Representation(text, ..) => {
                text.as_ref()
            }
            _ => continue,
        };
        let segments: Vec<String> = key.split('.').map(canonical).collect();
        if let Some(rest) = path.strip_prefix(segments.as_slice()) {
            if rest.is_empty() {
                found.push(value);
            } else {
                find(value, rest, found);
            }
        }
    }
}

/// A key segment in one spelling: `read-timeout`, `readTimeout` and `read_timeout` are one.
fn canonical(segment: &str) -> String {
    segment
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A duration as the file and the environment write it: whole milliseconds, or a whole
/// number with a unit of `ms`, `s` or `m`. `None` if it is not one.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => Some(Duration::from_millis(amount)),
        "s" => amount.checked_mul(1_000).map(Duration::from_millis),
        "m" => amount.checked_mul(60_000).map(Duration::from_millis),
        _ => None,
    }
}

/// A value as the file wrote it, near enough to recognise it in an error message.
fn shown(node: &MarkedYaml<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::String(text)) | YamlData::Representation(text, ..) => {
            format!("`{text}`")
        }
        YamlData::Value(Scalar::Integer(n)) => format!("`{n}`"),
        YamlData::Value(Scalar::FloatingPoint(x)) => format!("`{}`", x.into_inner()),
        YamlData::Value(Scalar::Boolean(b)) => format!("`{b}`"),
        YamlData::Value(Scalar::Null) => "empty".to_owned(),
        YamlData::Mapping(_) => "a map".to_owned(),
        YamlData::Sequence(_) => "a list".to_owned(),
        _ => "not a plain value".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<FileSettings, String> {
        FileSettings::from_yaml(text, "app.yml")
    }

    #[test]
    fn reads_nested_and_dotted_keys_in_any_case() {
        let nested = "payment-gateway:\n  pg:\n    connect-timeout: 1100ms\n    read-timeout: 3s\n";
        assert_eq!(
            read(nested),
            Ok(FileSettings {
                connect_timeout: Some(Duration::from_millis(1100)),
                read_timeout: Some(Duration::from_secs(3)),
            })
        );
        let dotted =
            "paymentGateway.pg:\n  readTimeout: 2500\npayment_gateway.pg.connect_timeout: 1m\n";
        assert_eq!(
            read(dotted),
            Ok(FileSettings {
                connect_timeout: Some(Duration::from_secs(60)),
                read_timeout: Some(Duration::from_millis(2500)),
            })
        );
    }

    #[test]
    fn a_file_without_the_keys_gives_none() {
        let text = "resilience4j.circuitbreaker:\n  instances:\n    pg: {}\npayment-gateway: {}\n";
        assert_eq!(read(text), Ok(FileSettings::default()));
    }

    #[test]
    fn a_bad_value_names_the_key_its_line_the_value_and_what_is_allowed() {
        let text = "payment-gateway:\n  pg:\n    read-timeout: 3 seconds\n";
        assert_eq!(
            read(text),
            Err(format!(
                "`payment-gateway.pg.read-timeout` at line 3 of app.yml is `3 seconds`: it \
                 must be {ALLOWED}"
            ))
        );
        for (value, shown) in [
            ("0", "`0`"),
            ("11m", "`11m`"),
            ("-5", "`-5`"),
            ("1.5s", "`1.5s`"),
        ] {
            let text = format!("payment-gateway.pg.connect-timeout: {value}\n");
            assert_eq!(
                read(&text),
                Err(format!(
                    "`payment-gateway.pg.connect-timeout` at line 1 of app.yml is {shown}: it \
                     must be {ALLOWED}"
                )),
                "{value}"
            );
        }
    }

    #[test]
    fn a_key_given_twice_is_an_error() {
        let text =
            "payment-gateway.pg.read-timeout: 1s\npayment-gateway:\n  pg:\n    read-timeout: 2s\n";
        assert_eq!(
            read(text),
            Err(
                "`payment-gateway.pg.read-timeout` is given twice in app.yml, at lines 1 and \
                 4: keep one (Spring profiles are not followed)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn durations_read_as_documented() {
        assert_eq!(parse_duration("1100"), Some(Duration::from_millis(1100)));
        assert_eq!(parse_duration("1100ms"), Some(Duration::from_millis(1100)));
        assert_eq!(parse_duration("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3 s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3h"), None);
        assert_eq!(parse_duration("PT3S"), None);
    }
}
