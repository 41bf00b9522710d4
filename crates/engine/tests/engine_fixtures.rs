//! `Engine.generate` / `generate_batch` parity with nanochat@01f5f10: greedy token columns and
//! masks, the logits of every model call (prefill, then each decode step), two-row batches, and
//! the scripted tool-use models (calculator, stops, `max_tokens` cut-off with forced tokens,
//! raw byte tokens).

use candle_core::Device;
use nanochat_engine::{Engine, GenerateOptions, SamplingParams, TextStream};
use nanochat_fixtures::{fixture, fixture_json, max_abs_diff, read_npy};
use nanochat_model::checkpoint::{find_checkpoint, load_checkpoint, LoadedModel, Source};
use nanochat_tokenizer::Tokenizer;
use serde_json::Value;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(&fixture("nanochat-2025/tokenizer")).unwrap()
}

fn load(source: Source, tag: &str) -> LoadedModel {
    let files = find_checkpoint(&fixture("nanochat-2025"), source, Some(tag), None).unwrap();
    load_checkpoint(&files, nanochat_model::WeightDType::F32, &Device::Cpu).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn columns<T: serde::de::DeserializeOwned>(v: &Value) -> Vec<Vec<T>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn options(kwargs: &Value) -> GenerateOptions {
    let top_k = kwargs
        .get("top_k")
        .and_then(Value::as_u64)
        .map(|k| k as usize);
    GenerateOptions {
        num_samples: kwargs["num_samples"].as_u64().unwrap() as usize,
        max_tokens: Some(kwargs["max_tokens"].as_u64().unwrap() as usize),
        sampling: SamplingParams::nanochat(kwargs["temperature"].as_f64().unwrap() as f32, top_k),
        seed: kwargs.get("seed").and_then(Value::as_u64).unwrap_or(42),
        ..GenerateOptions::default()
    }
}

#[test]
fn greedy_generation_and_step_logits_match_every_model() {
    let tok = tokenizer();
    let index = fixture_json("outputs/models_index.json");
    for (name, m) in index["models"].as_object().unwrap() {
        let source: Source = m["source"].as_str().unwrap().parse().unwrap();
        let loaded = load(source, m["model_tag"].as_str().unwrap());
        let engine = Engine::new(&loaded.model, &tok).unwrap();
        for (prompt_name, case) in m["engine"].as_object().unwrap() {
            let prompt = ids(&case["prompt"]);
            let opts = GenerateOptions {
                max_tokens: Some(case["max_tokens"].as_u64().unwrap() as usize),
                ..GenerateOptions::default()
            };
            let expected_logits = read_npy(case["decode_step_logits_npy"].as_str().unwrap());
            let mut generation = engine.generate(&prompt, &opts).unwrap();
            let (mut tokens, mut masks, mut step_logits) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(column) = generation.next_column().unwrap() {
                step_logits.extend(generation.row_logits(0).iter().copied());
                tokens.push(column.tokens);
                masks.push(column.masks);
            }
            let what = format!("{name}/{prompt_name}");
            assert_eq!(
                tokens,
                columns::<u32>(&case["generate_token_columns"]),
                "{what}: token columns"
            );
            assert_eq!(
                masks,
                columns::<u8>(&case["generate_mask_columns"]),
                "{what}: mask columns"
            );
            let diff = max_abs_diff(&step_logits, &expected_logits.f32);
            assert!(diff < 1e-4, "{what}: step logits max |Δ| = {diff}");

            let batch = &case["generate_batch_num_samples2"];
            let (results, batch_masks) = engine
                .generate_batch(
                    &prompt,
                    &GenerateOptions {
                        num_samples: 2,
                        ..opts.clone()
                    },
                )
                .unwrap();
            assert_eq!(
                results,
                columns::<u32>(&batch["results"]),
                "{what}: generate_batch results"
            );
            assert_eq!(
                batch_masks,
                columns::<u8>(&batch["masks"]),
                "{what}: generate_batch masks"
            );
        }
    }
}

#[test]
fn scripted_tool_use_models_match() {
    let tok = tokenizer();
    let cases = fixture_json("outputs/engine_tool_use.json");
    for (group, tag, source) in [
        ("math", "d1", Source::Sft),
        ("string_count", "d1", Source::Rl),
    ] {
        let loaded = load(source, tag);
        let engine = Engine::new(&loaded.model, &tok).unwrap();
        for (name, case) in cases[group].as_object().unwrap() {
            let prompt = ids(&case["prompt"]);
            let opts = options(&case["kwargs"]);
            let mut generation = engine.generate(&prompt, &opts).unwrap();
            let (mut tokens, mut masks) = (Vec::new(), Vec::new());
            while let Some(column) = generation.next_column().unwrap() {
                tokens.push(column.tokens);
                masks.push(column.masks);
            }
            assert_eq!(
                tokens,
                columns::<u32>(&case["generate_token_columns"]),
                "{name}: token columns"
            );
            assert_eq!(
                masks,
                columns::<u8>(&case["generate_mask_columns"]),
                "{name}: mask columns"
            );
            let (results, batch_masks) = engine.generate_batch(&prompt, &opts).unwrap();
            assert_eq!(
                results,
                columns::<u32>(&case["generate_batch_results"]),
                "{name}: generate_batch results"
            );
            assert_eq!(
                batch_masks,
                columns::<u8>(&case["generate_batch_masks"]),
                "{name}: generate_batch masks"
            );
            let decoded: Vec<String> = results
                .iter()
                .map(|r| tok.decode(&r[prompt.len()..]).unwrap())
                .collect();
            let expected_decoded: Vec<String> =
                serde_json::from_value(case["decoded_rows"].clone()).unwrap();
            assert_eq!(decoded, expected_decoded, "{name}: decoded rows");
        }
    }
}

#[test]
fn streaming_never_splits_a_character() {
    let tok = tokenizer();
    // 🌍 is four byte tokens (240 159 140 141), 世 three (228 184 150).
    let mut stream = TextStream::new();
    let pieces: Vec<String> = [32u32, 240, 159, 140, 141, 228, 184, 150, 97]
        .iter()
        .map(|&id| stream.push(&tok, id).unwrap())
        .collect();
    assert_eq!(pieces, vec![" ", "", "", "", "🌍", "", "", "世", "a"]);
    // An invalid byte in the middle is emitted as U+FFFD once later text arrives.
    let mut stream = TextStream::new();
    let pieces: Vec<String> = [255u32, 97]
        .iter()
        .map(|&id| stream.push(&tok, id).unwrap())
        .collect();
    assert_eq!(pieces.concat(), "\u{FFFD}a");
    assert_eq!(pieces[0], "");
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let tok = tokenizer();
    let loaded = load(Source::Sft, "d2");
    let engine = Engine::new(&loaded.model, &tok).unwrap();
    assert!(
        engine.generate(&[], &GenerateOptions::default()).is_err(),
        "empty prompt"
    );
    assert!(
        engine
            .generate(&[9999], &GenerateOptions::default())
            .is_err(),
        "token outside the vocabulary"
    );
    let zero = GenerateOptions {
        num_samples: 0,
        ..GenerateOptions::default()
    };
    assert!(engine.generate(&[503], &zero).is_err());
    let too_long = GenerateOptions {
        max_tokens: Some(10_000),
        ..GenerateOptions::default()
    };
    assert!(engine.generate(&[503], &too_long).is_err());
}
