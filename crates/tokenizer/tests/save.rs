//! Saving a tokenizer as nanochat does: training on the fixture documents at vocab 512 and
//! saving must give `tokenizer.pkl` and `token_bytes.pt` byte-identical to nanochat's. Also:
//! bad tokenizer files give clear errors naming the file, never a panic.

use std::path::Path;

use nanochat_fixtures::{fixture, fixture_json, scratch_dir};
use nanochat_tokenizer::corpus::{CorpusOptions, CorpusReader};
use nanochat_tokenizer::split::NANOCHAT_SPLIT_PATTERN;
use nanochat_tokenizer::token_bytes::load_token_bytes;
use nanochat_tokenizer::train::train;
use nanochat_tokenizer::Tokenizer;

fn trained_512() -> Tokenizer {
    let reader = CorpusReader::open(
        &[fixture("tokenizer-train/train_docs.jsonl")],
        CorpusOptions::default(),
    )
    .unwrap();
    let trained = train(reader, 512, NANOCHAT_SPLIT_PATTERN, |_| {}).unwrap();
    Tokenizer::with_nanochat_specials(trained.ranks).unwrap()
}

#[test]
fn trained_tokenizer_pickle_is_byte_identical_to_nanochats() {
    let dir = scratch_dir("pickle");
    trained_512().save(&dir).unwrap();
    let ours = std::fs::read(dir.join("tokenizer.pkl")).unwrap();
    let theirs = std::fs::read(fixture("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap();
    assert_eq!(ours.len(), theirs.len(), "pickle sizes differ");
    assert!(
        ours == theirs,
        "tokenizer.pkl differs from nanochat's at byte {:?}",
        ours.iter().zip(&theirs).position(|(a, b)| a != b)
    );
}

#[test]
fn saved_token_bytes_are_byte_identical_to_nanochats() {
    let dir = scratch_dir("token-bytes");
    trained_512().save(&dir).unwrap();
    let ours = std::fs::read(dir.join("token_bytes.pt")).unwrap();
    let theirs = std::fs::read(fixture("nanochat-2025/tokenizer/token_bytes.pt")).unwrap();
    // torch's serialization id is derived from the record names and CRCs, so even it matches.
    assert!(ours == theirs, "token_bytes.pt differs from nanochat's");
    let expected: Vec<i32> = fixture_json("tokenizer/vocab.json")["token_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(
        load_token_bytes(&dir.join("token_bytes.pt")).unwrap(),
        expected
    );
}

#[test]
fn saved_tokenizer_loads_back_and_encodes_like_the_original() {
    let dir = scratch_dir("reload");
    let tok = trained_512();
    tok.save(&dir).unwrap();
    let reloaded = Tokenizer::from_dir(&dir).unwrap();
    let text = "Hello world! 12345 — ¿Qué? 🌍 नमस्ते";
    assert_eq!(reloaded.encode(text).unwrap(), tok.encode(text).unwrap());
    assert_eq!(reloaded.vocab_size(), 512);
}

fn load_error(path: &Path) -> String {
    match Tokenizer::from_pickle_file(path) {
        Ok(_) => panic!("{} loaded although it is bad", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_or_corrupted_pickle_is_a_clear_error() {
    let dir = scratch_dir("bad-pickle");
    let good = std::fs::read(fixture("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap();
    let truncated = dir.join("truncated.pkl");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let message = load_error(&truncated);
    assert!(
        message.contains("truncated.pkl"),
        "error names the file: {message}"
    );

    let garbage = dir.join("garbage.pkl");
    std::fs::write(&garbage, b"this is not a pickle").unwrap();
    assert!(load_error(&garbage).contains("garbage.pkl"));

    let missing = dir.join("missing.pkl");
    assert!(load_error(&missing).contains("missing.pkl"));
}

#[test]
fn a_pickle_of_another_class_is_refused() {
    let dir = scratch_dir("wrong-class");
    let mut enc = nanochat_pt::tiktoken::encoding_from_pickle(
        &std::fs::read(fixture("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap(),
    )
    .unwrap();
    enc.name = "rustbpe".into();
    let bytes = nanochat_pt::tiktoken::encoding_to_pickle(&enc);
    // Rename the class: tiktoken.core.Encoding → tiktoken.core.Encodinh (same length).
    let at = bytes.windows(8).position(|w| w == b"Encoding").unwrap();
    let mut wrong = bytes.clone();
    wrong[at + 7] = b'h';
    let path = dir.join("wrong_class.pkl");
    std::fs::write(&path, &wrong).unwrap();
    let message = load_error(&path);
    assert!(
        message.contains("Encodinh"),
        "error names the class found: {message}"
    );
}

#[test]
fn a_vocabulary_with_gaps_is_refused() {
    let dir = scratch_dir("gaps");
    let mut enc = nanochat_pt::tiktoken::encoding_from_pickle(
        &std::fs::read(fixture("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap(),
    )
    .unwrap();
    // Drop rank 300: ids now run 0..300, 301..503 — a gap.
    enc.mergeable_ranks.retain(|(_, rank)| *rank != 300);
    let path = dir.join("gaps.pkl");
    std::fs::write(&path, nanochat_pt::tiktoken::encoding_to_pickle(&enc)).unwrap();
    let message = load_error(&path);
    assert!(
        message.contains("gaps.pkl") && message.contains("gap"),
        "{message}"
    );
}

#[test]
fn truncated_token_bytes_is_a_clear_error() {
    let dir = scratch_dir("bad-token-bytes");
    let good = std::fs::read(fixture("nanochat-2025/tokenizer/token_bytes.pt")).unwrap();
    for cut in [10, good.len() / 2, good.len() - 10] {
        let path = dir.join(format!("token_bytes_{cut}.pt"));
        std::fs::write(&path, &good[..cut]).unwrap();
        let message = load_token_bytes(&path)
            .expect_err("truncated file must not load")
            .to_string();
        assert!(
            message.contains(&format!("token_bytes_{cut}.pt")),
            "{message}"
        );
    }
    // A checkpoint is a torch file too, but not a 1-D int32 tensor.
    let message = load_token_bytes(&fixture(
        "nanochat-2025/base_checkpoints/d2/model_000000.pt",
    ))
    .unwrap_err()
    .to_string();
    assert!(message.contains("model_000000.pt"), "{message}");
}
