//! nanochat's tokenizer, exactly as nanochat@01f5f10 behaves: GPT-4-style regex pre-split,
//! byte-level BPE by rank (tiktoken semantics), nine special tokens after the BPE ranks, the chat
//! format of `render_conversation`, and rustbpe's trainer. Reads and writes `tokenizer.pkl` and
//! `token_bytes.pt` byte-compatibly with the Python side.

pub mod bpe;
pub mod chat;
pub mod corpus;
pub mod error;
pub mod paths;
pub mod split;
pub mod token_bytes;
pub mod tokenizer;
pub mod train;

pub use chat::{
    render_conversation, render_for_completion, ChatFormatError, Conversation, Message,
};
pub use error::{Result, TokenizerError};
pub use tokenizer::{SpecialIds, Tokenizer, SPECIAL_TOKENS};
