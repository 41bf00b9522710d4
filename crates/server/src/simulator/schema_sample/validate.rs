//! A small JSON Schema validator for what construction alone cannot settle: `enum`/`const`
//! members that meet the other keywords, `oneOf` exclusivity, `not`, and the final check of
//! every sampled value. Bounded by a step budget and the nesting limit, like the sampler.

use super::formats::format_matches;
use super::keywords::{bounds, count_keyword, has_type, is_multiple, multiple_of, type_names};
use super::pattern::regex_matches;
use super::{Schema, MAX_NESTING};
use serde_json::Value;
use std::cell::Cell;

/// Whether `value` validates against `schema`, with `root` for `$ref`s: None when that cannot
/// be told (invalid keywords, references that do not resolve, or the step budget spent).
/// Unknown formats are annotations; `patternProperties` and `dependent*` are not checked.
pub(super) fn conforms(
    value: &Value,
    schema: &Value,
    root: &Value,
    budget: &Cell<usize>,
) -> Option<bool> {
    conforms_at(
        value,
        schema,
        &Context {
            root,
            budget,
            depth: 0,
        },
    )
}

/// What [`conforms`] carries down: the document, the steps left and the nesting depth.
pub(super) struct Context<'c> {
    pub(super) root: &'c Value,
    pub(super) budget: &'c Cell<usize>,
    pub(super) depth: usize,
}

fn conforms_at(value: &Value, schema: &Value, context: &Context) -> Option<bool> {
    context.budget.set(context.budget.get().checked_sub(1)?);
    match schema {
        Value::Bool(accepts) => Some(*accepts),
        Value::Object(schema) if context.depth < MAX_NESTING => {
            conforms_object(value, schema, context)
        }
        _ => None,
    }
}

pub(super) fn conforms_object(value: &Value, s: &Schema, context: &Context) -> Option<bool> {
    let deeper = Context {
        depth: context.depth + 1,
        ..*context
    };
    let sub = |value: &Value, schema: &Value| conforms_at(value, schema, &deeper);
    let root = context.root;
    let count = |key: &str| count_keyword(s, key, "").ok();
    let within = |n: usize, low: &str, high: &str| {
        Some(count(low)?.is_none_or(|m| n >= m) && count(high)?.is_none_or(|m| n <= m))
    };
    let mut ok = true;
    if let Some(reference) = s.get("$ref") {
        ok &= sub(value, root.pointer(reference.as_str()?.strip_prefix('#')?)?)?;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(branches) = s.get(key) else { continue };
        let results: Vec<bool> = branches
            .as_array()?
            .iter()
            .map(|b| sub(value, b))
            .collect::<Option<_>>()?;
        let matched = results.iter().filter(|m| **m).count();
        ok &= match key {
            "allOf" => matched == results.len(),
            "anyOf" => matched > 0,
            _ => matched == 1,
        };
    }
    if let Some(negated) = s.get("not") {
        ok &= !sub(value, negated)?;
    }
    let types = s.get("type").map(|t| type_names(t, "")).transpose().ok()?;
    ok &= types.is_none_or(|types| types.iter().any(|t| has_type(value, t)));
    ok &= s.get("const").is_none_or(|c| c == value);
    if let Some(values) = s.get("enum") {
        ok &= values.as_array()?.contains(value);
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64()?;
            let (lower, upper) = bounds(s, "").ok()?;
            ok &= lower.is_none_or(|(m, open)| x > m || (!open && x == m));
            ok &= upper.is_none_or(|(m, open)| x < m || (!open && x == m));
            ok &= multiple_of(s, "").ok()?.is_none_or(|m| is_multiple(x, m));
        }
        Value::String(text) => {
            ok &= within(text.chars().count(), "minLength", "maxLength")?;
            if let Some(pattern) = s.get("pattern") {
                ok &= regex_matches(pattern.as_str()?, text)?;
            }
            let format = s.get("format").and_then(Value::as_str);
            ok &= format
                .and_then(|format| format_matches(format, text))
                .unwrap_or(true);
        }
        Value::Array(items) => {
            ok &= within(items.len(), "minItems", "maxItems")?;
            let (prefix, rest) = match (s.get("prefixItems"), s.get("items")) {
                (None, Some(Value::Array(tuple))) => (Some(tuple), s.get("additionalItems")),
                (prefix, rest) => (prefix.and_then(Value::as_array), rest),
            };
            for (i, item) in items.iter().enumerate() {
                let schema = prefix.and_then(|p| p.get(i)).or(rest);
                ok &= schema.map_or(Some(true), |schema| sub(item, schema))?;
            }
            if s.get("uniqueItems") == Some(&Value::Bool(true)) {
                ok &= (1..items.len()).all(|i| !items[..i].contains(&items[i]));
            }
        }
        Value::Object(map) => {
            ok &= within(map.len(), "minProperties", "maxProperties")?;
            let properties = s.get("properties").and_then(Value::as_object);
            for name in s.get("required").map_or(Some(&vec![]), Value::as_array)? {
                ok &= map.contains_key(name.as_str()?);
            }
            for (name, v) in map {
                let schema = properties.and_then(|p| p.get(name));
                let schema = schema.or(s.get("additionalProperties"));
                ok &= schema.map_or(Some(true), |schema| sub(v, schema))?;
            }
        }
        _ => {}
    }
    Some(ok)
}
