//! Writing checkpoints in our format — `model_<step:06>.safetensors` + `meta_<step:06>.json`,
//! beside or instead of nanochat's `.pt` — and converting nanochat checkpoints to it.
//!
//! * The safetensors keys are nanochat's state-dict names (`transformer.wte.weight`, …,
//!   `lm_head.weight`; no `lm_head.weight` when embeddings are tied). Tensors keep their dtype
//!   (a CUDA-trained checkpoint's bf16 `wte` stays bf16) unless a dtype is asked for.
//! * The meta is the original meta JSON (any keys; written with sorted keys) with
//!   `model_config` replaced by our [`Config`]: options at their default are left out, so a
//!   default model's `model_config` is nanochat's six keys and nanochat's own tools read it.
//! * Both files are written to temporary names in the target directory and renamed into place
//!   (meta first: a reader never sees weights without their meta). An existing checkpoint of
//!   the same step is refused unless `force` is set.
//! * [`convert`] also copies the tokenizer (`tokenizer.pkl`, `token_bytes.pt`) into the output
//!   directory so the converted model is self-contained.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::checkpoint::{
    checkpoint_at_path, read_meta, read_safetensors, read_torch_state_dict, CheckpointFiles,
    WeightFormat,
};
use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::gpt::Gpt;
use crate::state_dict::{is_float, validate_tensors};

pub const TOKENIZER_FILES: [&str; 2] = ["tokenizer.pkl", "token_bytes.pt"];

/// How [`save_checkpoint`] writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Convert every tensor to this dtype (F32, BF16 or F16); `None` keeps each tensor's own.
    pub dtype: Option<DType>,
    /// Replace an existing checkpoint of the same step in the target directory.
    pub force: bool,
}

fn io_error(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.into(),
        source,
    }
}

/// The meta JSON we write: `meta` (or `{"step": step}` without one) with `model_config` = `cfg`
/// and `step` (when present) set to `step`.
pub fn checkpoint_meta(
    cfg: &Config,
    step: u64,
    meta: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut meta = match meta {
        Some(serde_json::Value::Object(m)) => serde_json::Value::Object(m.clone()),
        Some(other) => {
            return Err(ModelError::BadInput(format!(
                "a checkpoint's meta must be a JSON object, not {other}"
            )))
        }
        None => serde_json::json!({ "step": step }),
    };
    if meta.get("step").is_some() {
        meta["step"] = step.into();
    }
    meta["model_config"] = serde_json::to_value(cfg)
        .map_err(|e| ModelError::BadConfig(format!("cannot serialize the config: {e}")))?;
    Ok(meta)
}

/// `dir/.<name>.tmp-<pid>`: a name discovery never matches.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Refuses (unless `force`) when `dir` already holds checkpoint `step` in our format.
fn refuse_existing(dir: &Path, step: u64, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    for path in [
        dir.join(format!("model_{step:06}.safetensors")),
        dir.join(format!("meta_{step:06}.json")),
    ] {
        if path.exists() {
            return Err(ModelError::checkpoint(
                path,
                "already exists: a checkpoint of this step is there (force replaces it)",
            ));
        }
    }
    Ok(())
}

/// Writes the checkpoint `step` of a `cfg` model into `dir` (created if missing): weights
/// `tensors` (nanochat state-dict names; validated against `cfg` first) and `meta` (see
/// [`checkpoint_meta`]). Returns the files written.
pub fn save_checkpoint(
    dir: &Path,
    step: u64,
    cfg: &Config,
    tensors: &[(String, Tensor)],
    meta: Option<&serde_json::Value>,
    opts: &SaveOptions,
) -> Result<CheckpointFiles> {
    cfg.validate()?;
    if let Some(dtype) = opts.dtype {
        if !is_float(dtype) {
            return Err(ModelError::BadInput(format!(
                "checkpoints are saved as f32, bf16 or f16, not {dtype:?}"
            )));
        }
    }
    let weights = dir.join(format!("model_{step:06}.safetensors"));
    let meta_path = dir.join(format!("meta_{step:06}.json"));
    validate_tensors(&weights, cfg, tensors)?;
    let meta = checkpoint_meta(cfg, step, meta)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    refuse_existing(dir, step, opts.force)?;

    let mut map: HashMap<&str, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = match opts.dtype {
            Some(d) if d != t.dtype() => t.to_dtype(d)?,
            _ => t.clone(),
        };
        map.insert(name.as_str(), t);
    }
    let weights_tmp = temp_path(dir, &format!("model_{step:06}.safetensors"));
    let meta_tmp = temp_path(dir, &format!("meta_{step:06}.json"));
    let written = (|| -> Result<()> {
        safetensors::serialize_to_file(&map, None, &weights_tmp)
            .map_err(|e| ModelError::checkpoint(&weights_tmp, e.to_string()))?;
        sync(&weights_tmp)?;
        let text = serde_json::to_string_pretty(&meta)
            .map_err(|e| ModelError::checkpoint(&meta_tmp, e.to_string()))?;
        std::fs::write(&meta_tmp, text).map_err(|e| io_error(&meta_tmp, e))?;
        sync(&meta_tmp)?;
        std::fs::rename(&meta_tmp, &meta_path).map_err(|e| io_error(&meta_path, e))?;
        std::fs::rename(&weights_tmp, &weights).map_err(|e| io_error(&weights, e))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&weights_tmp);
        let _ = std::fs::remove_file(&meta_tmp);
    }
    written?;
    Ok(CheckpointFiles {
        dir: dir.to_path_buf(),
        step,
        weights,
        format: WeightFormat::Safetensors,
        meta: meta_path,
    })
}

/// [`save_checkpoint`] of a model's weights ([`Gpt::named_weights`]).
pub fn save_model(
    dir: &Path,
    step: u64,
    model: &Gpt,
    meta: Option<&serde_json::Value>,
    opts: &SaveOptions,
) -> Result<CheckpointFiles> {
    save_checkpoint(
        dir,
        step,
        model.config(),
        &model.named_weights(),
        meta,
        opts,
    )
}

/// The tokenizer directory that goes with a checkpoint: its own directory when it holds
/// `tokenizer.pkl` (a converted, self-contained model), else `$NANOCHAT_BASE_DIR/tokenizer`.
pub fn tokenizer_dir_for(files: &CheckpointFiles) -> PathBuf {
    if files.dir.join(TOKENIZER_FILES[0]).is_file() {
        files.dir.clone()
    } else {
        nanochat_tokenizer::paths::default_tokenizer_dir()
    }
}

/// How [`convert`] works.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Convert every tensor to this dtype; `None` keeps each tensor's own.
    pub dtype: Option<DType>,
    /// The step to convert when `from` is a directory (default: the last one).
    pub step: Option<u64>,
    /// Replace an existing checkpoint of the same step (and a different tokenizer) in `to`.
    pub force: bool,
    /// Copy the tokenizer from this directory instead of [`tokenizer_dir_for`] the source.
    pub tokenizer: Option<PathBuf>,
}

/// What [`convert`] did.
#[derive(Clone, Debug)]
pub struct Converted {
    pub source: CheckpointFiles,
    pub output: CheckpointFiles,
    pub config: Config,
    /// Number of tensors written.
    pub tensors: usize,
    /// How many tensors of each dtype were written.
    pub dtypes: Vec<(DType, usize)>,
    /// Size of the safetensors file.
    pub bytes: u64,
    /// Where the tokenizer was copied from; `None` when no tokenizer was found to copy.
    pub tokenizer_from: Option<PathBuf>,
    pub seconds: f64,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies `tokenizer.pkl` (required) and `token_bytes.pt` (when present) from `src` to `dst`.
fn copy_tokenizer(src: &Path, dst: &Path, cfg: &Config, force: bool) -> Result<()> {
    let tokenizer = nanochat_tokenizer::Tokenizer::from_dir(src)
        .map_err(|e| ModelError::checkpoint(src.join(TOKENIZER_FILES[0]), e.to_string()))?;
    if tokenizer.vocab_size() > cfg.vocab_size {
        return Err(ModelError::checkpoint(
            src.join(TOKENIZER_FILES[0]),
            format!(
                "this tokenizer has {} tokens but the model only {}: they do not belong together \
                 (name the right tokenizer directory)",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
        ));
    }
    for name in TOKENIZER_FILES {
        let (from, to) = (src.join(name), dst.join(name));
        if !from.is_file() || same_file(&from, &to) {
            continue;
        }
        if to.exists() && !force {
            let old = std::fs::read(&to).map_err(|e| io_error(&to, e))?;
            let new = std::fs::read(&from).map_err(|e| io_error(&from, e))?;
            if old == new {
                continue;
            }
            return Err(ModelError::checkpoint(
                &to,
                format!(
                    "already exists and differs from {} (use force to replace it)",
                    from.display()
                ),
            ));
        }
        let tmp = temp_path(dst, name);
        std::fs::copy(&from, &tmp).map_err(|e| io_error(&from, e))?;
        std::fs::rename(&tmp, &to).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(&to, e)
        })?;
    }
    Ok(())
}

/// Converts the checkpoint at `from` (a `model_<step>.pt` / `.safetensors` file or a directory
/// of them) into our format in the directory `to`, with its meta and tokenizer.
pub fn convert(from: &Path, to: &Path, opts: &ConvertOptions) -> Result<Converted> {
    let started = Instant::now();
    let source = checkpoint_at_path(from, opts.step)?;
    let (meta, config) = read_meta(&source.meta)?;
    let tensors = match source.format {
        WeightFormat::Torch => read_torch_state_dict(&source.weights)?,
        WeightFormat::Safetensors => read_safetensors(&source.weights)?,
    };
    validate_tensors(&source.weights, &config, &tensors)?;
    let tokenizer_dir = match &opts.tokenizer {
        Some(dir) => {
            if !dir.join(TOKENIZER_FILES[0]).is_file() {
                return Err(ModelError::NotFound(format!(
                    "no {} in {}",
                    TOKENIZER_FILES[0],
                    dir.display()
                )));
            }
            Some(dir.clone())
        }
        None => Some(tokenizer_dir_for(&source)).filter(|d| d.join(TOKENIZER_FILES[0]).is_file()),
    };
    let save = SaveOptions {
        dtype: opts.dtype,
        force: opts.force,
    };
    // Refuse before writing anything, so a refusal leaves `to` untouched.
    refuse_existing(to, source.step, opts.force)?;
    if let Some(dir) = &tokenizer_dir {
        std::fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
        copy_tokenizer(dir, to, &config, opts.force)?;
    }
    let output = save_checkpoint(to, source.step, &config, &tensors, Some(&meta), &save)?;
    let mut dtypes: Vec<(DType, usize)> = Vec::new();
    for (_, t) in &tensors {
        let d = opts.dtype.unwrap_or(t.dtype());
        match dtypes.iter_mut().find(|(x, _)| *x == d) {
            Some((_, n)) => *n += 1,
            None => dtypes.push((d, 1)),
        }
    }
    let bytes = std::fs::metadata(&output.weights)
        .map_err(|e| io_error(&output.weights, e))?
        .len();
    Ok(Converted {
        source,
        output,
        config,
        tensors: tensors.len(),
        dtypes,
        bytes,
        tokenizer_from: tokenizer_dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}
