//! Reading keyword values shared by the sampler, the validator and `merge`: types, numeric
//! bounds, `multipleOf`, counts and schema lists, each checked so bad values are errors.

use super::{invalid, Result, Schema, TYPES};
use serde_json::Value;

pub(super) fn schema_list<'v>(value: &'v Value, path: &str) -> Result<&'v [Value]> {
    match value {
        Value::Array(list) if !list.is_empty() => Ok(list),
        _ => Err(invalid(path, "must be a non-empty array of schemas")),
    }
}

pub(super) fn contains_ref(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) if map.contains_key("$ref") => return true,
            Value::Object(map) => stack.extend(map.values()),
            Value::Array(list) => stack.extend(list),
            _ => {}
        }
    }
    false
}

/// The names in a `type` keyword (a string or an array of strings), deduplicated.
pub(super) fn type_names(value: &Value, path: &str) -> Result<Vec<&'static str>> {
    let names = match value {
        Value::Array(names) => names.iter().collect(),
        _ => vec![value],
    };
    let mut types = Vec::new();
    for name in names {
        let known = TYPES.iter().find(|t| name.as_str() == Some(**t));
        let Some(known) = known else {
            return Err(invalid(path, format!("`type` has an unknown type {name}")));
        };
        if !types.contains(known) {
            types.push(*known);
        }
    }
    Ok(types)
}

/// The type a schema without `type` implies through its keywords, if any.
pub(super) fn infer_type(schema: &Schema) -> Option<&'static str> {
    #[rustfmt::skip]
    const IMPLIED: [(&str, &[&str]); 4] = [
        ("object", &["properties", "required", "additionalProperties", "minProperties", "maxProperties"]),
        ("array", &["items", "prefixItems", "minItems", "maxItems", "uniqueItems"]),
        ("string", &["minLength", "maxLength", "pattern", "format"]),
        ("number", &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]),
    ];
    let implies = |keys: &&[&str]| keys.iter().any(|key| schema.contains_key(*key));
    IMPLIED
        .iter()
        .find(|(_, keys)| implies(keys))
        .map(|(name, _)| *name)
}

pub(super) fn has_type(value: &Value, name: &str) -> bool {
    match value {
        Value::Null => name == "null",
        Value::Bool(_) => name == "boolean",
        Value::Number(n) => {
            name == "number" || (name == "integer" && n.as_f64().is_some_and(|f| f.fract() == 0.0))
        }
        Value::String(_) => name == "string",
        Value::Array(_) => name == "array",
        Value::Object(_) => name == "object",
    }
}

/// A numeric bound and whether it is exclusive.
pub(super) type Bound = Option<(f64, bool)>;

/// Lower and upper bounds, the tighter of `minimum`/`exclusiveMinimum` (and of the maxima);
/// draft-4 boolean `exclusiveMinimum`/`exclusiveMaximum` included.
pub(super) fn bounds(schema: &Schema, path: &str) -> Result<(Bound, Bound)> {
    let number = |key: &str, open: bool| match schema.get(key) {
        None | Some(Value::Bool(_)) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(v) => Ok(Some((v, open))),
            None => Err(invalid(path, format!("`{key}` must be a number"))),
        },
    };
    let draft4 = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    let tighter = |a: Bound, b: Bound, lower: bool| match (a, b) {
        (Some(x), Some(y)) if x.0 == y.0 => Some((x.0, x.1 || y.1)),
        (Some(x), Some(y)) => Some(if (x.0 > y.0) == lower { x } else { y }),
        (x, y) => x.or(y),
    };
    let minimum = number("minimum", draft4("exclusiveMinimum"))?;
    let maximum = number("maximum", draft4("exclusiveMaximum"))?;
    let lower = tighter(minimum, number("exclusiveMinimum", true)?, true);
    let upper = tighter(maximum, number("exclusiveMaximum", true)?, false);
    Ok((lower, upper))
}

/// Bounds with missing sides filled in so values stay small: 0–100 when unbounded, and a
/// window that float rounding cannot close next to a huge bound.
pub(super) fn default_range(lo: Option<f64>, hi: Option<f64>) -> (f64, f64) {
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        (Some(lo), None) => (lo, (lo.max(0.0) + lo.abs().max(100.0)).min(f64::MAX)),
        (None, Some(hi)) => ((hi.min(100.0) - hi.abs().max(100.0)).max(f64::MIN), hi),
        (None, None) => (0.0, 100.0),
    }
}

pub(super) fn multiple_of(schema: &Schema, path: &str) -> Result<Option<f64>> {
    match schema.get("multipleOf").map(Value::as_f64) {
        None => Ok(None),
        Some(Some(m)) if m > 0.0 && m.is_finite() => Ok(Some(m)),
        Some(_) => Err(invalid(path, "`multipleOf` must be a positive number")),
    }
}

pub(super) fn is_multiple(value: f64, step: f64) -> bool {
    let ratio = value / step;
    (ratio - ratio.round()).abs() < 1e-9
}

pub(super) fn count_keyword(schema: &Schema, key: &str, path: &str) -> Result<Option<usize>> {
    match schema.get(key).map(Value::as_f64) {
        None => Ok(None),
        Some(Some(n)) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n.min(1e15) as usize)),
        Some(_) => Err(invalid(
            path,
            format!("`{key}` must be a non-negative integer"),
        )),
    }
}
