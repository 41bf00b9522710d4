//! Tests: good schemas always give valid values, constraints checked by hand, the validator
//! against hand-written cases, bad and hostile schemas fail fast with a path, and random
//! schemas never panic, hang or give invalid values.

use super::*;
use rand::{Rng, SeedableRng};
use serde_json::json;

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
    let pick = |list: &[&str], rng: &mut StdRng| list[rng.random_range(0..list.len())].to_string();
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
