//! The model crate's error type. Variants name the file, tensor or config field that was wrong.

use std::path::PathBuf;

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid model config: {0}")]
    BadConfig(String),
    #[error("sequence of {needed} positions is longer than the model supports ({limit})")]
    TooLong { needed: usize, limit: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file or directory that cannot be used as it is.
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("no checkpoint found: {0}")]
    NotFound(String),
    #[error("invalid input: {0}")]
    BadInput(String),
}

impl ModelError {
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}
