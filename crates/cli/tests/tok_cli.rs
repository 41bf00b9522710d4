//! The `nanochat tok` commands as a user runs them: train on the fixture documents (the result
//! must be nanochat's tokenizer, byte for byte), encode, decode, eval, info, and the errors a
//! user gets for bad input.

use std::process::Output;

use nanochat_fixtures::{fixtures_dir, scratch_dir};
use support::{failure, nanochat_stdin, success};

mod support;

/// `nanochat ARGS` with `stdin`, and an empty base dir so nothing from the user's home leaks in.
fn nanochat(args: &[&str], stdin: &str) -> Output {
    nanochat_stdin(
        args,
        &std::env::temp_dir().join("nanochat-cli-empty-base"),
        stdin,
    )
}

#[test]
fn train_writes_nanochats_tokenizer_byte_for_byte() {
    let dir = scratch_dir("train");
    let input = fixtures_dir().join("tokenizer-train/train_docs.jsonl");
    let out_dir = dir.join("tok");
    let out = nanochat(
        &[
            "tok",
            "train",
            "--input",
            input.to_str().unwrap(),
            "--vocab-size",
            "512",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        "",
    );
    let printed = success(&out);
    assert!(printed.contains("Training time:"), "{printed}");
    assert!(printed.contains("compression:"), "{printed}");
    let ours = std::fs::read(out_dir.join("tokenizer.pkl")).unwrap();
    let theirs =
        std::fs::read(fixtures_dir().join("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap();
    assert!(
        ours == theirs,
        "tokenizer.pkl is not byte-identical to nanochat's"
    );
    assert!(out_dir.join("token_bytes.pt").exists());

    // Training again into the same directory must not silently overwrite it.
    let again = nanochat(
        &[
            "tok",
            "train",
            "--input",
            input.to_str().unwrap(),
            "--vocab-size",
            "512",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        "",
    );
    assert!(failure(&again).contains("--force"));
}

#[test]
fn encode_and_decode_through_stdin() {
    let tok_dir = fixtures_dir().join("nanochat-2025/tokenizer");
    let tok = tok_dir.to_str().unwrap();
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("tokenizer/encode_cases.json")).unwrap(),
    )
    .unwrap();
    let case = cases["extra"][0].clone(); // "Hello world" with <|bos|> prepended
    let text = case["text"].as_str().unwrap();
    let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();

    let plain = success(&nanochat(
        &["tok", "encode", "--tokenizer", tok, "--bos"],
        text,
    ));
    let ids: Vec<u32> = plain
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ids, expected);
    let json = success(&nanochat(
        &["tok", "encode", "--tokenizer", tok, "--bos", "--json"],
        text,
    ));
    assert_eq!(serde_json::from_str::<Vec<u32>>(&json).unwrap(), expected);

    let decoded = success(&nanochat(
        &["tok", "decode", "--tokenizer", tok],
        plain.trim(),
    ));
    assert_eq!(decoded, format!("<|bos|>{text}"));
    let decoded_json = success(&nanochat(&["tok", "decode", "--tokenizer", tok], &json));
    assert_eq!(decoded_json, format!("<|bos|>{text}"));
}

#[test]
fn info_and_eval_describe_the_tokenizer() {
    let tok_dir = fixtures_dir().join("nanochat-2025/tokenizer");
    let info = success(&nanochat(
        &["tok", "info", "--tokenizer", tok_dir.to_str().unwrap()],
        "",
    ));
    assert!(
        info.contains("512") && info.contains("<|assistant_end|>"),
        "{info}"
    );
    let corpus = fixtures_dir().join("tokenizer-train/train_docs.jsonl");
    let eval = success(&nanochat(
        &[
            "tok",
            "eval",
            "-t",
            tok_dir.to_str().unwrap(),
            corpus.to_str().unwrap(),
        ],
        "",
    ));
    assert!(eval.contains("train_docs.jsonl"), "{eval}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = scratch_dir("errors");
    let missing = nanochat(
        &[
            "tok",
            "encode",
            "--tokenizer",
            dir.join("nope").to_str().unwrap(),
        ],
        "hi",
    );
    let err = failure(&missing);
    assert!(
        err.contains("no tokenizer at") && err.contains("nope"),
        "{err}"
    );

    let tok = fixtures_dir().join("nanochat-2025/tokenizer");
    let bad_ids = nanochat(
        &["tok", "decode", "--tokenizer", tok.to_str().unwrap()],
        "1 2 x",
    );
    assert!(failure(&bad_ids).contains("\"x\""));
    let unknown_id = nanochat(
        &["tok", "decode", "--tokenizer", tok.to_str().unwrap()],
        "99999",
    );
    assert!(failure(&unknown_id).contains("99999"));

    let bad_utf8 = dir.join("bad.txt");
    std::fs::write(&bad_utf8, b"good text\n\nbad \xff byte\n").unwrap();
    let train_bad = nanochat(
        &[
            "tok",
            "train",
            "--input",
            bad_utf8.to_str().unwrap(),
            "--vocab-size",
            "300",
            "--out",
            dir.join("t").to_str().unwrap(),
        ],
        "",
    );
    let err = failure(&train_bad);
    assert!(err.contains("bad.txt") && err.contains("UTF-8"), "{err}");

    let corpus = fixtures_dir().join("tokenizer-train/train_docs.jsonl");
    let too_small = nanochat(
        &[
            "tok",
            "train",
            "--input",
            corpus.to_str().unwrap(),
            "--vocab-size",
            "100",
            "--out",
            dir.join("t2").to_str().unwrap(),
        ],
        "",
    );
    assert!(failure(&too_small).contains("265"));

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let train_empty = nanochat(
        &[
            "tok",
            "train",
            "--input",
            empty.to_str().unwrap(),
            "--vocab-size",
            "300",
            "--out",
            dir.join("t3").to_str().unwrap(),
        ],
        "",
    );
    failure(&train_empty);
}

#[test]
fn every_command_explains_itself() {
    for args in [
        vec!["--help"],
        vec!["tok", "--help"],
        vec!["tok", "train", "--help"],
        vec!["tok", "encode", "--help"],
        vec!["tok", "decode", "--help"],
        vec!["tok", "eval", "--help"],
        vec!["bench", "tokenizer", "--help"],
    ] {
        let help = success(&nanochat(&args, ""));
        assert!(help.contains("Usage:"), "{args:?}: {help}");
    }
}
