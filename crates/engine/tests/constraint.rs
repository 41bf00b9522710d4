//! Constrained decoding (`nanochat_engine::constraint`): a random-weight model sampled at
//! temperature 1 under a JSON-schema or json_object grammar always produces JSON that parses
//! and validates; bad schemas are `BadRequest`s; special tokens other than `<|assistant_end|>`
//! are never allowed, and once the value is complete only `<|assistant_end|>` is.

use std::time::Instant;

use candle_core::Device;
use nanochat_engine::{
    Constraint, ConstraintFactory, Engine, EngineError, GenerateOptions, SamplingParams,
};
use nanochat_fixtures::fixture;
use nanochat_model::checkpoint::{find_checkpoint, load_checkpoint, LoadedModel, Source};
use nanochat_tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn tokenizer_512() -> Tokenizer {
    Tokenizer::from_dir(&fixture("nanochat-2025/tokenizer")).unwrap()
}

fn tokenizer_65k() -> Tokenizer {
    Tokenizer::from_dir(&fixture("tokenizer-65k")).unwrap()
}

fn model() -> LoadedModel {
    let files = find_checkpoint(&fixture("nanochat-2025"), Source::Sft, Some("d2"), None).unwrap();
    load_checkpoint(&files, nanochat_model::WeightDType::F32, &Device::Cpu).unwrap()
}

fn prompt(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let ids = tok.special_ids().unwrap();
    let mut p = vec![ids.bos, ids.user_start];
    p.extend(tok.encode(text).unwrap());
    p.extend([ids.user_end, ids.assistant_start]);
    p
}

const COLORS: [&str; 3] = ["red", "green", "blue"];

fn record_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "color": {"type": "string", "enum": COLORS},
            "ok": {"type": "boolean"},
            "count": {"type": "integer", "minimum": -5, "maximum": 120},
            "name": {"type": "string", "maxLength": 6}
        },
        "required": ["color", "ok", "count", "name"],
        "additionalProperties": false
    })
}

/// The hand-written check of `record_schema`.
fn validate_record(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("not an object")?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["color", "count", "name", "ok"] {
        return Err(format!("keys {keys:?}"));
    }
    let color = obj["color"].as_str().ok_or("color is not a string")?;
    if !COLORS.contains(&color) {
        return Err(format!("color {color:?} not in the enum"));
    }
    obj["ok"].as_bool().ok_or("ok is not a boolean")?;
    let count = obj["count"].as_i64().ok_or("count is not an integer")?;
    if !(-5..=120).contains(&count) {
        return Err(format!("count {count} out of range"));
    }
    let name = obj["name"].as_str().ok_or("name is not a string")?;
    if name.chars().count() > 6 {
        return Err(format!("name {name:?} longer than 6"));
    }
    Ok(())
}

/// One generated row: its tokens before `<|assistant_end|>`, and whether it ended on it.
struct Row {
    tokens: Vec<u32>,
    ended: bool,
    /// `Constraint::is_complete` after the last content token.
    complete: bool,
}

/// Generates `rows` rows under a fresh constraint each (made by `make`), checking at every step
/// that the mask never allows a special token other than `<|assistant_end|>`, that
/// `<|assistant_end|>` is allowed exactly when the grammar accepts, and that the sampled token
/// was allowed. `bias` may edit the masked logits (greedy tests steer the model with it).
fn generate(
    engine: &Engine,
    make: &dyn Fn() -> Constraint,
    rows: usize,
    max_tokens: usize,
    temperature: f32,
    seed: u64,
    bias: &dyn Fn(&mut [f32]),
) -> Vec<Row> {
    let tok = engine.tokenizer();
    let specials = tok.special_ids().unwrap();
    let others: Vec<u32> = tok
        .special_tokens()
        .iter()
        .map(|(_, id)| *id)
        .filter(|&id| id != specials.assistant_end)
        .collect();
    let p = prompt(tok, "Reply in JSON please.");
    let options = GenerateOptions {
        num_samples: rows,
        max_tokens: Some(max_tokens),
        sampling: SamplingParams {
            temperature,
            ..SamplingParams::default()
        },
        seed,
        use_tools: false,
        broadcast_first_token: false,
        ..GenerateOptions::default()
    };
    let mut constraints: Vec<Constraint> = (0..rows).map(|_| make()).collect();
    let mut out: Vec<Row> = (0..rows)
        .map(|_| Row {
            tokens: Vec::new(),
            ended: false,
            complete: false,
        })
        .collect();
    let mut allowed: Vec<Vec<bool>> = vec![Vec::new(); rows];
    let mut gen = engine.generate(&p, &options).unwrap();
    while let Some(column) = gen
        .next_column_with(&mut |row, logits| {
            let c = &mut constraints[row];
            c.mask_logits(logits)?;
            for &s in &others {
                assert_eq!(logits[s as usize], f32::NEG_INFINITY, "special {s} allowed");
            }
            let eos_allowed = logits[specials.assistant_end as usize].is_finite();
            assert_eq!(
                eos_allowed,
                c.is_complete(),
                "assistant_end allowed iff complete"
            );
            if c.is_stopped() {
                let finite = logits.iter().filter(|l| l.is_finite()).count();
                assert_eq!(finite, 1, "after completion only assistant_end is allowed");
                assert!(eos_allowed);
            }
            allowed[row] = logits.iter().map(|l| l.is_finite()).collect();
            bias(logits);
            Ok(())
        })
        .unwrap()
    {
        for (row, &token) in column.tokens.iter().enumerate() {
            if out[row].ended {
                continue;
            }
            assert!(
                allowed[row][token as usize],
                "row {row} sampled masked token {token}"
            );
            constraints[row].commit(token).unwrap();
            if token == specials.assistant_end {
                out[row].ended = true;
            } else {
                out[row].tokens.push(token);
                out[row].complete = constraints[row].is_complete();
            }
        }
    }
    out
}

fn text(tok: &Tokenizer, tokens: &[u32]) -> String {
    String::from_utf8(tok.decode_bytes(tokens).unwrap()).expect("constrained output is UTF-8")
}

#[test]
fn json_schema_output_always_parses_and_validates() {
    let tok = tokenizer_512();
    let loaded = model();
    let engine = Engine::new(&loaded.model, &tok).unwrap();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let schema = record_schema();
    let mut seen_names = std::collections::BTreeSet::new();
    for seed in 0..6 {
        let rows = generate(
            &engine,
            &|| factory.json_schema(&schema).unwrap(),
            3,
            200,
            1.0,
            seed,
            &|_| {},
        );
        for (i, row) in rows.iter().enumerate() {
            let s = text(&tok, &row.tokens);
            // Every value of this schema fits in far fewer than 200 tokens: every row ends.
            assert!(row.ended, "seed {seed} row {i} did not end: {s:?}");
            assert!(row.complete, "seed {seed} row {i} ended incomplete: {s:?}");
            let v: Value = serde_json::from_str(&s)
                .unwrap_or_else(|e| panic!("seed {seed} row {i}: {s:?} does not parse: {e}"));
            validate_record(&v).unwrap_or_else(|e| panic!("seed {seed} row {i}: {s:?}: {e}"));
            assert!(
                !s.contains(' ') || v["name"].as_str().unwrap().contains(' '),
                "{s:?}"
            );
            seen_names.insert(v["name"].as_str().unwrap().to_string());
        }
    }
    // Sampling at temperature 1 really explores: the free-text field differs between rows.
    assert!(seen_names.len() > 5, "{seen_names:?}");
}

fn tool_call_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 8},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    "unit": {"enum": ["c", "f"]}
                },
                "required": ["city", "days"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"],
        "additionalProperties": false
    })
}

fn validate_tool_call(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("not an object")?;
    if obj.len() != 2 || obj.get("name") != Some(&json!("get_weather")) {
        return Err("name".into());
    }
    let args = obj
        .get("arguments")
        .and_then(Value::as_object)
        .ok_or("arguments is not an object")?;
    if args
        .keys()
        .any(|k| !["city", "days", "unit"].contains(&k.as_str()))
    {
        return Err(format!("extra argument in {args:?}"));
    }
    let city = args.get("city").and_then(Value::as_str).ok_or("city")?;
    if city.chars().count() > 8 {
        return Err(format!("city {city:?} longer than 8"));
    }
    let days = args.get("days").and_then(Value::as_i64).ok_or("days")?;
    if !(1..=7).contains(&days) {
        return Err(format!("days {days}"));
    }
    if let Some(unit) = args.get("unit") {
        if unit != "c" && unit != "f" {
            return Err(format!("unit {unit}"));
        }
    }
    Ok(())
}

#[test]
fn tool_call_schema_output_always_validates() {
    let tok = tokenizer_512();
    let loaded = model();
    let engine = Engine::new(&loaded.model, &tok).unwrap();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let schema = tool_call_schema();
    for seed in 0..6 {
        let base = factory.json_schema(&schema).unwrap();
        // Rows of one request share one compiled grammar through clones.
        let rows = generate(&engine, &|| base.clone(), 3, 200, 1.0, seed, &|_| {});
        for (i, row) in rows.iter().enumerate() {
            let s = text(&tok, &row.tokens);
            assert!(row.ended && row.complete, "seed {seed} row {i}: {s:?}");
            let v: Value = serde_json::from_str(&s)
                .unwrap_or_else(|e| panic!("seed {seed} row {i}: {s:?} does not parse: {e}"));
            validate_tool_call(&v).unwrap_or_else(|e| panic!("seed {seed} row {i}: {s:?}: {e}"));
        }
    }
    // This random model always closes after "days" (its logits prefer `}` to `,`), so the
    // optional property is checked by feeding text: it may come or not, and nothing else may.
    for text in [
        r#"{"name":"get_weather","arguments":{"city":"Oslo","days":3}}"#,
        r#"{"name":"get_weather","arguments":{"city":"Oslo","days":3,"unit":"f"}}"#,
    ] {
        let mut c = factory.json_schema(&schema).unwrap();
        feed(&tok, &mut c, text);
        assert!(c.is_complete() && c.is_stopped(), "{text}");
    }
    let mut c = factory.json_schema(&schema).unwrap();
    feed(
        &tok,
        &mut c,
        r#"{"name":"get_weather","arguments":{"city":"Oslo","days":3,""#,
    );
    let z = tok.encode("z").unwrap()[0];
    assert!(!allowed(&mut c, tok.vocab_size()).contains(&z));
}

#[test]
fn json_object_output_is_an_object_whenever_the_row_ends() {
    let tok = tokenizer_512();
    let loaded = model();
    let engine = Engine::new(&loaded.model, &tok).unwrap();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let (mut ended, mut total) = (0, 0);
    for seed in 0..6 {
        let rows = generate(
            &engine,
            &|| factory.json_object().unwrap(),
            4,
            300,
            1.0,
            seed,
            &|_| {},
        );
        for (i, row) in rows.iter().enumerate() {
            total += 1;
            // An unfinished row may stop inside a multi-byte character.
            let s = tok.decode(&row.tokens).unwrap();
            assert!(s.starts_with('{'), "seed {seed} row {i}: {s:?}");
            if row.ended {
                let s = text(&tok, &row.tokens);
                ended += 1;
                assert!(row.complete);
                let v: Value = serde_json::from_str(&s)
                    .unwrap_or_else(|e| panic!("seed {seed} row {i}: {s:?} does not parse: {e}"));
                assert!(v.is_object(), "seed {seed} row {i}: {s:?}");
            } else {
                // Cut off by max_tokens: an unfinished object, so it must not parse.
                assert!(!row.complete, "seed {seed} row {i}: {s:?}");
                assert!(serde_json::from_str::<Value>(&s).is_err(), "{s:?}");
            }
        }
    }
    eprintln!("json_object: {ended}/{total} rows ended within 300 tokens");
    assert!(ended >= total / 4, "only {ended}/{total} rows completed");
}

#[test]
fn greedy_json_object_steered_to_close_is_a_valid_object() {
    // Deterministic: greedy decoding, with a bonus on tokens that close strings and objects so
    // the random model finishes quickly. Whatever the bias, the mask keeps the output valid.
    let tok = tokenizer_512();
    let loaded = model();
    let engine = Engine::new(&loaded.model, &tok).unwrap();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let closers: Vec<usize> = tok
        .ranks()
        .iter()
        .enumerate()
        .filter(|(_, b)| b.contains(&b'}') || b.contains(&b'"'))
        .map(|(i, _)| i)
        .collect();
    assert!(!closers.is_empty());
    let bias = |logits: &mut [f32]| {
        for &i in &closers {
            logits[i] += 3.0;
        }
    };
    let rows = generate(
        &engine,
        &|| factory.json_object().unwrap(),
        1,
        200,
        0.0,
        0,
        &bias,
    );
    let s = text(&tok, &rows[0].tokens);
    assert!(rows[0].ended, "{s:?}");
    let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(v.is_object(), "{s:?}");
    // The same bias without the grammar does not produce an object: the mask did the work.
    let p = prompt(&tok, "Reply in JSON please.");
    let mut gen = engine
        .generate(
            &p,
            &GenerateOptions {
                max_tokens: Some(20),
                use_tools: false,
                ..GenerateOptions::default()
            },
        )
        .unwrap();
    let mut free = Vec::new();
    while let Some(c) = gen
        .next_column_with(&mut |_, l| {
            bias(l);
            Ok(())
        })
        .unwrap()
    {
        free.push(c.tokens[0]);
    }
    let free = tok.decode(&free).unwrap();
    assert!(serde_json::from_str::<Value>(&free).is_err(), "{free:?}");
}

fn bad_request(factory: &ConstraintFactory, schema: Value) -> String {
    match factory.json_schema(&schema) {
        Err(EngineError::BadRequest(msg)) => msg,
        Err(e) => panic!("{schema}: expected BadRequest, got {e:?}"),
        Ok(_) => panic!("{schema}: expected an error"),
    }
}

#[test]
fn invalid_schemas_are_bad_requests_naming_the_problem() {
    let tok = tokenizer_512();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type": "nonsense"}), "nonsense"),
        (json!(42), "must be an object"),
        (json!("object"), "must be an object"),
        (json!(false), "false"),
        (
            json!({"type": "string", "format": "bogus-format"}),
            "bogus-format",
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            "oneOf",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "nonsense"}}}),
            "nonsense",
        ),
        (
            json!({
                "type": "object",
                "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 2}},
                "required": ["a"]
            }),
            "nsatisfiable",
        ),
        (json!({"type": "object", "properties": 5}), "properties"),
        (json!({"$ref": "#/$defs/missing"}), "missing"),
        (
            json!({"type": "integer", "minimum": 5, "maximum": 1}),
            "nsatisfiable",
        ),
        (
            json!({"type": "string", "pattern": "(unclosed"}),
            "unclosed",
        ),
    ];
    for (schema, needle) in cases {
        let msg = bad_request(&factory, schema.clone());
        eprintln!("{schema} -> {msg}");
        assert!(
            msg.contains(needle),
            "{schema}: message {msg:?} lacks {needle:?}"
        );
        assert!(!msg.contains('\n'), "{schema}: multi-line message {msg:?}");
    }
    // Annotations are fine, and `true` means any JSON value.
    factory
        .json_schema(&json!({"title": "t", "description": "d", "type": "object"}))
        .unwrap();
    factory.json_schema(&json!(true)).unwrap();
}

/// Drives a constraint through `text` (tokenized with the tokenizer) without a model.
fn feed(tok: &Tokenizer, c: &mut Constraint, text: &str) {
    let mut logits = vec![0.0f32; tok.vocab_size()];
    for t in tok.encode(text).unwrap() {
        logits.fill(0.0);
        c.mask_logits(&mut logits).unwrap();
        assert!(
            logits[t as usize].is_finite(),
            "token {t} ({:?}) masked in {text:?}",
            tok.decode(&[t]).unwrap()
        );
        c.commit(t).unwrap();
    }
}

fn allowed(c: &mut Constraint, vocab: usize) -> Vec<u32> {
    let mut logits = vec![0.0f32; vocab];
    c.mask_logits(&mut logits).unwrap();
    (0..vocab as u32)
        .filter(|&i| logits[i as usize].is_finite())
        .collect()
}

#[test]
fn specials_are_masked_and_only_assistant_end_follows_a_complete_value() {
    for tok in [tokenizer_512(), tokenizer_65k()] {
        let vocab = tok.vocab_size();
        let ids = tok.special_ids().unwrap();
        let factory = ConstraintFactory::new(&tok).unwrap();
        let mut c = factory.json_schema(&record_schema()).unwrap();
        let first = allowed(&mut c, vocab);
        // Bytes the grammar forces are forced as their canonical BPE tokens, one per step.
        let canonical = tok.encode("{\"color\":\"").unwrap();
        assert_eq!(first, vec![canonical[0]]);
        for (_, id) in tok.special_tokens() {
            assert!(!first.contains(id), "special {id} allowed at the start");
        }
        assert!(!c.is_complete());
        feed(
            &tok,
            &mut c,
            r#"{"color":"green","ok":false,"count":7,"name":"ab"#,
        );
        assert!(!c.is_complete());
        let mid = allowed(&mut c, vocab);
        assert!(!mid.contains(&ids.assistant_end));
        // Longer than 6 characters is impossible: after "abcdef" only the closing quote remains.
        feed(&tok, &mut c, "cdef");
        for t in allowed(&mut c, vocab) {
            let bytes = tok.decode_bytes(&[t]).unwrap();
            assert_eq!(
                bytes[0],
                b'"',
                "{:?} allowed after 6 characters",
                tok.decode(&[t])
            );
        }
        feed(&tok, &mut c, "\"}");
        assert!(c.is_complete());
        assert!(c.is_stopped());
        assert_eq!(allowed(&mut c, vocab), vec![ids.assistant_end]);
        // Logit rows past the vocabulary (a padded lm_head) are never allowed either.
        let mut padded = vec![0.0f32; vocab + 64];
        c.mask_logits(&mut padded).unwrap();
        assert_eq!(padded.iter().filter(|l| l.is_finite()).count(), 1);
        c.commit(ids.assistant_end).unwrap();
        assert!(c.is_complete());
        assert_eq!(allowed(&mut c, vocab), vec![ids.assistant_end]);
        // A forbidden token is an error, not a panic.
        let mut d = factory.json_object().unwrap();
        assert!(d.commit(ids.bos).is_err());
        let mut e = factory.json_object().unwrap();
        assert!(e.commit(tok.encode("x").unwrap()[0]).is_err());
        // Too few logits is an error.
        let mut f = factory.json_object().unwrap();
        assert!(f.mask_logits(&mut vec![0.0; vocab - 1]).is_err());
    }
}

#[test]
fn json_object_is_compact() {
    let tok = tokenizer_512();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let mut c = factory.json_object().unwrap();
    for t in allowed(&mut c, tok.vocab_size()) {
        let b = tok.decode_bytes(&[t]).unwrap();
        assert_eq!(
            b[0],
            b'{',
            "{:?} allowed first",
            String::from_utf8_lossy(&b)
        );
    }
    feed(&tok, &mut c, "{\"a\"");
    for t in allowed(&mut c, tok.vocab_size()) {
        let b = tok.decode_bytes(&[t]).unwrap();
        assert_eq!(
            b[0],
            b':',
            "{:?} allowed after a key",
            String::from_utf8_lossy(&b)
        );
    }
    feed(&tok, &mut c, ":1");
    for t in allowed(&mut c, tok.vocab_size()) {
        let b = tok.decode_bytes(&[t]).unwrap();
        assert!(
            b[0].is_ascii_digit() || b".eE,}".contains(&b[0]),
            "{:?} allowed after a number",
            String::from_utf8_lossy(&b)
        );
    }
}

#[test]
fn clones_are_independent_rows() {
    let tok = tokenizer_512();
    let factory = ConstraintFactory::new(&tok).unwrap();
    let mut a = factory.json_schema(&record_schema()).unwrap();
    feed(&tok, &mut a, r#"{"color":"red","ok":true,"count":1"#);
    let mut b = a.clone();
    feed(&tok, &mut a, r#","name":"x"}"#);
    assert!(a.is_complete());
    assert!(!b.is_complete());
    feed(&tok, &mut b, r#"0,"name":"yz"}"#);
    assert!(b.is_complete());
}

/// Greedy decoding of random logits under the mask for at most `steps` tokens, timing each
/// `mask_logits`: the tokens before `<|assistant_end|>`, whether it came, and the mean and max µs.
fn walk_random(
    tok: &Tokenizer,
    c: &mut Constraint,
    steps: usize,
    seed: u64,
) -> (Vec<u32>, bool, f64, f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vocab = tok.vocab_size();
    let end = tok.special_ids().unwrap().assistant_end;
    let mut logits = vec![0.0f32; vocab];
    let (mut total, mut max, mut n) = (0.0f64, 0.0f64, 0);
    let mut tokens = Vec::new();
    let mut ended = false;
    for _ in 0..steps {
        for l in logits.iter_mut() {
            *l = rng.random::<f32>() * 4.0;
        }
        let t0 = Instant::now();
        c.mask_logits(&mut logits).unwrap();
        let us = t0.elapsed().as_secs_f64() * 1e6;
        total += us;
        max = max.max(us);
        n += 1;
        let t = (0..vocab)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap() as u32;
        assert!(logits[t as usize].is_finite());
        c.commit(t).unwrap();
        if t == end {
            ended = true;
            break;
        }
        tokens.push(t);
    }
    (tokens, ended, total / n as f64, max)
}

#[test]
fn constraint_costs() {
    for (name, tok) in [("512", tokenizer_512()), ("65k", tokenizer_65k())] {
        let t0 = Instant::now();
        let factory = ConstraintFactory::new(&tok).unwrap();
        let build_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut compile_ms = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            factory.json_schema(&record_schema()).unwrap();
            compile_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let mut schema = factory.json_schema(&record_schema()).unwrap();
        let t0 = Instant::now();
        let first_mask = allowed(&mut schema, tok.vocab_size());
        let first_mask_ms = t0.elapsed().as_secs_f64() * 1e3;
        assert!(!first_mask.is_empty());
        let (tokens, ended, schema_mean, schema_max) = walk_random(&tok, &mut schema, 200, 1);
        // Random logits over the whole vocabulary (multi-byte tokens included) still give a
        // valid record.
        let s = text(&tok, &tokens);
        assert!(ended, "vocab {name}: {s:?}");
        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        validate_record(&v).unwrap_or_else(|e| panic!("vocab {name}: {s:?}: {e}"));
        eprintln!("vocab {name}: random walk gave {s}");
        let mut object = factory.json_object().unwrap();
        let (_, _, object_mean, object_max) = walk_random(&tok, &mut object, 200, 2);
        eprintln!(
            "vocab {name}: factory {build_ms:.1} ms, schema compiles {compile_ms:.2?} ms, \
             first mask {first_mask_ms:.2} ms, \
             mask_logits schema mean {schema_mean:.0} µs (max {schema_max:.0}), \
             json_object mean {object_mean:.0} µs (max {object_max:.0})"
        );
        // Loose bounds (a 2-core CI machine, unoptimized test profile): a regression to
        // seconds per factory or tens of ms per token fails.
        assert!(build_ms < 5_000.0, "factory build {build_ms} ms");
        assert!(schema_mean < 5_000.0 && object_mean < 5_000.0);
    }
}

#[test]
fn factory_is_shareable_and_constraints_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ConstraintFactory>();
    send::<Constraint>();
    let tok = tokenizer_512();
    let factory = std::sync::Arc::new(ConstraintFactory::new(&tok).unwrap());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let f = factory.clone();
            std::thread::spawn(move || f.json_schema(&record_schema()).unwrap())
        })
        .collect();
    for h in handles {
        let mut c = h.join().unwrap();
        assert!(!allowed(&mut c, tok.vocab_size()).is_empty());
    }
}
