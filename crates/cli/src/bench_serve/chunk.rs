//! The `chat.completion.chunk`s (and error events) of a stream, parsed with borrowing serde
//! visitors that keep only what the measurement needs (whether content arrived, the usage, an
//! error), so a chunk costs no allocation; and short labels for error bodies.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// What a `chat.completion.chunk` (or an error event) tells us.
#[derive(Deserialize)]
pub(super) struct Chunk {
    /// Whether any choice's delta has non-empty `content`.
    #[serde(default)]
    pub(super) choices: ContentSeen,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    pub(super) completion_tokens: Option<u64>,
}

#[derive(Default)]
pub(super) struct ContentSeen(pub(super) bool);

impl<'de> Deserialize<'de> for ContentSeen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choices;
        impl<'de> Visitor<'de> for Choices {
            type Value = ContentSeen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ContentSeen, A::Error> {
                let mut seen = false;
                while let Some(choice) = seq.next_element::<ChoiceDelta>()? {
                    seen |= choice.delta.and_then(|d| d.content).is_some_and(|c| c.0);
                }
                Ok(ContentSeen(seen))
            }
            fn visit_unit<E>(self) -> Result<ContentSeen, E> {
                Ok(ContentSeen(false))
            }
        }
        deserializer.deserialize_any(Choices)
    }
}

#[derive(Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<NonEmpty>,
}

/// A string, reduced to whether it is non-empty (serde_json hands it over without copying).
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
        }
        deserializer.deserialize_str(Str)
    }
}

/// A short label for an error event or error body: its `type` or `code`, if it has one.
pub(super) fn error_label(error: &Value) -> String {
    let inner = error.get("error").unwrap_or(error);
    for key in ["type", "code"] {
        if let Some(v) = inner.get(key).filter(|v| !v.is_null()) {
            return match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    match inner {
        Value::String(s) => s.chars().take(60).collect(),
        _ => "untyped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_parse() {
        let chunk = |s: &str| serde_json::from_str::<Chunk>(s).unwrap();
        let role = chunk(
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
        assert!(!role.choices.0 && role.usage.is_none() && role.error.is_none());
        let text = chunk(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi \"there\"\n"},"finish_reason":null}]}"#,
        );
        assert!(text.choices.0);
        let second =
            chunk(r#"{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{"content":"é"}}]}"#);
        assert!(second.choices.0);
        let end = chunk(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
        assert!(!end.choices.0);
        let null_content =
            chunk(r#"{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0}]}}]}"#);
        assert!(!null_content.choices.0);
        let usage = chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":64,"total_tokens":69}}"#,
        );
        assert_eq!(usage.usage.unwrap().completion_tokens, Some(64));
        let error = chunk(r#"{"error":{"message":"boom","type":"server_error","code":null}}"#);
        assert_eq!(error_label(&error.error.unwrap()), "server_error");
        assert_eq!(
            error_label(&json!({"error": {"message": "m", "code": 429}})),
            "429"
        );
        assert_eq!(error_label(&json!({"error": "overloaded"})), "overloaded");
        assert!(serde_json::from_str::<Chunk>("{\"choices\":[").is_err());
    }
}
