//! Arrays and objects: item counts, tuples (`prefixItems` or draft-7 `items`), unique items,
//! and which properties to include so `required`, `additionalProperties` and the property
//! counts all hold. Items and property values are sampled recursively.

use super::keywords::{count_keyword, schema_list};
use super::sampler::Sampler;
use super::{child, invalid, unsatisfiable, unsupported, Result, Schema, MAX_ITEMS};
use rand::Rng;
use serde_json::{Map, Value};

impl Sampler<'_> {
    pub(super) fn array(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        // Draft 2020-12 `prefixItems` + `items`, or the older tuple `items` + `additionalItems`.
        let (prefix, prefix_key, rest, rest_key) =
            match (schema.get("prefixItems"), schema.get("items")) {
                (Some(tuple), items) => (
                    schema_list(tuple, &child(path, "prefixItems"))?,
                    "prefixItems",
                    items,
                    "items",
                ),
                (None, Some(Value::Array(tuple))) => (
                    &tuple[..],
                    "items",
                    schema.get("additionalItems"),
                    "additionalItems",
                ),
                (None, items) => (&[][..], "prefixItems", items, "items"),
            };
        let min = count_keyword(schema, "minItems", path)?;
        let max = count_keyword(schema, "maxItems", path)?;
        if min.is_some_and(|min| min > MAX_ITEMS) {
            return Err(unsupported(path, format!("`minItems` above {MAX_ITEMS}")));
        }
        let shrinking = self.shrinking();
        let lo = min.unwrap_or(if shrinking { 0 } else { 1 });
        let mut hi = if shrinking { lo } else { (lo + 2).max(3) };
        hi = max.map_or(hi, |max| max.min(hi));
        if rest == Some(&Value::Bool(false)) {
            hi = hi.min(prefix.len());
        }
        let lo = if min.is_some() { lo } else { lo.min(hi) };
        if lo > hi {
            return Err(unsatisfiable(path, "the item count bounds leave no room"));
        }
        let unique = schema.get("uniqueItems") == Some(&Value::Bool(true));
        let mut items: Vec<Value> = Vec::new();
        for i in 0..self.rng.random_range(lo..=hi) {
            let (item_schema, item_path) = match prefix.get(i) {
                Some(s) => (s, child(&child(path, prefix_key), i)),
                None => (rest.unwrap_or(&Value::Bool(true)), child(path, rest_key)),
            };
            let mut item = self.sample(item_schema, &item_path)?;
            for _ in 0..16 {
                if !unique || !items.contains(&item) {
                    break;
                }
                item = self.sample(item_schema, &item_path)?;
            }
            if unique && items.contains(&item) {
                return Err(unsupported(path, "could not find enough distinct items"));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    pub(super) fn object(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let empty = Map::new();
        let properties = match schema.get("properties") {
            None => &empty,
            Some(Value::Object(properties)) => properties,
            Some(_) => return Err(invalid(path, "`properties` must be an object")),
        };
        let names: &[Value] = match schema.get("required") {
            None => &[],
            Some(Value::Array(names)) => names,
            Some(_) => return Err(invalid(path, "`required` must be an array of strings")),
        };
        let mut required: Vec<&str> = Vec::new();
        for name in names {
            let Some(name) = name.as_str() else {
                return Err(invalid(path, "`required` must be an array of strings"));
            };
            if !required.contains(&name) {
                required.push(name);
            }
        }
        let min = count_keyword(schema, "minProperties", path)?.unwrap_or(0);
        let max = count_keyword(schema, "maxProperties", path)?.unwrap_or(usize::MAX);
        // Optional properties: a coin flip each, then adjusted to meet min/maxProperties.
        let optional = |name: &String| !required.contains(&name.as_str());
        let shrinking = self.shrinking();
        let mut include: Vec<bool> = properties
            .keys()
            .map(|name| optional(name) && !shrinking && self.rng.random_bool(0.5))
            .collect();
        let mut count = required.len() + include.iter().filter(|on| **on).count();
        for (on, name) in include.iter_mut().zip(properties.keys()) {
            if count < min && !*on && optional(name) {
                (*on, count) = (true, count + 1);
            }
        }
        for on in include.iter_mut().rev() {
            if count > max && *on {
                (*on, count) = (false, count - 1);
            }
        }
        let mut out = Map::new();
        for ((name, property), on) in properties.iter().zip(include) {
            if on || !optional(name) {
                match self.sample(property, &child(&child(path, "properties"), name)) {
                    Ok(value) => _ = out.insert(name.clone(), value),
                    Err(error) if !optional(name) => return Err(error),
                    Err(_) => {} // an optional property that cannot be sampled is left out
                }
            }
        }
        for name in required
            .iter()
            .filter(|name| !properties.contains_key(**name))
        {
            let extra = match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    return Err(unsatisfiable(
                        path,
                        format!("`{name}` is required but not allowed"),
                    ))
                }
                Some(schema @ Value::Object(_)) => schema,
                _ => &Value::Bool(true),
            };
            let value = self.sample(extra, &child(path, "additionalProperties"))?;
            out.insert(name.to_string(), value);
        }
        if out.len() < min || out.len() > max {
            return Err(unsatisfiable(
                path,
                "the property count bounds cannot be met",
            ));
        }
        Ok(Value::Object(out))
    }
}
