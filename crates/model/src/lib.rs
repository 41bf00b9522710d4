//! The nanochat GPT (reference §3) on candle: its config, forward pass, rotary tables, KV cache
//! and checkpoints (nanochat's `.pt` + meta JSON, and our safetensors format).

pub mod checkpoint;
pub mod config;
pub mod decode_attention;
pub mod error;
pub mod gpt;
pub mod init;
pub mod kernels;
pub mod kv_cache;
pub mod linear;
pub mod rope;
pub mod safetensors_file;
pub mod save;
pub mod state_dict;

pub use config::{Activation, Config};
pub use error::{ModelError, Result};
pub use gpt::{Gpt, Segment};
pub use kv_cache::KvCache;
pub use linear::{Linear, WeightDType};
