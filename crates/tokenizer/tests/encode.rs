//! Encode/decode parity with nanochat's tokenizers (tiktoken `encode_ordinary` semantics) on the
//! golden fixtures: the 512-vocab fixture tokenizer and the realistic 65,536-vocab one.

use nanochat_fixtures::{fixture, fixture_json};
use nanochat_tokenizer::split::{Splitter, NANOCHAT_SPLIT_PATTERN};
use nanochat_tokenizer::token_bytes::load_token_bytes;
use nanochat_tokenizer::Tokenizer;
use serde_json::Value;

fn tokenizer_512() -> Tokenizer {
    Tokenizer::from_pickle_file(&fixture("nanochat-2025/tokenizer/tokenizer.pkl"))
        .expect("load 512 tokenizer")
}

fn tokenizer_65k() -> Tokenizer {
    Tokenizer::from_pickle_file(&fixture("tokenizer-65k/tokenizer.pkl"))
        .expect("load 65k tokenizer")
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids array")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

fn check_cases(tok: &Tokenizer, cases_file: &str, expected_cases: usize) {
    let cases = fixture_json(cases_file);
    let cases = cases["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), expected_cases, "{cases_file}: number of cases");
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().expect("text");
        let expected = ids(&case["ids"]);
        let got = tok.encode(text).expect("encode");
        assert_eq!(got, expected, "{cases_file} case {i}: encode({text:?})");
        assert_eq!(
            tok.decode(&got).expect("decode"),
            text,
            "{cases_file} case {i}: decode round trip"
        );
    }
}

#[test]
fn encode_cases_512() {
    check_cases(&tokenizer_512(), "tokenizer/encode_cases.json", 44);
}

#[test]
fn encode_cases_65k_including_gpl3() {
    let tok = tokenizer_65k();
    check_cases(&tok, "tokenizer-65k/encode_cases.json", 45);
    let cases = fixture_json("tokenizer-65k/encode_cases.json");
    let gpl = cases["cases"].as_array().unwrap().last().unwrap();
    assert_eq!(
        ids(&gpl["ids"]).len(),
        7738,
        "the GPL-3 case is the long one"
    );
}

#[test]
fn chunks_match_the_reference_pre_tokenization() {
    let cases = fixture_json("tokenizer/encode_cases.json");
    let fast = Splitter::new(NANOCHAT_SPLIT_PATTERN).unwrap();
    let regex = Splitter::new_regex(NANOCHAT_SPLIT_PATTERN).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<&str> = case["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            fast.chunks(text).unwrap(),
            expected,
            "scanner chunks of {text:?}"
        );
        assert_eq!(
            regex.chunks(text).unwrap(),
            expected,
            "fancy-regex chunks of {text:?}"
        );
    }
}

#[test]
fn extra_prepend_append_and_batch() {
    let tok = tokenizer_512();
    let cases = fixture_json("tokenizer/encode_cases.json");
    let bos = tok.special("<|bos|>").unwrap();
    let assistant_end = tok.special("<|assistant_end|>").unwrap();
    let extra = cases["extra"].as_array().unwrap();
    assert_eq!(extra.len(), 3);
    // encode(text, prepend='<|bos|>')
    assert_eq!(
        tok.encode_with_specials(extra[0]["text"].as_str().unwrap(), Some(bos), None)
            .unwrap(),
        ids(&extra[0]["ids"])
    );
    // encode(text, prepend=bos_id, append='<|assistant_end|>')
    assert_eq!(
        tok.encode_with_specials(
            extra[1]["text"].as_str().unwrap(),
            Some(bos),
            Some(assistant_end)
        )
        .unwrap(),
        ids(&extra[1]["ids"])
    );
    // encode([texts], prepend='<|bos|>')
    let texts: Vec<&str> = extra[2]["text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let expected: Vec<Vec<u32>> = extra[2]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    assert_eq!(tok.encode_batch(&texts, Some(bos), None).unwrap(), expected);
}

#[test]
fn special_token_strings_in_text_are_plain_text() {
    let tok = tokenizer_512();
    let ids = tok.encode("<|bos|>hi<|assistant_end|>").unwrap();
    assert!(
        ids.iter().all(|&id| !tok.is_special(id)),
        "encode must never produce special ids: {ids:?}"
    );
    assert_eq!(tok.decode(&ids).unwrap(), "<|bos|>hi<|assistant_end|>");
}

#[test]
fn decode_cases_replace_partial_utf8_like_python() {
    let tok = tokenizer_512();
    let cases = fixture_json("tokenizer/encode_cases.json");
    for case in cases["decode_cases"].as_array().unwrap() {
        let ids = ids(&case["ids"]);
        assert_eq!(
            tok.decode(&ids).unwrap(),
            case["text"].as_str().unwrap(),
            "decode({ids:?})"
        );
    }
    assert!(tok.decode(&[512]).is_err(), "unknown ids are an error");
}

#[test]
fn vocab_json_matches_loaded_tokenizer() {
    let tok = tokenizer_512();
    let vocab = fixture_json("tokenizer/vocab.json");
    assert_eq!(
        tok.vocab_size(),
        vocab["n_vocab"].as_u64().unwrap() as usize
    );
    assert_eq!(
        tok.n_ranks(),
        vocab["n_mergeable"].as_u64().unwrap() as usize
    );
    assert_eq!(tok.pattern(), vocab["pat_str"].as_str().unwrap());
    assert_eq!(
        tok.bos_id().unwrap(),
        vocab["bos_token_id"].as_u64().unwrap() as u32
    );
    for (i, hex) in vocab["id_to_bytes_hex"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let hex = hex.as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|j| u8::from_str_radix(&hex[j..j + 2], 16).unwrap())
            .collect();
        assert_eq!(tok.ranks()[i], bytes, "bytes of token {i}");
    }
    for (name, id) in vocab["special_tokens"].as_object().unwrap() {
        assert_eq!(
            tok.special(name).unwrap(),
            id.as_u64().unwrap() as u32,
            "special {name}"
        );
    }
    let expected: Vec<i32> = vocab["token_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(
        tok.token_byte_lengths(),
        expected,
        "token_bytes computed as nanochat does"
    );
}

#[test]
fn token_bytes_files_load() {
    let vocab = fixture_json("tokenizer/vocab.json");
    let expected: Vec<i32> = vocab["token_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect();
    assert_eq!(
        load_token_bytes(&fixture("nanochat-2025/tokenizer/token_bytes.pt")).unwrap(),
        expected
    );

    let loaded = load_token_bytes(&fixture("tokenizer-65k/token_bytes.pt")).unwrap();
    let cases = fixture_json("tokenizer-65k/encode_cases.json");
    assert_eq!(loaded.len(), 65536);
    assert_eq!(
        loaded.iter().map(|&v| v as i64).sum::<i64>(),
        cases["token_bytes_sum"].as_i64().unwrap()
    );
    for (value, count) in cases["token_bytes_count_by_value"].as_object().unwrap() {
        let value: i32 = value.parse().unwrap();
        let n = loaded.iter().filter(|&&v| v == value).count();
        assert_eq!(
            n as u64,
            count.as_u64().unwrap(),
            "number of tokens of {value} bytes"
        );
    }
    assert_eq!(
        tokenizer_65k().token_byte_lengths(),
        loaded,
        "computed token_bytes equal the 65k file"
    );
}
