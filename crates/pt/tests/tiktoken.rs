//! `tokenizer.pkl`: reading nanochat's pickled tiktoken encodings (512 and 65,536
//! tokens), comparing them with `vocab.json`, re-writing them byte-identically, and the
//! errors for pickles that are not encodings.

use nanochat_fixtures::{fixture_json, read_fixture};
use nanochat_pt::{
    dumps, encoding_from_pickle, encoding_to_pickle, parse, Object, TiktokenError, Value,
};

const SMALL: &str = "nanochat-2025/tokenizer/tokenizer.pkl";
const LARGE: &str = "tokenizer-65k/tokenizer.pkl";

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn small_encoding_matches_vocab_json() {
    let encoding = encoding_from_pickle(&read_fixture(SMALL)).expect("tokenizer.pkl");
    let vocab = fixture_json("tokenizer/vocab.json");
    assert_eq!(encoding.name, "rustbpe");
    assert_eq!(
        encoding.pat_str,
        vocab["pat_str"].as_str().expect("pat_str")
    );
    let expected_ranks: Vec<(Vec<u8>, u64)> = vocab["id_to_bytes_hex"]
        .as_array()
        .expect("id_to_bytes_hex")
        .iter()
        .enumerate()
        .map(|(id, hex)| (hex_decode(hex.as_str().expect("hex string")), id as u64))
        .collect();
    assert_eq!(expected_ranks.len(), 503);
    assert_eq!(encoding.mergeable_ranks, expected_ranks);
    let expected_specials: Vec<(String, u64)> = vocab["special_tokens"]
        .as_object()
        .expect("special_tokens")
        .iter()
        .map(|(text, id)| (text.clone(), id.as_u64().expect("id")))
        .collect();
    let mut specials = encoding.special_tokens.clone();
    specials.sort_by_key(|(_, id)| *id);
    let mut expected_sorted = expected_specials;
    expected_sorted.sort_by_key(|(_, id)| *id);
    assert_eq!(specials, expected_sorted);
    // File order is the order nanochat defines them in (ids 503..511).
    assert_eq!(encoding.special_tokens[0], ("<|bos|>".to_owned(), 503));
    assert_eq!(
        encoding.special_tokens[8],
        ("<|output_end|>".to_owned(), 511)
    );
}

#[test]
fn large_encoding_has_65527_ranks_and_9_specials() {
    let encoding = encoding_from_pickle(&read_fixture(LARGE)).expect("tokenizer.pkl");
    assert_eq!(encoding.mergeable_ranks.len(), 65_527);
    assert_eq!(encoding.special_tokens.len(), 9);
    for (rank, (token, value)) in encoding.mergeable_ranks.iter().enumerate() {
        assert_eq!(*value, rank as u64, "ranks are in file order");
        if rank < 256 {
            assert_eq!(token, &vec![rank as u8]);
        }
    }
    assert_eq!(encoding.special_tokens[0], ("<|bos|>".to_owned(), 65_527));
    assert_eq!(
        encoding.special_tokens[8],
        ("<|output_end|>".to_owned(), 65_535)
    );
}

#[test]
fn rewriting_both_encodings_is_byte_identical() {
    for fixture in [SMALL, LARGE] {
        let original = read_fixture(fixture);
        let encoding = encoding_from_pickle(&original).expect("tokenizer.pkl");
        let rewritten = encoding_to_pickle(&encoding);
        assert!(
            rewritten == original,
            "{fixture}: re-written pickle differs ({} vs {} bytes)",
            rewritten.len(),
            original.len()
        );
    }
}

#[test]
fn truncated_pickles_are_errors() {
    let original = read_fixture(SMALL);
    for length in [0, 1, 2, 11, 100, original.len() / 2, original.len() - 1] {
        let error = encoding_from_pickle(&original[..length]).expect_err("truncated");
        assert!(
            matches!(error, TiktokenError::Pickle(_)),
            "length {length}: {error}"
        );
    }
}

fn encoding_like(class: Value, state: Value) -> Vec<u8> {
    dumps(
        &Value::object(Object::new_obj(class, Vec::new()).with_state(state)),
        4,
    )
    .expect("dumps")
}

fn valid_state_with(replace: &str, value: Value) -> Value {
    let mut entries = vec![
        (Value::str("name"), Value::str("rustbpe")),
        (Value::str("pat_str"), Value::str(r"\s+")),
        (
            Value::str("mergeable_ranks"),
            Value::dict(vec![(Value::bytes(b"a"), Value::Int(0))]),
        ),
        (
            Value::str("special_tokens"),
            Value::dict(vec![(Value::str("<|bos|>"), Value::Int(1))]),
        ),
    ];
    entries.retain(|(key, _)| key.as_str() != Some(replace));
    if !matches!(value, Value::None) {
        entries.push((Value::str(replace), value));
    }
    Value::dict(entries)
}

#[test]
fn other_classes_and_bad_states_are_named() {
    let encoding_class = Value::global("tiktoken.core", "Encoding");
    let valid = encoding_like(encoding_class.clone(), valid_state_with("", Value::None));
    assert_eq!(
        encoding_from_pickle(&valid).expect("valid").mergeable_ranks,
        vec![(b"a".to_vec(), 0)]
    );

    let other = encoding_like(
        Value::global("collections", "OrderedDict"),
        valid_state_with("", Value::None),
    );
    let error = encoding_from_pickle(&other).expect_err("other class");
    assert_eq!(error.to_string(), "tokenizer pickle holds object built by collections.OrderedDict, not a tiktoken.core.Encoding");
    let error =
        encoding_from_pickle(&dumps(&Value::dict(vec![]), 4).expect("dumps")).expect_err("dict");
    assert!(
        matches!(error, TiktokenError::NotAnEncoding { .. }),
        "{error}"
    );

    let by_name = encoding_like(encoding_class.clone(), Value::str("cl100k_base"));
    assert!(
        matches!(encoding_from_pickle(&by_name), Err(TiktokenError::RegisteredByName(name)) if name == "cl100k_base")
    );

    let missing = encoding_like(
        encoding_class.clone(),
        valid_state_with("pat_str", Value::None),
    );
    let error = encoding_from_pickle(&missing).expect_err("missing key");
    assert_eq!(
        error.to_string(),
        "tokenizer pickle: the Encoding state has no \"pat_str\" entry"
    );

    let float_rank = Value::dict(vec![(Value::bytes(b"a"), Value::Float(1.0))]);
    let error = encoding_from_pickle(&encoding_like(
        encoding_class.clone(),
        valid_state_with("mergeable_ranks", float_rank),
    ))
    .expect_err("non-int rank");
    assert_eq!(
        error.to_string(),
        "tokenizer pickle: mergeable_ranks[b'a'] is float, expected an int"
    );

    let str_key = Value::dict(vec![(Value::str("a"), Value::Int(0))]);
    let error = encoding_from_pickle(&encoding_like(
        encoding_class.clone(),
        valid_state_with("mergeable_ranks", str_key),
    ))
    .expect_err("str key");
    assert!(matches!(error, TiktokenError::WrongType { .. }), "{error}");

    let negative = Value::dict(vec![(Value::str("<|x|>"), Value::Int(-3))]);
    let error = encoding_from_pickle(&encoding_like(
        encoding_class.clone(),
        valid_state_with("special_tokens", negative),
    ))
    .expect_err("negative id");
    assert_eq!(
        error.to_string(),
        "tokenizer pickle: special_tokens[\"<|x|>\"] is int -3, expected a non-negative int"
    );

    let shared_token = Value::bytes(b"xy");
    let duplicated = Value::dict(vec![
        (shared_token.clone(), Value::Int(0)),
        (shared_token, Value::Int(1)),
    ]);
    let error = encoding_from_pickle(&encoding_like(
        encoding_class.clone(),
        valid_state_with("mergeable_ranks", duplicated),
    ))
    .expect_err("duplicate");
    assert_eq!(
        error.to_string(),
        "tokenizer pickle: mergeable_ranks contains the key b'xy' more than once"
    );

    let list_state = encoding_like(encoding_class, Value::list(vec![]));
    assert!(matches!(
        encoding_from_pickle(&list_state),
        Err(TiktokenError::StateNotDict { .. })
    ));
}

#[test]
fn the_fixture_pickle_has_the_documented_shape() {
    let root = parse(&read_fixture(SMALL)).expect("pickle");
    let object = root.as_object().expect("object");
    assert_eq!(object.construction, nanochat_pt::Construction::NewObj);
    let state = object.state.as_ref().expect("state");
    let keys: Vec<&str> = state
        .as_dict()
        .expect("dict")
        .iter()
        .filter_map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["name", "pat_str", "mergeable_ranks", "special_tokens"]
    );
}
