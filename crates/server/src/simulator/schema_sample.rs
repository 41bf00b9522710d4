//! Random JSON values that validate against a JSON Schema.
//!
//! Simulated models answer tool calls and structured-output requests (`response_format` with a
//! `json_schema`) without weights, so the arguments they "produce" are sampled from the schema
//! the client sent. Schemas arrive over HTTP: every input gives a value or a [`SchemaError`]
//! naming the JSON pointer of the offending part, never a panic, a hang or a huge allocation.
//! Values are built to fit, and a small validator ([`conforms`]) settles what construction
//! cannot: `enum`/`const` members, `oneOf` exclusivity, `not`, and a final check.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use serde_json::{json, Map, Number, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

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

/// A schema with `$ref`, `allOf`, `anyOf`, `oneOf` and `not` resolved away: the merged
/// keywords, the `$ref`s followed, and the schemas the value must not match (`oneOf` branches
/// not taken, `not`).
#[derive(Default)]
struct Flat {
    schema: Schema,
    refs: usize,
    rivals: Vec<Value>,
}

impl Flat {
    fn absorb(&mut self, other: Flat, path: &str) -> Result<()> {
        merge(&mut self.schema, other.schema, path)?;
        self.refs += other.refs;
        self.rivals.extend(other.rivals);
        Ok(())
    }
}

struct Sampler<'a> {
    root: &'a Value,
    rng: &'a mut StdRng,
    /// `$ref`s followed on the way to the current subschema.
    refs: usize,
    nesting: usize,
    /// Work done so far, bounded so adversarial `$ref` fan-out cannot run for ever.
    steps: usize,
}

impl<'a> Sampler<'a> {
    fn tick(&mut self, path: &str) -> Result<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS || self.nesting > MAX_NESTING || self.refs > MAX_REF_DEPTH {
            return Err(SchemaError::TooComplex {
                path: path.to_string(),
            });
        }
        Ok(())
    }

    fn shrinking(&self) -> bool {
        self.refs >= SHRINK_REF_DEPTH
    }

    fn sample(&mut self, schema: &Value, path: &str) -> Result<Value> {
        for _ in 0..REDRAWS {
            self.tick(path)?;
            let flat = self.flatten(schema, path, 0)?;
            self.refs += flat.refs;
            self.nesting += 1;
            let value = self.sample_flat(&flat.schema, path);
            self.refs -= flat.refs;
            self.nesting -= 1;
            let value = value?;
            let budget = Cell::new(MAX_STEPS);
            let matches = |rival: &Value| conforms(&value, rival, self.root, &budget) == Some(true);
            if !flat.rivals.iter().any(matches) {
                return Ok(value);
            }
        }
        Err(unsatisfiable(
            path,
            "values keep matching a `not` or several `oneOf` branches",
        ))
    }

    /// Resolves `$ref`, `allOf`, `anyOf`, `oneOf` (choosing a branch) and `not`.
    fn flatten(&mut self, schema: &Value, path: &str, refs: usize) -> Result<Flat> {
        self.tick(path)?;
        let object = match schema {
            Value::Bool(true) => return Ok(Flat::default()),
            Value::Bool(false) => return Err(unsatisfiable(path, "the schema is `false`")),
            Value::Object(object) => object,
            _ => return Err(invalid(path, "a schema must be an object or a boolean")),
        };
        const RESOLVED: [&str; 7] = [
            "$ref",
            "allOf",
            "anyOf",
            "oneOf",
            "not",
            "$defs",
            "definitions",
        ];
        let mut out = Flat {
            schema: object.clone(),
            ..Flat::default()
        };
        out.schema
            .retain(|key, _| !RESOLVED.contains(&key.as_str()));
        out.rivals.extend(object.get("not").cloned());
        if let Some(reference) = object.get("$ref") {
            let ref_path = child(path, "$ref");
            if self.refs + refs >= MAX_REF_DEPTH {
                return Err(SchemaError::TooComplex { path: ref_path });
            }
            let (target, target_path) = self.resolve(reference, &ref_path)?;
            let target = self.flatten(target, &target_path, refs + 1)?;
            out.refs += 1;
            out.absorb(target, path)?;
        }
        if let Some(branches) = object.get("allOf") {
            let all_path = child(path, "allOf");
            for (i, branch) in schema_list(branches, &all_path)?.iter().enumerate() {
                let branch = self.flatten(branch, &child(&all_path, i), refs + out.refs)?;
                out.absorb(branch, path)?;
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(branches) = object.get(key) else {
                continue;
            };
            let key_path = child(path, key);
            let branches = schema_list(branches, &key_path)?;
            let mut order: Vec<usize> = (0..branches.len()).collect();
            order.shuffle(self.rng);
            if self.shrinking() {
                order.sort_by_key(|&i| contains_ref(&branches[i]));
            }
            // Try branches in turn: one may contradict its siblings while another fits.
            let mut first_error = None;
            for i in order {
                let branch = self.flatten(&branches[i], &child(&key_path, i), refs + out.refs);
                let mut merged = Flat {
                    schema: out.schema.clone(),
                    ..Flat::default()
                };
                match branch.and_then(|branch| merged.absorb(branch, path)) {
                    Ok(()) => {
                        (out.schema, out.refs) = (merged.schema, out.refs + merged.refs);
                        out.rivals.extend(merged.rivals);
                        if key == "oneOf" {
                            let others = branches.iter().enumerate().filter(|(j, _)| *j != i);
                            out.rivals.extend(others.map(|(_, rival)| rival.clone()));
                        }
                        first_error = None;
                        break;
                    }
                    Err(error @ SchemaError::Invalid { .. }) => return Err(error),
                    Err(error) => _ = first_error.get_or_insert(error),
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        Ok(out)
    }

    fn resolve(&self, reference: &Value, path: &str) -> Result<(&'a Value, String)> {
        let Some(text) = reference.as_str() else {
            return Err(invalid(path, "`$ref` must be a string"));
        };
        let pointer = match text.strip_prefix('#') {
            Some(pointer) if pointer.is_empty() || pointer.starts_with('/') => pointer,
            _ => return Err(unsupported(path, format!("non-local `$ref` `{text}`"))),
        };
        match self.root.pointer(pointer) {
            Some(target) => Ok((target, text.to_string())),
            None => {
                let reference = text.to_string();
                Err(SchemaError::UnresolvedRef {
                    path: path.to_string(),
                    reference,
                })
            }
        }
    }

    fn sample_flat(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let explicit = schema
            .get("type")
            .map(|t| type_names(t, path))
            .transpose()?;
        let fixed = match (schema.get("const"), schema.get("enum")) {
            (Some(constant), _) => Some(std::slice::from_ref(constant)),
            (None, Some(Value::Array(values))) => Some(&values[..]),
            (None, Some(_)) => return Err(invalid(path, "`enum` must be an array")),
            (None, None) => None,
        };
        if let Some(values) = fixed {
            let budget = Cell::new(MAX_STEPS);
            let context = Context {
                root: self.root,
                budget: &budget,
                depth: 0,
            };
            let fits = |v: &&Value| conforms_object(v, schema, &context) == Some(true);
            let options: Vec<&Value> = values.iter().filter(fits).collect();
            if options.is_empty() {
                return Err(unsatisfiable(
                    path,
                    "no `enum`/`const` value meets the other keywords",
                ));
            }
            return Ok(options[self.rng.random_range(0..options.len())].clone());
        }
        let chosen = match explicit {
            Some(types) if types.is_empty() => return Err(unsatisfiable(path, "`type` is empty")),
            Some(types) if self.shrinking() && types.contains(&"null") => "null",
            Some(types) => types[self.rng.random_range(0..types.len())],
            None => match infer_type(schema) {
                Some(inferred) => inferred,
                None => ["string", "integer", "boolean", "null"][self.rng.random_range(0..4)],
            },
        };
        match chosen {
            "null" => Ok(Value::Null),
            "boolean" => Ok(Value::Bool(self.rng.random())),
            "integer" => self.integer(schema, path),
            "number" => self.number(schema, path),
            "string" => self.string(schema, path).map(Value::String),
            "array" => self.array(schema, path),
            _ => self.object(schema, path),
        }
    }

    fn integer(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let (lower, upper) = bounds(schema, path)?;
        let lo = lower.map(|(v, open)| if open { v.floor() + 1.0 } else { v.ceil() });
        let hi = upper.map(|(v, open)| if open { v.ceil() - 1.0 } else { v.floor() });
        let (lo, hi) = default_range(lo, hi);
        if lo > SAFE_INTEGER || hi < -SAFE_INTEGER {
            return Err(unsupported(path, "integer bounds beyond ±2^53"));
        }
        let (lo, hi) = (lo.max(-SAFE_INTEGER), hi.min(SAFE_INTEGER));
        let step = match multiple_of(schema, path)? {
            None => 1.0,
            Some(m) if m.fract() == 0.0 => m,
            // The smallest integer that is a multiple of a fractional step, e.g. 2 for 0.4.
            Some(m) => match (1..=1000).map(f64::from).find(|n| is_multiple(*n, m)) {
                Some(n) => n,
                None => {
                    return Err(unsupported(
                        path,
                        "`multipleOf` has no small integer multiple",
                    ))
                }
            },
        };
        let (k_lo, k_hi) = ((lo / step).ceil(), (hi / step).floor());
        if k_lo > k_hi {
            return Err(unsatisfiable(path, "no integer within the bounds"));
        }
        let k = self.rng.random_range(k_lo as i64..=k_hi as i64);
        Ok(Value::from((k as f64 * step) as i64))
    }

    fn number(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let (lower, upper) = bounds(schema, path)?;
        let (lo, hi) = default_range(lower.map(|b| b.0), upper.map(|b| b.0));
        let (lo_open, hi_open) = (lower.is_some_and(|b| b.1), upper.is_some_and(|b| b.1));
        let above = |v: f64| v > lo || (!lo_open && v == lo);
        let below = |v: f64| v < hi || (!hi_open && v == hi);
        let fits = |v: &f64| v.is_finite() && above(*v) && below(*v);
        // Draw from a sane window of the range: [-1e12, 1e12] when it overlaps.
        let window = (lo.max(-1e12), hi.min(1e12));
        let (draw_lo, draw_hi) = if window.0 <= window.1 {
            window
        } else {
            (lo, hi)
        };
        let found = if let Some(step) = multiple_of(schema, path)? {
            // Round k × step to a short step's decimals so 0.1 × 3 reads 0.3, not 0.30…04.
            let decimals = format!("{step}").split('.').nth(1).map_or(0, str::len);
            let scale = if decimals <= 6 {
                10f64.powi(decimals as i32)
            } else {
                f64::NAN
            };
            let k_lo = (draw_lo / step).ceil() as i64;
            let k_hi = (draw_hi / step).floor() as i64;
            let random = (0..32).map(|_| self.rng.random_range(k_lo.min(k_hi)..=k_hi.max(k_lo)));
            let edges = [k_lo, k_lo.saturating_add(1), k_hi.saturating_sub(1), k_hi];
            random.chain(edges).find_map(|k| {
                let exact = k as f64 * step;
                [(exact * scale).round() / scale, exact]
                    .into_iter()
                    .find(fits)
            })
        } else {
            let raw = draw_lo + self.rng.random::<f64>() * (draw_hi - draw_lo);
            [(raw * 100.0).round() / 100.0, raw, lo / 2.0 + hi / 2.0]
                .into_iter()
                .find(fits)
        };
        match found.and_then(Number::from_f64) {
            Some(number) => Ok(Value::Number(number)),
            None => Err(unsatisfiable(
                path,
                "no number meets the bounds and `multipleOf`",
            )),
        }
    }

    fn string(&mut self, schema: &Schema, path: &str) -> Result<String> {
        let min = count_keyword(schema, "minLength", path)?.unwrap_or(0);
        let max = count_keyword(schema, "maxLength", path)?;
        if min > MAX_STRING_CHARS {
            return Err(unsupported(
                path,
                format!("`minLength` above {MAX_STRING_CHARS}"),
            ));
        }
        if max.is_some_and(|max| max < min) {
            return Err(unsatisfiable(path, "`minLength` exceeds `maxLength`"));
        }
        let fits = |s: &str| (min..=max.unwrap_or(usize::MAX)).contains(&s.chars().count());
        let format = schema.get("format").and_then(Value::as_str);
        if let Some(pattern) = schema.get("pattern") {
            let Some(pattern) = pattern.as_str() else {
                return Err(invalid(path, "`pattern` must be a string"));
            };
            let unsupported_pattern = |error: &dyn std::fmt::Display| {
                unsupported(
                    path,
                    format!("pattern `{pattern}` is not supported: {error}"),
                )
            };
            if regex_matches(pattern, "").is_none() {
                let error = fancy_regex::Regex::new(pattern).err();
                let reason = error.map_or("matching gives up".to_string(), |e| e.to_string());
                return Err(unsupported_pattern(&reason));
            }
            let matches = |text: &str| regex_matches(pattern, text) == Some(true);
            // With a `format` too: its values if they match, else pattern matches in that format.
            for _ in 0..4 {
                let text = format.and_then(|format| self.format(format));
                if let Some(text) = text.filter(|text| fits(text) && matches(text)) {
                    return Ok(text);
                }
            }
            let hir = regex_syntax::Parser::new()
                .parse(pattern)
                .map_err(|e| unsupported_pattern(&e))?;
            for attempt in 0..32 {
                // Later attempts let `*`, `+` and `{n,}` run longer to reach `minLength`.
                let extra = if attempt < 8 {
                    3
                } else {
                    2 * min.max(3) as u32
                };
                let mut budget = Budget {
                    extra,
                    steps: 100_000,
                    ended: false,
                };
                let mut out = String::new();
                let generated = generate(&hir, &mut budget, self.rng, &mut out);
                let formatted = format.and_then(|format| format_matches(format, &out));
                if generated && fits(&out) && matches(&out) && formatted != Some(false) {
                    return Ok(out);
                }
            }
            return Err(unsupported(
                path,
                format!("cannot fit `{pattern}` to the length bounds"),
            ));
        }
        if let Some(text) = format.and_then(|format| self.format(format)) {
            return match fits(&text) {
                true => Ok(text),
                false => Err(unsupported(
                    path,
                    "the `format` does not fit the length bounds",
                )),
            };
        }
        let mut text = self.word().to_string();
        while text.len() < min || (text.len() < 12 && self.rng.random_bool(0.3)) {
            text.push(' ');
            text.push_str(self.word());
        }
        if let Some(max) = max.filter(|&max| text.len() > max) {
            text.truncate(max);
            text.truncate(text.trim_end().len());
            while text.len() < min {
                text.push('x');
            }
        }
        Ok(text)
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.random_range(0..WORDS.len())]
    }

    /// A valid-looking string for a known `format`; None for formats left to plain words.
    fn format(&mut self, format: &str) -> Option<String> {
        let (a, b) = (self.word().to_lowercase(), self.word().to_lowercase());
        let r = &mut *self.rng;
        let date = format!(
            "{:04}-{:02}-{:02}",
            r.random_range(2000..=2030),
            r.random_range(1..=12),
            r.random_range(1..=28)
        );
        let (h, m, s) = (
            r.random_range(0..24),
            r.random_range(0..60),
            r.random_range(0..60),
        );
        let time = format!("{h:02}:{m:02}:{s:02}Z");
        Some(match format {
            "date-time" => format!("{date}T{time}"),
            "date" => date,
            "time" => time,
            "email" | "idn-email" => format!("{a}.{b}@example.com"),
            "uri" | "url" | "iri" => format!("https://example.com/{a}/{b}"),
            "uri-reference" | "iri-reference" => format!("/{a}/{b}"),
            "hostname" | "idn-hostname" => format!("{a}.example.com"),
            "ipv4" => {
                let octets: [u8; 3] = r.random();
                format!("10.{}.{}.{}", octets[0], octets[1], octets[2])
            }
            "ipv6" => format!("2001:db8::{:x}:{:x}", r.random::<u16>(), r.random::<u16>()),
            "duration" => format!("P{}DT{h}H", r.random_range(1..=30)),
            "uuid" => {
                // Version 4 (random), RFC 4122 variant.
                let bits =
                    r.random::<u128>() & !(0xF << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
                let hex = format!("{bits:032x}");
                let groups = [
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..],
                ];
                groups.join("-")
            }
            _ => return None,
        })
    }

    fn array(&mut self, schema: &Schema, path: &str) -> Result<Value> {
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

    fn object(&mut self, schema: &Schema, path: &str) -> Result<Value> {
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

/// Whether `value` validates against `schema`, with `root` for `$ref`s: None when that cannot
/// be told (invalid keywords, references that do not resolve, or the step budget spent).
/// Unknown formats are annotations; `patternProperties` and `dependent*` are not checked.
fn conforms(value: &Value, schema: &Value, root: &Value, budget: &Cell<usize>) -> Option<bool> {
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
struct Context<'c> {
    root: &'c Value,
    budget: &'c Cell<usize>,
    depth: usize,
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

fn conforms_object(value: &Value, s: &Schema, context: &Context) -> Option<bool> {
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

/// Whether `text` is a valid value of a known `format`; None for unknown formats.
fn format_matches(format: &str, text: &str) -> Option<bool> {
    let shape = match format {
        "date-time" => r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
        "date" => r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
        "time" => r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
        "email" | "idn-email" => r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        "uri" | "url" | "iri" => r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$",
        "uri-reference" | "iri-reference" => r"^\S*$",
        "hostname" | "idn-hostname" => {
            r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$"
        }
        "uuid" => r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$",
        "duration" => r"^P(\d+[YMWD])*(T(\d+[HMS])+)?$",
        "ipv4" => return Some(text.parse::<std::net::Ipv4Addr>().is_ok()),
        "ipv6" => return Some(text.parse::<std::net::Ipv6Addr>().is_ok()),
        _ => return None,
    };
    regex_matches(shape, text)
}

/// Whether `pattern` (ECMA-like syntax) matches somewhere in `text`; None when it does not
/// compile or gives up. Compiled patterns are kept per thread, a few hundred at most.
fn regex_matches(pattern: &str, text: &str) -> Option<bool> {
    type Cache = HashMap<String, Option<fancy_regex::Regex>>;
    thread_local!(static CACHE: RefCell<Cache> = RefCell::new(HashMap::new()));
    CACHE.with_borrow_mut(|cache| {
        if cache.len() >= 256 && !cache.contains_key(pattern) {
            cache.clear();
        }
        let compiled = cache.entry(pattern.to_string());
        let regex = compiled.or_insert_with(|| fancy_regex::Regex::new(pattern).ok());
        regex.as_ref()?.is_match(text).ok()
    })
}

fn schema_list<'v>(value: &'v Value, path: &str) -> Result<&'v [Value]> {
    match value {
        Value::Array(list) if !list.is_empty() => Ok(list),
        _ => Err(invalid(path, "must be a non-empty array of schemas")),
    }
}

fn contains_ref(value: &Value) -> bool {
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
fn type_names(value: &Value, path: &str) -> Result<Vec<&'static str>> {
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
fn infer_type(schema: &Schema) -> Option<&'static str> {
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

fn has_type(value: &Value, name: &str) -> bool {
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
type Bound = Option<(f64, bool)>;

/// Lower and upper bounds, the tighter of `minimum`/`exclusiveMinimum` (and of the maxima);
/// draft-4 boolean `exclusiveMinimum`/`exclusiveMaximum` included.
fn bounds(schema: &Schema, path: &str) -> Result<(Bound, Bound)> {
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
fn default_range(lo: Option<f64>, hi: Option<f64>) -> (f64, f64) {
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        (Some(lo), None) => (lo, (lo.max(0.0) + lo.abs().max(100.0)).min(f64::MAX)),
        (None, Some(hi)) => ((hi.min(100.0) - hi.abs().max(100.0)).max(f64::MIN), hi),
        (None, None) => (0.0, 100.0),
    }
}

fn multiple_of(schema: &Schema, path: &str) -> Result<Option<f64>> {
    match schema.get("multipleOf").map(Value::as_f64) {
        None => Ok(None),
        Some(Some(m)) if m > 0.0 && m.is_finite() => Ok(Some(m)),
        Some(_) => Err(invalid(path, "`multipleOf` must be a positive number")),
    }
}

fn is_multiple(value: f64, step: f64) -> bool {
    let ratio = value / step;
    (ratio - ratio.round()).abs() < 1e-9
}

fn count_keyword(schema: &Schema, key: &str, path: &str) -> Result<Option<usize>> {
    match schema.get(key).map(Value::as_f64) {
        None => Ok(None),
        Some(Some(n)) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n.min(1e15) as usize)),
        Some(_) => Err(invalid(
            path,
            format!("`{key}` must be a non-negative integer"),
        )),
    }
}

/// Combines `other` into `acc` so that a value valid for the result is valid for both.
fn merge(acc: &mut Schema, mut other: Schema, path: &str) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Patterns: parsed with regex-syntax, then walked to build one matching string.

/// State of one generated match: `extra` repeats allowed past an unbounded quantifier's
/// minimum, `steps` left before giving up (nested counted repeats multiply), and whether an
/// end anchor has been passed, after which nothing more may be written.
struct Budget {
    extra: u32,
    steps: usize,
    ended: bool,
}

/// Appends a random match of `hir`; false when it cannot (word boundaries, bytes) or when it
/// grows too long or takes too many steps.
fn generate(hir: &Hir, budget: &mut Budget, rng: &mut StdRng, out: &mut String) -> bool {
    let Some(steps) = budget.steps.checked_sub(1) else {
        return false;
    };
    budget.steps = steps;
    let done = match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(_) | HirKind::Class(_) if budget.ended => false,
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => {
                out.push_str(text);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let ranges = class
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32));
            push_from_class(ranges.collect(), rng, out)
        }
        HirKind::Class(Class::Bytes(class)) => {
            let ranges = class
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32));
            push_from_class(ranges.filter(|r| r.1 < 0x80).collect(), rng, out)
        }
        // The generated string is the whole input: `^` holds at its start, `$` ends it.
        HirKind::Look(Look::Start) => out.is_empty(),
        HirKind::Look(Look::StartLF) => out.is_empty() || out.ends_with('\n'),
        HirKind::Look(Look::End | Look::EndLF) => {
            budget.ended = true;
            true
        }
        HirKind::Look(_) => false, // word boundaries and CRLF anchors are not handled
        HirKind::Repetition(repetition) => {
            let (min, max) = (repetition.min, repetition.max);
            let max = max.unwrap_or(min.saturating_add(budget.extra)).max(min);
            (0..rng.random_range(min..=max)).all(|_| generate(&repetition.sub, budget, rng, out))
        }
        HirKind::Capture(capture) => generate(&capture.sub, budget, rng, out),
        HirKind::Concat(parts) => parts.iter().all(|part| generate(part, budget, rng, out)),
        HirKind::Alternation(options) => generate(
            &options[rng.random_range(0..options.len())],
            budget,
            rng,
            out,
        ),
    };
    done && out.len() <= 4 * MAX_STRING_CHARS
}

/// Pushes a random character of the class: printable ASCII when the class has any.
fn push_from_class(ranges: Vec<(u32, u32)>, rng: &mut StdRng, out: &mut String) -> bool {
    let clip = |&(lo, hi): &(u32, u32)| (lo.max(0x20), hi.min(0x7e));
    let printable: Vec<(u32, u32)> = ranges
        .iter()
        .map(clip)
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    let ranges = if printable.is_empty() {
        ranges
    } else {
        printable
    };
    let total: u32 = ranges.iter().map(|(lo, hi)| hi - lo + 1).sum();
    if total == 0 {
        return false;
    }
    let mut index = rng.random_range(0..total);
    for (lo, hi) in ranges {
        if index <= hi - lo {
            out.extend(char::from_u32(lo + index));
            return true;
        }
        index -= hi - lo + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Schemas the sampler must always satisfy, one per line.
    const GOOD_SCHEMAS: &str = r##"
{"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["location"]}
{"type": "object", "properties": {"user": {"type": "object", "properties": {"name": {"type": "string", "minLength": 3, "maxLength": 8}, "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4, "uniqueItems": true}}, "required": ["name", "tags"]}}, "required": ["user"]}
{"type": "integer", "minimum": -5, "maximum": 5}
{"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13}
{"type": "integer", "multipleOf": 7, "minimum": 20, "maximum": 60}
{"type": "integer", "multipleOf": 0.4}
{"type": "number", "minimum": 0.5, "exclusiveMaximum": 0.75}
{"type": "number", "multipleOf": 0.1, "minimum": 1, "maximum": 2}
{"type": "number", "minimum": 3, "exclusiveMinimum": true, "maximum": 4}
{"type": "number", "exclusiveMinimum": 1e300}
{"type": "string", "minLength": 40}
{"type": "string", "maxLength": 2}
{"type": "string", "minLength": 5, "maxLength": 5}
{"type": "string", "pattern": "^[A-Z]{2}-\\d{3}(x|yz)?$"}
{"type": "string", "pattern": "^(?:[a-z0-9._%+-]+)@example\\.(com|org)$"}
{"type": "string", "pattern": "\\w+", "minLength": 12}
{"type": "string", "pattern": "^[^a-z]*$", "maxLength": 6}
{"type": "string", "format": "date", "pattern": "^\\d{4}-\\d\\d-\\d\\d$"}
{"type": "object", "properties": {"d": {"format": "date-time"}, "e": {"type": "string", "format": "email"}, "u": {"type": "string", "format": "uuid"}, "ip": {"format": "ipv4"}, "t": {"format": "time"}, "day": {"format": "date"}, "uri": {"format": "uri"}, "h": {"format": "hostname"}, "v6": {"format": "ipv6"}}, "required": ["d", "e", "u", "ip", "t", "day", "uri", "h", "v6"]}
{"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 100}]}
{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind", "x"], "additionalProperties": false}, {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"], "additionalProperties": false}]}
{"oneOf": [{"type": "integer"}, {"type": "number"}]}
{"type": "integer", "not": {"enum": [1, 2, 3]}, "minimum": 1, "maximum": 10}
{"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}, "a": {"minimum": 50}}, "required": ["b"]}]}
{"type": ["number", "string"], "allOf": [{"type": ["integer", "null"]}], "maximum": -3}
{"type": ["string", "null"], "maxLength": 4}
{"enum": ["x", 2, "yy", null], "type": "string", "minLength": 2}
{"type": "array", "prefixItems": [{"type": "boolean"}, {"const": 3}], "items": false, "minItems": 1}
{"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}, "minItems": 3}
{"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["value", "children"]}}, "$ref": "#/$defs/node"}
{"definitions": {"list": {"type": "object", "properties": {"head": {"type": "string"}, "tail": {"anyOf": [{"$ref": "#/definitions/list"}, {"type": "null"}]}}, "required": ["head", "tail"]}}, "$ref": "#/definitions/list"}
{"type": "object", "properties": {"self": {"$ref": "#"}, "n": {"type": ["integer", "null"]}}, "required": ["n"]}
{"type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}}, "final_answer": {"type": "string"}}, "required": ["steps", "final_answer"], "additionalProperties": false, "$defs": {"step": {"type": "object", "properties": {"explanation": {"type": "string"}, "output": {"type": ["string", "null"]}}, "required": ["explanation", "output"], "additionalProperties": false}}}
{"properties": {"q": {"type": "string"}}, "required": ["q", "extra"], "minProperties": 2}
{"type": "object", "properties": {"a": {}, "b": true, "c": {"type": "number"}}, "minProperties": 2, "maxProperties": 2}
true
{}
{"const": {"nested": [1, 2]}}
"##;

    fn good_schemas() -> Vec<Value> {
        let lines = GOOD_SCHEMAS.lines().filter(|line| !line.is_empty());
        lines
            .map(|line| serde_json::from_str(line).expect(line))
            .collect()
    }

    fn valid(value: &Value, schema: &Value) -> Option<bool> {
        conforms(value, schema, schema, &Cell::new(MAX_STEPS))
    }

    /// Values built for `schema` with seeds 0..count, each checked before any final check.
    fn sample_many(schema: &Value, count: u64) -> Vec<Value> {
        let sample = |seed| {
            let value = sample_constructed(schema, &mut StdRng::seed_from_u64(seed));
            let value = value.unwrap_or_else(|e| panic!("seed {seed}: {e} for {schema}"));
            assert_eq!(
                valid(&value, schema),
                Some(true),
                "seed {seed}: {value} for {schema}"
            );
            value
        };
        (0..count).map(sample).collect()
    }

    #[test]
    fn weather_tool_arguments() {
        let values = sample_many(&good_schemas()[0], 200);
        let with_unit = values.iter().filter(|v| v.get("unit").is_some()).count();
        assert!(
            (60..=140).contains(&with_unit),
            "optional `unit` in {with_unit}/200"
        );
        assert!(values
            .iter()
            .all(|v| v["location"].is_string() && v.as_object().unwrap().len() <= 2));
        assert!(values
            .iter()
            .all(|v| v.get("unit").is_none_or(|u| u == "c" || u == "f")));
    }

    #[test]
    fn many_schemas_give_valid_values() {
        for schema in good_schemas() {
            sample_many(&schema, 200);
        }
    }

    #[test]
    fn constraints_hold_by_direct_inspection() {
        let schemas = good_schemas();
        for v in sample_many(&schemas[4], 50) {
            assert!(
                v.as_i64()
                    .is_some_and(|n| n % 7 == 0 && (20..=60).contains(&n)),
                "{v}"
            );
        }
        for v in sample_many(&schemas[7], 50) {
            let x = v.as_f64().unwrap();
            assert!(
                (1.0..=2.0).contains(&x) && (x * 10.0 - (x * 10.0).round()).abs() < 1e-9,
                "{v}"
            );
        }
        for v in sample_many(&schemas[13], 50) {
            let s = v.as_str().unwrap().as_bytes();
            assert!(
                s[..2].iter().all(u8::is_ascii_uppercase) && s[2] == b'-',
                "{v}"
            );
        }
        for v in sample_many(&schemas[18], 50) {
            assert!(
                v["ip"]
                    .as_str()
                    .unwrap()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok(),
                "{v}"
            );
            assert_eq!(v["u"].as_str().unwrap().len(), 36);
            assert!(v["e"].as_str().unwrap().contains('@'));
        }
        for v in sample_many(&schemas[22], 50) {
            assert!(v.as_i64().is_some_and(|n| (4..=10).contains(&n)), "{v}");
        }
    }

    #[test]
    fn same_seed_same_value_and_seeds_vary() {
        let schema = &good_schemas()[1];
        let sample = |seed| sample_value(schema, &mut StdRng::seed_from_u64(seed)).ok();
        assert_eq!(sample(5), sample(5));
        assert!((0..20)
            .map(sample)
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] != w[1]));
    }

    #[test]
    fn recursive_tree_terminates_with_some_depth() {
        let depth = |v: &Value| {
            let (mut stack, mut deepest) = (vec![(v, 0)], 0);
            while let Some((node, d)) = stack.pop() {
                deepest = deepest.max(d);
                stack.extend(
                    node["children"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| (c, d + 1)),
                );
            }
            deepest
        };
        let deepest = sample_many(&good_schemas()[29], 200)
            .iter()
            .map(depth)
            .max();
        assert!(deepest.is_some_and(|d| (2..=5).contains(&d)), "{deepest:?}");
    }

    #[test]
    fn validator_accepts_and_rejects_by_hand() {
        let cases = r##"
{"type": "integer"} | 3 | 3.5 | "3"
{"type": ["string", "null"], "maxLength": 2} | null | "abc" | 1
{"exclusiveMinimum": 1, "multipleOf": 0.5} | 1.5 | 1 | 1.25
{"pattern": "^a+$", "minLength": 2} | "aa" | "ab" | "a"
{"format": "date-time"} | "2024-05-01T10:00:00Z" | "2024-05-01" | "yesterday"
{"format": "ipv4"} | "10.0.0.1" | "10.0.0.256" | "a.b.c.d"
{"prefixItems": [{"type": "string"}], "items": false, "uniqueItems": true} | ["x"] | ["x", "y"] | [1]
{"type": "array", "items": {"type": "integer"}, "minItems": 2} | [1, 2] | [1] | [1, "2"]
{"required": ["a"], "properties": {"a": {"const": 1}}, "additionalProperties": false} | {"a": 1} | {"a": 2} | {"a": 1, "b": 1}
{"anyOf": [{"type": "string"}, {"minimum": 5}]} | 7 | 2 | 2
{"oneOf": [{"type": "integer"}, {"type": "number"}]} | 1.5 | 1 | "1"
{"allOf": [{"minimum": 1}, {"maximum": 2}], "not": {"const": 2}} | 1 | 2 | 3
{"$defs": {"p": {"type": "integer", "minimum": 0}}, "items": {"$ref": "#/$defs/p"}} | [0, 1] | [-1] | ["a"]
"##;
        for line in cases.lines().filter(|line| !line.is_empty()) {
            let parts: Vec<Value> = line
                .split(" | ")
                .map(|p| serde_json::from_str(p).unwrap())
                .collect();
            let (schema, good, bad) = (&parts[0], &parts[1], &parts[2..]);
            assert_eq!(valid(good, schema), Some(true), "{good} against {schema}");
            for bad in bad {
                assert_eq!(valid(bad, schema), Some(false), "{bad} against {schema}");
            }
        }
        assert_eq!(valid(&json!(1), &json!({"minimum": "x"})), None);
        assert_eq!(valid(&json!(1), &json!({"$ref": "#/nope"})), None);
    }

    #[test]
    fn bad_schemas_are_errors_naming_the_path() {
        let error = |schema: Value| match sample_value(&schema, &mut StdRng::seed_from_u64(0)) {
            Ok(value) => panic!("{value} for {schema}"),
            Err(error) => error.to_string(),
        };
        let cases = r##"
false | at #
{"type": 5} | invalid schema at #
{"type": "number", "minimum": "x"} | `minimum`
{"$ref": "#/nope"} | `#/nope`
{"$ref": "https://example.com/s.json"} | non-local
{"properties": {"a": {"minLength": 10, "maxLength": 2}}, "required": ["a"]} | at #/properties/a
{"type": "string", "pattern": "(a)\\1"} | not supported
{"type": "string", "pattern": "\\bx"} | length bounds
{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"} | too deep
{"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]} | too deep
{"allOf": [{"type": "string"}, {"type": "integer"}]} | do not overlap
{"type": "integer", "minimum": 3, "maximum": 2} | no integer
{"type": "array", "minItems": 4, "maxItems": 2} | item count
{"required": ["x"], "additionalProperties": false} | `x`
{"enum": [1, 2], "type": "string"} | `enum`
{"enum": [1, 2], "minimum": 3} | `enum`
{"const": "abc", "maxLength": 2} | `const`
{"not": {}} | `not`
{"oneOf": [{"type": "integer"}, {"minimum": 0}], "minimum": 0, "type": "integer"} | `oneOf`
"##;
        for line in cases.lines().filter(|line| !line.is_empty()) {
            let (schema, expected) = line.split_once(" | ").unwrap();
            let message = error(serde_json::from_str(schema).unwrap());
            assert!(message.contains(expected), "{schema}: {message}");
        }
    }

    /// Random JSON with schema keywords: well-typed keyword values when `typed`, else garbage.
    fn random_schema(rng: &mut StdRng, depth: u32, typed: bool) -> Value {
        #[rustfmt::skip]
        const KEYS: &[&str] = &[
            "type", "properties", "items", "prefixItems", "minimum", "exclusiveMaximum", "multipleOf",
            "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "enum",
            "additionalProperties", "anyOf", "oneOf", "allOf", "not", "$ref", "$defs", "required",
            "pattern", "const", "format",
        ];
        #[rustfmt::skip]
        const WORDS: &[&str] = &[
            "string", "integer", "number", "boolean", "object", "array", "null", "#", "#/$defs/a",
            "#/properties/a", "a", "b", "a+", "^[0-9]{2,3}$", "date-time", "email", "uuid", "ipv4",
        ];
        let pick =
            |list: &[&str], rng: &mut StdRng| list[rng.random_range(0..list.len())].to_string();
        let any = |rng: &mut StdRng| random_schema(rng, depth + 1, typed);
        if !typed || depth > 3 || rng.random_bool(0.15) {
            return match rng.random_range(0..if depth > 3 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => json!(rng.random_range(-3..20)),
                2 => json!(rng.random::<f64>() * 10.0 - 2.0),
                3 => json!(pick(WORDS, rng)),
                4 => json!(rng.random_bool(0.5)),
                5 => json!({}),
                6 => (0..rng.random_range(0..4))
                    .map(|_| (pick(KEYS, rng), any(rng)))
                    .collect(),
                _ => (0..rng.random_range(0..3)).map(|_| any(rng)).collect(),
            };
        }
        let mut schema = Map::new();
        for _ in 0..rng.random_range(0..4) {
            let key = pick(KEYS, rng);
            let value = match key.as_str() {
                "type" => json!(pick(&TYPES, rng)),
                "properties" | "$defs" => json!({"a": any(rng), "b": any(rng)}),
                "prefixItems" | "anyOf" | "oneOf" | "allOf" => {
                    (0..rng.random_range(1..3)).map(|_| any(rng)).collect()
                }
                "minimum" | "exclusiveMaximum" => json!(rng.random_range(-3..20)),
                "multipleOf" => json!([0.5, 1.0, 2.0, 3.0][rng.random_range(0..4)]),
                "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties" => {
                    json!(rng.random_range(0..5))
                }
                "uniqueItems" => json!(rng.random_bool(0.5)),
                "enum" => (0..rng.random_range(1..4))
                    .map(|_| random_schema(rng, 4, false))
                    .collect(),
                "const" => random_schema(rng, 4, false),
                "$ref" => {
                    json!(["#", "#/$defs/a", "#/$defs/b", "#/properties/a"][rng.random_range(0..4)])
                }
                "required" => json!(["a", "b"][..rng.random_range(0..3)]),
                "pattern" => json!(["a+", "^[0-9]{2,3}$", "^x?y*$"][rng.random_range(0..3)]),
                "format" => json!(pick(&WORDS[14..], rng)),
                _ => any(rng),
            };
            schema.insert(key, value);
        }
        Value::Object(schema)
    }

    #[test]
    fn random_schemas_never_panic_hang_or_give_invalid_values() {
        let mut rng = StdRng::seed_from_u64(11);
        let (mut built, mut checked) = (0, 0);
        for i in 0..4000 {
            let schema = random_schema(&mut rng, 0, i % 2 == 0);
            let started = std::time::Instant::now();
            for seed in 0..3 {
                if let Ok(value) = sample_value(&schema, &mut StdRng::seed_from_u64(seed)) {
                    assert_ne!(valid(&value, &schema), Some(false), "{value} for {schema}");
                    built += 1;
                }
                if i % 2 == 0 {
                    let constructed = sample_constructed(&schema, &mut StdRng::seed_from_u64(seed));
                    if let Ok(value) = constructed {
                        assert_ne!(valid(&value, &schema), Some(false), "{value} for {schema}");
                        checked += 1;
                    }
                }
            }
            assert!(started.elapsed().as_secs() < 2, "slow on {schema}");
        }
        assert!(
            built > 3000 && checked > 1500,
            "only {built} values, {checked} checked"
        );
    }

    #[test]
    fn hostile_schemas_end_quickly() {
        // Each definition refers twice to the previous one: 2^30 paths through 31 schemas.
        let mut defs = Map::new();
        defs.insert("d0".into(), json!({"type": "integer"}));
        for i in 1..=30 {
            let previous = json!({"$ref": format!("#/$defs/d{}", i - 1)});
            defs.insert(
                format!("d{i}"),
                json!({"allOf": [previous, previous], "oneOf": [previous, false]}),
            );
        }
        let hostile = r##"
{"type": "string", "pattern": "(((a{0,1000}){1000}){1000}){1000}"}
{"pattern": "x{1000}{1000}"}
{"type": "array", "items": {"type": "array", "minItems": 1000, "items": {"minItems": 1000}}}
{"type": "number", "multipleOf": 1e-300, "minimum": -1e308, "maximum": 1e308}
{"type": "integer", "multipleOf": 0.3333333}
{"minLength": 1e12}
{"type": "array", "uniqueItems": true, "minItems": 3, "items": {"type": "boolean"}}
"##;
        let lines = hostile.lines().filter(|line| !line.is_empty());
        let mut schemas: Vec<Value> = lines
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        schemas.push(json!({"$defs": defs, "$ref": "#/$defs/d30"}));
        // As deep as serde_json parses: nested objects, and nested `allOf`s.
        let (mut object, mut all) = (json!({"type": "integer"}), json!({"type": "integer"}));
        for _ in 0..120 {
            object = json!({"type": "object", "properties": {"a": object}, "required": ["a"]});
            all = json!({"allOf": [all, {"not": {"$ref": "#"}}]});
        }
        schemas.extend([
            object,
            all,
            json!({"$ref": "#"}),
            json!({"not": {"$ref": "#"}}),
        ]);
        for schema in schemas {
            let started = std::time::Instant::now();
            let result = sample_value(&schema, &mut StdRng::seed_from_u64(0));
            assert!(started.elapsed().as_secs() < 2, "slow on {schema}");
            if let Ok(value) = result {
                assert_ne!(valid(&value, &schema), Some(false), "{value} for {schema}");
            }
        }
    }
}
