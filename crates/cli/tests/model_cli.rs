//! `nanochat generate` and `nanochat chat` as a user runs them against nanochat checkpoints:
//! discovery under NANOCHAT_BASE_DIR, `--model PATH`, greedy output equal to nanochat's, the
//! calculator tool through the chat CLI, and clear errors.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nanochat_fixtures::{fixture, fixture_json, scratch_dir};

fn nanochat(args: &[&str], base_dir: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(args)
        .env("NANOCHAT_BASE_DIR", base_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nanochat");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "nanochat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn generate_discovers_the_default_checkpoint_and_matches_nanochat() {
    let base = fixture("nanochat-2025");
    let case = &fixture_json("outputs/models_index.json")["models"]["sft_d3"]["engine"]["capital"];
    let prompt: Vec<u32> = serde_json::from_value(case["prompt"].clone()).unwrap();
    let expected: Vec<Vec<u32>> =
        serde_json::from_value(case["generate_token_columns"].clone()).unwrap();
    let prompt_arg = prompt
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // No --model: the default source is sft, whose largest tag is d3 at step 650.
    let out = nanochat(
        &[
            "generate",
            "--prompt-ids",
            &prompt_arg,
            "--max-tokens",
            "20",
            "--json",
        ],
        &base,
        "",
    );
    let json: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    let ids: Vec<u32> = serde_json::from_value(json["ids"].clone()).unwrap();
    assert_eq!(ids, expected.concat());
    assert_eq!(json["finish_reason"], "length");
    assert_eq!(json["prompt_ids"], case["prompt"]);
    let loaded = String::from_utf8_lossy(&out.stderr);
    assert!(
        loaded.contains("model_000650.pt") && loaded.contains("3 layers"),
        "loading message: {loaded}"
    );
}

#[test]
fn generate_stops_at_assistant_end_and_runs_the_calculator() {
    let base = fixture("nanochat-2025");
    let case = &fixture_json("outputs/engine_tool_use.json")["math"]["tool_math_greedy"];
    let prompt: Vec<u32> = serde_json::from_value(case["prompt"].clone()).unwrap();
    let prompt_arg = prompt
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let model = base.join("chatsft_checkpoints/d1");
    let out = nanochat(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt-ids",
            &prompt_arg,
            "--max-tokens",
            "64",
            "--json",
        ],
        &base,
        "",
    );
    let json: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    assert_eq!(json["finish_reason"], "stop");
    assert_eq!(json["text"], case["decoded_rows"][0]);
}

#[test]
fn chat_one_shot_answers_with_the_tool() {
    let base = fixture("nanochat-2025");
    let model = base.join("chatsft_checkpoints/d1/model_000000.pt");
    let out = nanochat(
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "-p",
            "What is 12*34?",
            "-t",
            "0",
        ],
        &base,
        "",
    );
    let answer = success(&out);
    assert!(
        answer.contains("<|python_start|>12*34<|python_end|><|output_start|>408<|output_end|>"),
        "{answer}"
    );
    assert!(
        answer.contains("🌍世"),
        "multi-byte characters arrive whole: {answer}"
    );
}

#[test]
fn chat_interactive_quits_and_clears() {
    let base = fixture("nanochat-2025");
    let model = base.join("chatsft_checkpoints/d1");
    let out = nanochat(
        &["chat", "--model", model.to_str().unwrap(), "-t", "0"],
        &base,
        "What is 12*34?\nclear\n\nquit\n",
    );
    let printed = success(&out);
    assert!(
        printed.contains("408") && printed.contains("Conversation cleared."),
        "{printed}"
    );
}

#[test]
fn missing_models_say_where_they_looked_and_what_to_do() {
    let empty = scratch_dir("no-models");
    let err = failure(&nanochat(&["generate", "--prompt", "hi"], &empty, ""));
    assert!(
        err.contains("NANOCHAT_BASE_DIR") && err.contains("--model"),
        "{err}"
    );
    let err = failure(&nanochat(
        &[
            "generate",
            "--model",
            "/nonexistent/model_000001.pt",
            "--prompt",
            "hi",
        ],
        &empty,
        "",
    ));
    assert!(err.contains("/nonexistent/model_000001.pt"), "{err}");
    let base = fixture("nanochat-2025");
    let err = failure(&nanochat(
        &["generate", "--prompt-ids", "1,2,99999", "--max-tokens", "2"],
        &base,
        "",
    ));
    assert!(err.contains("99999"), "{err}");
}
