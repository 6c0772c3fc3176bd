//! [`LazyJson`]: a JSON value kept as its canonical text and parsed only when read. A state of
//! 10,000 resources held every spec and status as a tree of maps (about 8 KiB each), which made
//! `ferry plan`, `ferry apply` and the start of `ferry run` peak at 250 MiB; as text they take
//! what the database row took (a few hundred bytes), and an unchanged resource is recognised by
//! comparing texts, without parsing at all.

use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A JSON value as canonical text (keys sorted, as `serde_json` writes a [`Value`]), parsed
/// once, on first access through `Deref`.
#[derive(Clone)]
pub struct LazyJson {
    text: String,
    value: OnceLock<Value>,
}

impl LazyJson {
    /// Keeps `text`, canonical JSON as Ferry writes it to the state, for parsing on demand.
    /// Text that does not parse reads as `null` (the state's rows are written by Ferry).
    pub fn from_text(text: String) -> LazyJson {
        LazyJson {
            text,
            value: OnceLock::new(),
        }
    }

    /// Whether `text` parses; what reading a row checks so that a corrupt row is an error
    /// when it is read rather than a silent `null` later.
    pub fn check(text: &str) -> std::result::Result<(), serde_json::Error> {
        serde::de::IgnoredAny::deserialize(&mut serde_json::Deserializer::from_str(text))
            .map(|_| ())
    }

    /// `value` as canonical text only (the tree is not kept).
    pub fn text_of(value: &Value) -> LazyJson {
        LazyJson::from_text(serde_json::to_string(value).expect("a JSON value serializes"))
    }

    /// A copy of the text only, without the parsed tree if there is one.
    pub fn text_copy(&self) -> LazyJson {
        LazyJson::from_text(self.text.clone())
    }

    /// The canonical text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed value, owned.
    pub fn to_value(&self) -> Value {
        (**self).clone()
    }
}

/// `null`, as a [`Value`]'s default.
impl Default for LazyJson {
    fn default() -> LazyJson {
        LazyJson::from(Value::Null)
    }
}

impl From<Value> for LazyJson {
    fn from(value: Value) -> LazyJson {
        LazyJson {
            text: serde_json::to_string(&value).expect("a JSON value serializes"),
            value: OnceLock::from(value),
        }
    }
}

impl std::ops::Deref for LazyJson {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }
}

impl PartialEq for LazyJson {
    fn eq(&self, other: &LazyJson) -> bool {
        self.text == other.text
    }
}

impl std::fmt::Debug for LazyJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for LazyJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LazyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LazyJson, D::Error> {
        Value::deserialize(deserializer).map(LazyJson::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_reads_the_same_from_its_text_and_compares_by_text() {
        let value = json!({"b": [1, {"c": "ü"}], "a": null});
        let lazy = LazyJson::from(value.clone());
        assert_eq!(lazy.text(), r#"{"a":null,"b":[1,{"c":"ü"}]}"#);
        let read = LazyJson::from_text(lazy.text().to_string());
        assert_eq!(*read, value);
        assert_eq!(read, LazyJson::from(value.clone()));
        assert_ne!(read, LazyJson::from(json!({"a": null, "b": [1]})));
        assert_ne!(read, LazyJson::from(json!({"a": null})));
        assert_eq!(read, lazy);
        assert!(LazyJson::check("{\"a\":").is_err());
        assert!(LazyJson::check(read.text()).is_ok());
    }
}
