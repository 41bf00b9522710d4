//! `nanochat convert`: a nanochat checkpoint (`model_<step>.pt` + `meta_<step>.json`, or one of
//! ours) into our format — `model_<step>.safetensors` + `meta_<step>.json` with the tokenizer
//! beside them — which loads faster, can be stored in bf16, and is self-contained.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use nanochat_model::save::{convert, ConvertOptions};
use nanochat_model::WeightDType;

#[derive(Args, Clone, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to convert: a model_<step>.pt / .safetensors file (its meta_<step>.json
    /// beside it) or a checkpoint directory (its last step unless --step).
    #[arg(long)]
    pub from: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    pub to: PathBuf,
    /// Store the weights as f32, bf16, q8_0 or q4k (the quantised ones keep the embedding in
    /// bf16 and load without quantising again). Default: keep each tensor's dtype
    /// (CUDA-trained nanochat checkpoints have a bf16 embedding and f32 everything else).
    #[arg(long, value_parser = WeightDType::parse)]
    pub dtype: Option<WeightDType>,
    /// Step to convert when --from is a directory. Default: the last one.
    #[arg(long)]
    pub step: Option<u64>,
    /// Replace a checkpoint of the same step (and a different tokenizer) already in --to.
    #[arg(long)]
    pub force: bool,
    /// Copy the tokenizer from this directory. Default: the checkpoint's directory if it has
    /// tokenizer.pkl, else $NANOCHAT_BASE_DIR/tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let opts = ConvertOptions {
        dtype: args.dtype,
        step: args.step,
        force: args.force,
        tokenizer: args.tokenizer.clone(),
    };
    let done = convert(&args.from, &args.to, &opts).with_context(|| {
        format!(
            "converting {} into {}",
            args.from.display(),
            args.to.display()
        )
    })?;
    let cfg = &done.config;
    let dtypes = done
        .dtypes
        .iter()
        .map(|(d, n)| format!("{n} {d}"))
        .collect::<Vec<_>>()
        .join(" + ");
    println!(
        "converted {} (step {})",
        done.source.weights.display(),
        done.source.step
    );
    println!("       to {}", done.output.weights.display());
    println!("     meta {}", done.output.meta.display());
    println!(
        "   config {} layers, {} wide, {} heads ({} kv), vocab {}, sequence {}, {:.1}M parameters; model_config {}",
        cfg.n_layer,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_kv_head,
        cfg.vocab_size,
        cfg.sequence_len,
        cfg.num_parameters() as f64 / 1e6,
        serde_json::to_string(cfg)?
    );
    println!(
        "  tensors {} ({dtypes}), {:.1} MB",
        done.tensors,
        done.bytes as f64 / 1e6
    );
    match &done.tokenizer_from {
        Some(dir) => println!("tokenizer copied from {}", dir.display()),
        None => eprintln!(
            "warning: no tokenizer found (looked in {} and {}): the converted model needs \
             --tokenizer when loaded, or copy tokenizer.pkl and token_bytes.pt into {}",
            done.source.dir.display(),
            nanochat_tokenizer::paths::default_tokenizer_dir().display(),
            args.to.display()
        ),
    }
    println!("     time {:.2}s", done.seconds);
    Ok(())
}
