//! The tokenizer's error type. Every variant says which file, field or value was wrong, so a
//! user can act on the message without reading our code.

use std::path::PathBuf;

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what we expected (bad pickle, bad zip, wrong class…).
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("the split pattern does not compile: {0}")]
    BadPattern(String),
    #[error("the split pattern failed on the input text: {0}")]
    SplitFailed(String),
    #[error("token id {0} is not in the vocabulary")]
    UnknownTokenId(u32),
    #[error("unknown special token {0:?}")]
    UnknownSpecialToken(String),
    #[error("invalid vocabulary: {0}")]
    BadVocab(String),
    /// A conversation that nanochat's `render_conversation` would reject (it raises there).
    #[error("invalid conversation: {0}")]
    Conversation(#[from] crate::chat::ChatFormatError),
    #[error("invalid training input: {0}")]
    BadTrainingInput(String),
}
