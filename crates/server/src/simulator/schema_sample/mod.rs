//! Random JSON values that validate against a JSON Schema.
//!
//! Simulated models answer tool calls and structured-output requests (`response_format` with a
//! `json_schema`) without weights, so the arguments they "produce" are sampled from the schema
//! the client sent. Schemas arrive over HTTP: every input gives a value or a [`SchemaError`]
//! naming the JSON pointer of the offending part, never a panic, a hang or a huge allocation.
//! Values are built to fit, and a small validator ([`conforms`]) settles what construction
//! cannot: `enum`/`const` members, `oneOf` exclusivity, `not`, and a final check.
//!
//! The parts: `sampler` resolves `$ref` and the combinators and picks a type, `scalars` and
//! `containers` build values of each type, `formats` knows the string formats, `pattern`
//! generates and matches regexes, `merge` combines `allOf` branches, `keywords` reads keyword
//! values, and `validate` is the validator.

mod containers;
mod formats;
mod keywords;
mod merge;
mod pattern;
mod sampler;
mod scalars;
#[cfg(test)]
mod tests;
mod validate;

use rand::rngs::StdRng;
use sampler::Sampler;
use serde_json::{Map, Value};
use std::cell::Cell;
use validate::conforms;

/// Why no value could be sampled. `path` is a JSON pointer into the schema, such as
/// `#/properties/unit` or `#/$defs/node/items`.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid schema at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("no value matches the schema at {path}: {reason}")]
    Unsatisfiable { path: String, reason: String },
    #[error("unsupported schema at {path}: {reason}")]
    Unsupported { path: String, reason: String },
    #[error("`$ref` `{reference}` at {path} does not resolve")]
    UnresolvedRef { path: String, reference: String },
    #[error("schema at {path} is too deep or too large to sample (recursion with no base case?)")]
    TooComplex { path: String },
}

type Result<T> = std::result::Result<T, SchemaError>;
type Schema = Map<String, Value>;

/// From this many nested `$ref`s on, optional parts are left out so recursive schemas end.
const SHRINK_REF_DEPTH: usize = 3;
const MAX_REF_DEPTH: usize = 32;
const MAX_NESTING: usize = 96;
const MAX_STEPS: usize = 50_000;
const MAX_STRING_CHARS: usize = 10_000;
const MAX_ITEMS: usize = 1_000;
/// Integers stay within ±2^53 so they survive a round trip through f64.
const SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;
/// Draws before giving up on a value that keeps matching a `oneOf` rival or a `not`.
const REDRAWS: usize = 16;
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "alpha", "amber", "apple", "basil", "birch", "cedar", "cobalt", "coral", "delta", "ember",
    "falcon", "fern", "harbor", "indigo", "jade", "lemon", "linen", "maple", "meadow", "nova",
    "ocean", "olive", "orbit", "pearl", "pine", "quartz", "river", "saffron", "sierra", "silver",
    "stone", "summit", "tango", "tulip", "velvet", "willow", "zephyr", "Paris", "Tokyo", "Lima",
];
const TYPES: [&str; 7] = [
    "null", "boolean", "integer", "number", "string", "array", "object",
];

/// A random value that validates against `schema`. Supports: `type` (string or array of types,
/// incl. "null", "integer", "number", "boolean", "string", "object", "array"), `properties`,
/// `required` (all required present; optional ones present with probability 1/2),
/// `additionalProperties` (no extra properties are ever added), `minProperties`/`maxProperties`,
/// `items` (schema), `prefixItems` (and draft-7 tuple `items`), `minItems`/`maxItems` (default
/// 1–3 items), `uniqueItems`, `enum`, `const`, `minimum`/`maximum`/`exclusiveMinimum`/
/// `exclusiveMaximum`/`multipleOf` for numbers and integers, `minLength`/`maxLength`/`pattern`
/// (regex syntax without look-around, backreferences or word boundaries; others are
/// [`SchemaError::Unsupported`]), `format` (date-time, date, time, email, uri, uuid, ipv4 and a
/// few more), `anyOf`/`oneOf` (pick one branch; a value matching a second `oneOf` branch is
/// drawn again), `allOf` (merge branches), `not` (drawn again while it matches), `$ref` to
/// `#/$defs/...`, `#/definitions/...` or any local pointer (past a few nested references,
/// optional parts are dropped so recursive schemas end), boolean schemas (`true` → any small
/// value, `false` → error), and a schema with no `type` but `properties` → object. Strings are
/// short words from a small list. Numbers meet a `multipleOf` as floats allow (within 1e-9 of
/// a whole ratio; steps with up to 6 decimals give exact decimals). Deterministic for a given
/// rng state.
pub fn sample_value(schema: &Value, rng: &mut StdRng) -> Result<Value> {
    for _ in 0..REDRAWS {
        let value = sample_constructed(schema, rng)?;
        // The last word: keywords can interact in ways construction alone misses.
        if conforms(&value, schema, schema, &Cell::new(MAX_STEPS)) != Some(false) {
            return Ok(value);
        }
    }
    Err(unsupported("#", "could not build a value that validates"))
}

/// A value built to fit `schema`, before the final check.
fn sample_constructed(schema: &Value, rng: &mut StdRng) -> Result<Value> {
    Sampler {
        root: schema,
        rng,
        refs: 0,
        nesting: 0,
        steps: 0,
    }
    .sample(schema, "#")
}

fn invalid(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}
fn unsatisfiable(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Unsatisfiable {
        path: path.to_string(),
        reason: reason.into(),
    }
}
fn unsupported(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.to_string(),
        reason: reason.into(),
    }
}
/// `path` extended by one JSON pointer segment.
fn child(path: &str, segment: impl std::fmt::Display) -> String {
    let segment = segment.to_string();
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}
