//! The engine's error type.

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] nanochat_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenizer(#[from] nanochat_tokenizer::TokenizerError),
    /// A request the engine cannot run as given (the message names the parameter).
    #[error("{0}")]
    BadRequest(String),
}
