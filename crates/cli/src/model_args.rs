//! Choosing and loading a model from the command line, the way nanochat's scripts do
//! (`-i/--source`, `-g/--model-tag`, `-s/--step`) or by path (`--model`), with what was loaded
//! printed to stderr.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Args;
use nanochat_model::checkpoint::{
    checkpoint_at_path, find_checkpoint, load_checkpoint, CheckpointFiles, LoadedModel, Source,
};
use nanochat_model::WeightDType;
use nanochat_tokenizer::paths::{default_tokenizer_dir, nanochat_base_dir};
use nanochat_tokenizer::Tokenizer;

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A checkpoint directory (model_<step>.pt or .safetensors + meta_<step>.json), a
    /// model_<step>.pt / .safetensors file, or hf:owner/repo[@rev] (pulled from the hub on
    /// first use, like `nanochat pull`). Default: discover one under $NANOCHAT_BASE_DIR.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Training stage to discover a checkpoint from: base, mid, sft or rl.
    #[arg(long, short = 'i', default_value = "sft")]
    pub source: Source,
    /// Model tag (directory) under the stage, e.g. d20. Default: the largest d<N>.
    #[arg(long, short = 'g')]
    pub model_tag: Option<String>,
    /// Checkpoint step. Default: the last one.
    #[arg(long, short = 's')]
    pub step: Option<u64>,
    /// Weight format in memory: f32 (nanochat's CPU path), bf16, q8_0 or q4k (quantised at
    /// load unless the checkpoint is stored quantised).
    #[arg(long, short = 'd', default_value = "f32", value_parser = WeightDType::parse)]
    pub dtype: WeightDType,
    /// Tokenizer directory. Default: the model's directory if it has tokenizer.pkl, else
    /// $NANOCHAT_BASE_DIR/tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    /// The checkpoint files these arguments name.
    pub fn checkpoint(&self) -> Result<CheckpointFiles> {
        match &self.model {
            Some(path) if crate::pull::is_hub_model(path) => {
                crate::pull::hub_checkpoint(&path.to_string_lossy(), self.step)
            }
            Some(path) => checkpoint_at_path(path, self.step).with_context(|| format!("finding a checkpoint at {}", path.display())),
            None => find_checkpoint(&nanochat_base_dir(), self.source, self.model_tag.as_deref(), self.step).with_context(|| {
                format!(
                    "no model given and none found under {} — pass --model PATH (a nanochat checkpoint directory or \
                     model_<step>.pt), or set NANOCHAT_BASE_DIR to a nanochat base directory",
                    nanochat_base_dir().display()
                )
            }),
        }
    }

    /// Loads model and tokenizer, printing what was loaded to stderr.
    pub fn load(&self) -> Result<(LoadedModel, Tokenizer)> {
        let files = self.checkpoint()?;
        let started = Instant::now();
        let loaded = load_checkpoint(&files, self.dtype, &Device::Cpu)
            .with_context(|| format!("loading {}", files.weights.display()))?;
        let tokenizer_dir = self.tokenizer.clone().unwrap_or_else(|| {
            if files.dir.join("tokenizer.pkl").exists() {
                files.dir.clone()
            } else {
                default_tokenizer_dir()
            }
        });
        let tokenizer = crate::tok::load_tokenizer(Some(&tokenizer_dir))?;
        let cfg = &loaded.config;
        if tokenizer.vocab_size() > cfg.vocab_size {
            anyhow::bail!(
                "the tokenizer in {} has {} tokens but the model only {}: they do not belong together",
                tokenizer_dir.display(),
                tokenizer.vocab_size(),
                cfg.vocab_size
            );
        }
        eprintln!(
            "loaded {} (step {}) in {:.2}s: {} layers, {} wide, {} heads ({} kv), vocab {}, {:.1}M parameters, {:?}; tokenizer {}",
            files.weights.display(),
            files.step,
            started.elapsed().as_secs_f64(),
            cfg.n_layer,
            cfg.n_embd,
            cfg.n_head,
            cfg.n_kv_head,
            cfg.vocab_size,
            cfg.num_parameters() as f64 / 1e6,
            self.dtype,
            tokenizer_dir.display()
        );
        Ok((loaded, tokenizer))
    }
}
