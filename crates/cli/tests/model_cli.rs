//! `nanochat generate` and `nanochat chat` as a user runs them against nanochat checkpoints:
//! discovery under NANOCHAT_BASE_DIR, `--model PATH`, greedy output equal to nanochat's, the
//! calculator tool through the chat CLI, and clear errors.

mod support;

use nanochat_fixtures::{fixture, fixture_json, scratch_dir};
use support::{failure, nanochat_stdin, success};

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
    let out = nanochat_stdin(
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
    let out = nanochat_stdin(
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
    let out = nanochat_stdin(
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
    let out = nanochat_stdin(
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
    let err = failure(&nanochat_stdin(&["generate", "--prompt", "hi"], &empty, ""));
    assert!(
        err.contains("NANOCHAT_BASE_DIR") && err.contains("--model"),
        "{err}"
    );
    let err = failure(&nanochat_stdin(
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
    let err = failure(&nanochat_stdin(
        &["generate", "--prompt-ids", "1,2,99999", "--max-tokens", "2"],
        &base,
        "",
    ));
    assert!(err.contains("99999"), "{err}");
}
