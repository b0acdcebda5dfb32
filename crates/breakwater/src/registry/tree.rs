//! A configuration file as a plain tree, whatever its format: the registry reads YAML and TOML
//! into this, then reads its settings from it in one way.

use std::fmt;

/// A value of the file, and the line it starts on (1-based; 0 when unknown).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) line: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Keys in the file's order, each with the line it is on.
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// YAML's `~` or an empty value (TOML has none).
    #[cfg_attr(not(feature = "yaml"), allow(dead_code))]
    Null,
    /// A TOML date or time: no setting takes one.
    #[cfg_attr(not(feature = "toml"), allow(dead_code))]
    Date(String),
}

impl fmt::Display for Value {
    /// The value as the file wrote it, near enough to recognise it in an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Map(_) => f.write_str("a map"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", item.value)?;
                }
                f.write_str("]")
            }
            Value::Text(text) => write!(f, "{text:?}"),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("nothing"),
            Value::Date(d) => f.write_str(d),
        }
    }
}

/// Where a syntax error is, and what the parser said.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// The 1-based line of byte `offset` in `text`.
#[cfg(feature = "toml")]
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(feature = "yaml")]
pub(crate) mod yaml {
    //! YAML through `saphyr`, a maintained YAML 1.2 parser in pure Rust that keeps every
    //! node's position (`serde_yaml` is archived, and its forks are not all maintained).

    use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

    use super::{Node, SyntaxError, Value};

    /// Every document of the file.
    pub(crate) fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
        let documents = MarkedYaml::load_from_str(text).map_err(|error| SyntaxError {
            line: error.marker().line(),
            message: error.info().to_owned(),
        })?;
        documents.iter().map(convert).collect()
    }

    fn convert(node: &MarkedYaml<'_>) -> Result<Node, SyntaxError> {
        let line = node.span.start.line();
        let value = match &node.data {
            YamlData::Value(scalar) => scalar_value(scalar),
            YamlData::Sequence(items) => {
                Value::List(items.iter().map(convert).collect::<Result<_, _>>()?)
            }
            YamlData::Mapping(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let name = match &key.data {
                        YamlData::Value(scalar) => match scalar_value(scalar) {
                            Value::Text(text) => text,
                            other => other.to_string(),
                        },
                        _ => {
                            return Err(SyntaxError {
                                line: key.span.start.line(),
                                message: "a key must be a plain value, not a list or a map".into(),
                            });
                        }
                    };
                    entries.push((name, convert(value)?));
                }
                Value::Map(entries)
            }
            YamlData::Tagged(_, inner) => return convert(inner),
            YamlData::Representation(text, ..) => Value::Text(text.to_string()),
            YamlData::Alias(_) => {
                return Err(SyntaxError {
                    line,
                    message: "aliases (`*name`) are not supported".into(),
                });
            }
            YamlData::BadValue => {
                return Err(SyntaxError {
                    line,
                    message: "a value that does not match its tag".into(),
                });
            }
        };
        Ok(Node { value, line })
    }

    fn scalar_value(scalar: &Scalar<'_>) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(n) => Value::Integer(*n),
            Scalar::FloatingPoint(x) => Value::Float(x.into_inner()),
            Scalar::String(text) => Value::Text(text.to_string()),
        }
    }
}

#[cfg(feature = "toml")]
pub(crate) mod toml {
    //! TOML through the `toml` crate's spanned parser (no serde involved).

    use toml::Spanned;
    use toml::de::{DeTable, DeValue};

    use super::{Node, SyntaxError, Value, line_of};

    pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
        let table = DeTable::parse(text).map_err(|error| SyntaxError {
            line: error.span().map_or(0, |span| line_of(text, span.start)),
            message: error.message().to_owned(),
        })?;
        Ok(Node {
            line: 1,
            value: map(text, table.get_ref()),
        })
    }

    fn map(text: &str, table: &DeTable<'_>) -> Value {
        Value::Map(
            table
                .iter()
                .map(|(key, value)| (key.get_ref().to_string(), convert(text, value)))
                .collect(),
        )
    }

    fn convert(text: &str, value: &Spanned<DeValue<'_>>) -> Node {
        let line = line_of(text, value.span().start);
        let value = match value.get_ref() {
            DeValue::String(s) => Value::Text(s.to_string()),
            // Both are given in the form `from_str_radix` and `parse` read.
            DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
                .map_or_else(|_| Value::Text(n.as_str().to_owned()), Value::Integer),
            DeValue::Float(x) => x
                .as_str()
                .parse::<f64>()
                .map_or_else(|_| Value::Text(x.as_str().to_owned()), Value::Float),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::Date(d.to_string()),
            DeValue::Array(items) => {
                Value::List(items.iter().map(|item| convert(text, item)).collect())
            }
            DeValue::Table(table) => map(text, table),
        };
        Node { value, line }
    }
}
