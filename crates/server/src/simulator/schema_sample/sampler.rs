//! The core of the sampler: its state and limits, `$ref`/`allOf`/`anyOf`/`oneOf`/`not`
//! resolution into one flat schema (with the schemas the value must not match), and the
//! choice of a type. Each type's values are built in `scalars` and `containers`.

use super::keywords::{contains_ref, infer_type, schema_list, type_names};
use super::merge::merge;
use super::validate::{conforms, conforms_object, Context};
use super::{
    child, invalid, unsatisfiable, unsupported, Result, Schema, SchemaError, MAX_NESTING,
    MAX_REF_DEPTH, MAX_STEPS, REDRAWS, SHRINK_REF_DEPTH,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;
use std::cell::Cell;

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

pub(super) struct Sampler<'a> {
    pub(super) root: &'a Value,
    pub(super) rng: &'a mut StdRng,
    /// `$ref`s followed on the way to the current subschema.
    pub(super) refs: usize,
    pub(super) nesting: usize,
    /// Work done so far, bounded so adversarial `$ref` fan-out cannot run for ever.
    pub(super) steps: usize,
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

    pub(super) fn shrinking(&self) -> bool {
        self.refs >= SHRINK_REF_DEPTH
    }

    pub(super) fn sample(&mut self, schema: &Value, path: &str) -> Result<Value> {
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
}
