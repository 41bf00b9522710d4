//! nanochat's inference engine (reference §5).

pub mod calculator;
