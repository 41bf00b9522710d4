//! `allOf` (and `$ref` siblings) merged into one schema: bounds tightened, `required` and
//! `properties` combined, types intersected, and `additionalProperties`/`items` applied to
//! what the other side lists, so a value built for the result satisfies every branch.

use super::keywords::{is_multiple, type_names};
use super::{unsatisfiable, unsupported, Result, Schema};
use serde_json::{json, Value};

/// Combines `other` into `acc` so that a value valid for the result is valid for both.
pub(super) fn merge(acc: &mut Schema, mut other: Schema, path: &str) -> Result<()> {
    // `additionalProperties` and `items` cover the properties and positions that their own
    // schema does not list, including those that only the other side lists.
    constrain_extras(acc, &mut other);
    constrain_extras(&other, acc);
    for (key, b) in other {
        let Some(existing) = acc.get_mut(&key) else {
            acc.insert(key, b);
            continue;
        };
        if *existing == b {
            continue;
        }
        let a = existing.take();
        let numbers = (a.as_f64(), b.as_f64());
        *existing = match (key.as_str(), a, b) {
            ("minimum" | "exclusiveMinimum" | "minLength" | "minItems" | "minProperties", a, _) => {
                numbers.0.zip(numbers.1).map_or(a, |(x, y)| x.max(y).into())
            }
            ("maximum" | "exclusiveMaximum" | "maxLength" | "maxItems" | "maxProperties", a, _) => {
                numbers.0.zip(numbers.1).map_or(a, |(x, y)| x.min(y).into())
            }
            ("properties", Value::Object(mut a), Value::Object(b)) => {
                for (name, schema) in b {
                    let combined = match a.remove(&name) {
                        Some(prior) => json!({ "allOf": [prior, schema] }),
                        None => schema,
                    };
                    a.insert(name, combined);
                }
                Value::Object(a)
            }
            ("required", Value::Array(mut a), Value::Array(b)) => {
                for name in b {
                    if !a.contains(&name) {
                        a.push(name);
                    }
                }
                Value::Array(a)
            }
            ("type", a, b) => {
                let (a, b) = (type_names(&a, path)?, type_names(&b, path)?);
                let mut common: Vec<&str> = Vec::new();
                for t in a {
                    let narrowest = match t {
                        _ if b.contains(&t) => t,
                        "integer" | "number" if b.contains(&"integer") || b.contains(&"number") => {
                            "integer"
                        }
                        _ => continue,
                    };
                    if !common.contains(&narrowest) {
                        common.push(narrowest);
                    }
                }
                if common.is_empty() {
                    return Err(unsatisfiable(path, "the `allOf` types do not overlap"));
                }
                Value::from(common)
            }
            ("enum", Value::Array(a), Value::Array(b)) => {
                Value::Array(a.into_iter().filter(|v| b.contains(v)).collect())
            }
            ("items" | "additionalProperties" | "additionalItems", a, b) => match (a, b) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), x) | (x, Value::Bool(true)) => x,
                (a @ Value::Object(_), b @ Value::Object(_)) => json!({ "allOf": [a, b] }),
                _ => {
                    return Err(unsupported(
                        path,
                        format!("cannot combine two tuple `{key}`"),
                    ))
                }
            },
            ("multipleOf", a, b) => match numbers {
                (Some(x), Some(y)) if x > 0.0 && y > 0.0 && is_multiple(x, y) => a,
                (Some(x), Some(y)) if x > 0.0 && y > 0.0 && is_multiple(y, x) => b,
                _ => {
                    return Err(unsupported(
                        path,
                        "cannot combine these `multipleOf` values",
                    ))
                }
            },
            ("const", _, _) => return Err(unsatisfiable(path, "two different `const` values")),
            ("uniqueItems", a, b) => Value::Bool(a == Value::Bool(true) || b == Value::Bool(true)),
            ("pattern" | "format" | "prefixItems" | "enum" | "properties", _, _) => {
                return Err(unsupported(
                    path,
                    format!("cannot combine two different `{key}`"),
                ));
            }
            (_, a, _) => a, // annotations and keywords the sampler ignores: keep the first
        };
    }
    Ok(())
}

/// Applies `rules`' `additionalProperties` to the properties of `target` that `rules` does not
/// list, and `rules`' `items` to the `prefixItems` of `target` past those of `rules`.
fn constrain_extras(rules: &Schema, target: &mut Schema) {
    let constrain = |schema: &mut Value, extra: &Value| {
        *schema = json!({ "allOf": [schema.take(), extra] });
    };
    let extra = rules
        .get("additionalProperties")
        .filter(|e| **e != Value::Bool(true));
    let listed = rules.get("properties").and_then(Value::as_object);
    if let (Some(extra), Some(Value::Object(properties))) = (extra, target.get_mut("properties")) {
        for (name, property) in properties.iter_mut() {
            if !listed.is_some_and(|listed| listed.contains_key(name)) {
                constrain(property, extra);
            }
        }
    }
    let extra = rules
        .get("items")
        .filter(|e| !e.is_array() && **e != Value::Bool(true));
    let listed = rules
        .get("prefixItems")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if let (Some(extra), Some(Value::Array(prefix))) = (extra, target.get_mut("prefixItems")) {
        prefix
            .iter_mut()
            .skip(listed)
            .for_each(|item| constrain(item, extra));
    }
}
