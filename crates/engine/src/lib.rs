//! nanochat's inference engine (reference §5): KV-cached generation of one or more rows with the
//! calculator tool, sampling (nanochat's temperature/top-k plus the OpenAI-style knobs a server
//! needs), and UTF-8-safe text streaming.

pub mod calculator;
pub mod constraint;
pub mod engine;
pub mod error;
mod python_numbers;
pub mod sampling;
pub mod sequence;
pub mod stream;

pub use constraint::{Constraint, ConstraintFactory};
pub use engine::{Column, Engine, GenerateOptions, Generation};
pub use error::{EngineError, Result};
pub use sampling::{Sampler, SamplingParams};
pub use sequence::{batch_step, decode_step, prefill, Prefill, Sequence, SequenceOptions};
pub use stream::TextStream;
