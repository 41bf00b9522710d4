//! `nanochat convert` as a user runs it: a nanochat checkpoint into a self-contained
//! safetensors directory that `nanochat generate --model` runs with the same greedy output,
//! refusal to overwrite without --force, --dtype bf16, and clear errors.

mod support;

use nanochat_fixtures::{fixture, fixture_json, scratch_dir};
use support::{failure, nanochat, success};

#[test]
fn converted_model_is_self_contained_and_generates_the_same() {
    let base = fixture("nanochat-2025");
    let out = scratch_dir("convert-cli");
    let to = out.join("d3");
    let from = base.join("chatsft_checkpoints/d3");
    let printed = success(&nanochat(
        &[
            "convert",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        &base,
    ));
    for expected in [
        "model_000650.pt",
        "model_000650.safetensors",
        "meta_000650.json",
        "3 layers",
        "20 (",
        "bf16",
        "tokenizer copied from",
    ] {
        assert!(printed.contains(expected), "{expected:?} not in: {printed}");
    }
    for file in [
        "model_000650.safetensors",
        "meta_000650.json",
        "tokenizer.pkl",
        "token_bytes.pt",
    ] {
        assert!(to.join(file).is_file(), "{file} missing");
    }

    // Greedy generation from the converted directory, with no nanochat base dir at all,
    // equals nanochat's.
    let case = &fixture_json("outputs/models_index.json")["models"]["sft_d3"]["engine"]["capital"];
    let prompt: Vec<u32> = serde_json::from_value(case["prompt"].clone()).unwrap();
    let expected: Vec<Vec<u32>> =
        serde_json::from_value(case["generate_token_columns"].clone()).unwrap();
    let prompt_arg = prompt
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let empty = scratch_dir("convert-cli-empty-base");
    let generated = success(&nanochat(
        &[
            "generate",
            "--model",
            to.to_str().unwrap(),
            "--prompt-ids",
            &prompt_arg,
            "--max-tokens",
            "20",
            "--json",
        ],
        &empty,
    ));
    let json: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let ids: Vec<u32> = serde_json::from_value(json["ids"].clone()).unwrap();
    assert_eq!(ids, expected.concat());

    // Converting again needs --force.
    let args = [
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    let err = failure(&nanochat(&args, &base));
    assert!(
        err.contains("model_000650.safetensors") && err.contains("already exists"),
        "{err}"
    );
    let mut forced = args.to_vec();
    forced.extend(["--force", "--dtype", "f32"]);
    let printed = success(&nanochat(&forced, &base));
    assert!(printed.contains("20 f32"), "{printed}");
}

#[test]
fn bf16_conversion_of_a_pt_file_and_a_step() {
    let base = fixture("nanochat-2025");
    let out = scratch_dir("convert-cli-bf16");
    let printed = success(&nanochat(
        &[
            "convert",
            "--from",
            base.join("base_checkpoints/d2").to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--dtype",
            "bf16",
            "--step",
            "0",
        ],
        &base,
    ));
    assert!(printed.contains("14 bf16"), "{printed}");
    let size = std::fs::metadata(out.join("model_000000.safetensors"))
        .unwrap()
        .len();
    // 163,840 parameters: 328 KB in bf16 (655 KB in f32).
    assert!(
        size < 400_000,
        "bf16 d2 should be about 328 KB, is {size} bytes"
    );
    let generated = success(&nanochat(
        &[
            "generate",
            "--model",
            out.join("model_000000.safetensors").to_str().unwrap(),
            "--dtype",
            "bf16",
            "--prompt-ids",
            "503,1,2,3",
            "--max-tokens",
            "4",
            "--json",
        ],
        &scratch_dir("convert-cli-bf16-empty"),
    ));
    let json: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert!(json["ids"].as_array().unwrap().len() >= 4, "{json}");
}

#[test]
fn convert_errors_are_clear() {
    let base = fixture("nanochat-2025");
    let out = scratch_dir("convert-cli-errors");
    let err = failure(&nanochat(
        &[
            "convert",
            "--from",
            "/nonexistent/model_000001.pt",
            "--to",
            out.to_str().unwrap(),
        ],
        &base,
    ));
    assert!(err.contains("/nonexistent/model_000001.pt"), "{err}");
    let err = failure(&nanochat(
        &[
            "convert",
            "--from",
            base.join("base_checkpoints/d2").to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--dtype",
            "f8",
        ],
        &base,
    ));
    assert!(err.contains("f8"), "{err}");
    let err = failure(&nanochat(
        &[
            "convert",
            "--from",
            base.join("base_checkpoints/d2").to_str().unwrap(),
            "--to",
            out.to_str().unwrap(),
            "--step",
            "7",
        ],
        &base,
    ));
    assert!(err.contains("step 7"), "{err}");
    assert!(!out.join("tokenizer.pkl").exists());
}
