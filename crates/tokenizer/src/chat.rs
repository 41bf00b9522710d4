//! nanochat's chat format (reference §4): `render_conversation` → (ids, mask) for training and
//! `render_for_completion` → the prompt ids for generation.
//!
//! ```text
//! <|bos|> <|user_start|> user text <|user_end|> <|assistant_start|> reply <|assistant_end|> …
//! ```
//! A leading system message is merged into the first user message (there is no system token).
//! Assistant content may be a list of parts: `text`, `python` (a calculator call the model
//! writes, wrapped in `<|python_start|>…<|python_end|>`, supervised) and `python_output` (the
//! tool's answer, `<|output_start|>…<|output_end|>`, not supervised). Each piece is encoded on
//! its own, so no token spans two pieces. Errors mirror where nanochat raises (an
//! `AssertionError` or `ValueError` there); [`ChatFormatError::python_exception`] names it.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: Content::Text(content.to_string()),
        }
    }
}

/// Why a conversation cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatFormatError {
    #[error("the conversation has no messages")]
    Empty,
    #[error("a system message must be followed by a user message, found {found:?}")]
    SystemNotFollowedByUser { found: Option<String> },
    #[error("message {index} has role {found:?}, expected {expected:?} (messages must alternate user, assistant, user, …)")]
    WrongRole {
        index: usize,
        expected: &'static str,
        found: String,
    },
    #[error("message {index} is from the user and must have string content, not a list of parts")]
    UserContentNotText { index: usize },
    #[error("message {index}: unknown assistant part type {kind:?} (expected text, python or python_output)")]
    UnknownPartType { index: usize, kind: String },
    #[error(
        "the last message must be from the assistant to render for completion, found {found:?}"
    )]
    LastNotAssistant { found: Option<String> },
}

impl ChatFormatError {
    /// The Python exception nanochat raises for the same input.
    pub fn python_exception(&self) -> &'static str {
        match self {
            ChatFormatError::UnknownPartType { .. } => "ValueError",
            _ => "AssertionError",
        }
    }
}

/// The outcome of rendering: tokens and, per token, 1 if the model is trained to produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

impl Rendered {
    fn push(&mut self, ids: &[u32], mask: u8) {
        self.ids.extend_from_slice(ids);
        self.mask.extend(std::iter::repeat_n(mask, ids.len()));
    }
}

/// Merges a leading system message into the first user message, as nanochat does.
fn merge_system(messages: &[Message]) -> std::result::Result<Vec<Message>, ChatFormatError> {
    match messages.first() {
        Some(first) if first.role == "system" => {
            let user = messages.get(1);
            match user {
                Some(user) if user.role == "user" => {
                    let system_text = content_text(&first.content);
                    let user_text = match &user.content {
                        Content::Text(t) => t.clone(),
                        Content::Parts(_) => {
                            return Err(ChatFormatError::UserContentNotText { index: 1 })
                        }
                    };
                    let mut merged = Vec::with_capacity(messages.len() - 1);
                    merged.push(Message::new(
                        "user",
                        &format!("{system_text}\n\n{user_text}"),
                    ));
                    merged.extend_from_slice(&messages[2..]);
                    Ok(merged)
                }
                other => Err(ChatFormatError::SystemNotFollowedByUser {
                    found: other.map(|m| m.role.clone()),
                }),
            }
        }
        _ => Ok(messages.to_vec()),
    }
}

fn content_text(content: &Content) -> String {
    match content {
        Content::Text(t) => t.clone(),
        Content::Parts(parts) => parts.iter().map(|p| p.text.as_str()).collect(),
    }
}

/// nanochat's `render_conversation(conversation, max_tokens)`.
pub fn render_conversation(
    tok: &Tokenizer,
    conversation: &Conversation,
    max_tokens: usize,
) -> Result<Rendered> {
    let t = tok.special_ids()?;
    let messages = merge_system(&conversation.messages)?;
    if messages.is_empty() {
        return Err(ChatFormatError::Empty.into());
    }
    let mut out = Rendered {
        ids: Vec::new(),
        mask: Vec::new(),
    };
    out.push(&[t.bos], 0);
    for (index, message) in messages.iter().enumerate() {
        let expected = if index % 2 == 0 { "user" } else { "assistant" };
        if message.role != expected {
            return Err(ChatFormatError::WrongRole {
                index,
                expected,
                found: message.role.clone(),
            }
            .into());
        }
        if expected == "user" {
            let Content::Text(text) = &message.content else {
                return Err(ChatFormatError::UserContentNotText { index }.into());
            };
            out.push(&[t.user_start], 0);
            out.push(&tok.encode(text)?, 0);
            out.push(&[t.user_end], 0);
            continue;
        }
        out.push(&[t.assistant_start], 0);
        match &message.content {
            Content::Text(text) => out.push(&tok.encode(text)?, 1),
            Content::Parts(parts) => {
                for part in parts {
                    let ids = tok.encode(&part.text)?;
                    match part.kind.as_str() {
                        "text" => out.push(&ids, 1),
                        "python" => {
                            out.push(&[t.python_start], 1);
                            out.push(&ids, 1);
                            out.push(&[t.python_end], 1);
                        }
                        "python_output" => {
                            out.push(&[t.output_start], 0);
                            out.push(&ids, 0);
                            out.push(&[t.output_end], 0);
                        }
                        other => {
                            return Err(ChatFormatError::UnknownPartType {
                                index,
                                kind: other.to_string(),
                            }
                            .into())
                        }
                    }
                }
            }
        }
        out.push(&[t.assistant_end], 1);
    }
    out.ids.truncate(max_tokens);
    out.mask.truncate(max_tokens);
    Ok(out)
}

/// nanochat's `render_for_completion`: drop the final assistant message, render the rest and
/// append `<|assistant_start|>` so the model writes the reply.
pub fn render_for_completion(tok: &Tokenizer, conversation: &Conversation) -> Result<Vec<u32>> {
    let last = conversation.messages.last();
    if last.map(|m| m.role.as_str()) != Some("assistant") {
        return Err(ChatFormatError::LastNotAssistant {
            found: last.map(|m| m.role.clone()),
        }
        .into());
    }
    let without_last = Conversation {
        messages: conversation.messages[..conversation.messages.len() - 1].to_vec(),
    };
    let mut ids = render_conversation(tok, &without_last, usize::MAX)?.ids;
    ids.push(tok.special("<|assistant_start|>")?);
    Ok(ids)
}
