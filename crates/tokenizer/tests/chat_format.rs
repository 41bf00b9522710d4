//! nanochat's chat format (`render_conversation`, `render_for_completion`, chat_web's prompt) on
//! every case of `tokenizer/chat_format_cases.json`, errors included.

use nanochat_fixtures::{fixture, fixture_json};
use nanochat_tokenizer::chat::{render_conversation, render_for_completion, Conversation, Message};
use nanochat_tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_pickle_file(&fixture("nanochat-2025/tokenizer/tokenizer.pkl")).unwrap()
}

fn numbers<T: TryFrom<u64>>(value: &Value) -> Vec<T>
where
    T::Error: std::fmt::Debug,
{
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| T::try_from(v.as_u64().unwrap()).unwrap())
        .collect()
}

fn conversation(case: &Value) -> Conversation {
    serde_json::from_value(case["conversation"].clone()).expect("conversation parses")
}

#[test]
fn render_conversation_cases() {
    let tok = tokenizer();
    let cases = fixture_json("tokenizer/chat_format_cases.json");
    let cases = cases["render_conversation"].as_array().unwrap();
    assert!(
        cases.len() >= 5,
        "expected several render_conversation cases"
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let max_tokens = case["max_tokens"].as_u64().unwrap() as usize;
        let rendered = render_conversation(&tok, &conversation(case), max_tokens).unwrap();
        assert_eq!(rendered.ids, numbers::<u32>(&case["ids"]), "{name}: ids");
        assert_eq!(rendered.mask, numbers::<u8>(&case["mask"]), "{name}: mask");
    }
}

#[test]
fn render_for_completion_cases() {
    let tok = tokenizer();
    let cases = fixture_json("tokenizer/chat_format_cases.json");
    for case in cases["render_for_completion"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let ids = render_for_completion(&tok, &conversation(case)).unwrap();
        assert_eq!(ids, numbers::<u32>(&case["ids"]), "{name}");
    }
}

#[test]
fn render_errors_are_values_naming_the_python_exception() {
    let tok = tokenizer();
    let cases = fixture_json("tokenizer/chat_format_cases.json");
    let cases = cases["render_errors"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        match render_conversation(&tok, &conversation(case), 2048) {
            Err(TokenizerError::Conversation(e)) => {
                assert_eq!(
                    e.python_exception(),
                    case["error"].as_str().unwrap(),
                    "{name}: {e}"
                )
            }
            other => panic!("{name}: expected a conversation error, got {other:?}"),
        }
    }
}

#[test]
fn chat_web_prompt_equals_render_for_completion() {
    let tok = tokenizer();
    let cases = fixture_json("tokenizer/chat_format_cases.json");
    let case = &cases["chat_web_prompt"];
    let mut messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
    // chat_web ends the prompt with <|assistant_start|>: the same as rendering for completion
    // with an (empty) assistant message appended.
    messages.push(Message::new("assistant", ""));
    let ids = render_for_completion(&tok, &Conversation { messages }).unwrap();
    assert_eq!(ids, numbers::<u32>(&case["ids"]));
}

#[test]
fn render_for_completion_needs_a_final_assistant_message() {
    let tok = tokenizer();
    let conv = Conversation {
        messages: vec![Message::new("user", "hi")],
    };
    assert!(matches!(
        render_for_completion(&tok, &conv),
        Err(TokenizerError::Conversation(_))
    ));
    let empty = Conversation { messages: vec![] };
    assert!(matches!(
        render_conversation(&tok, &empty, 10),
        Err(TokenizerError::Conversation(_))
    ));
}
