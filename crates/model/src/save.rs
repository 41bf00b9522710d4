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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::checkpoint::{
    checkpoint_at_path, load_checkpoint, read_meta, read_safetensors_as, CheckpointFiles,
    StoredTensors, WeightFormat,
};
use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::gpt::Gpt;
use crate::linear::WeightDType;
use crate::safetensors_file;
use crate::state_dict::{is_float, validate_stored};

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
    save_checkpoint_with_quantized(dir, step, cfg, tensors, &[], meta, opts)
}

/// [`save_checkpoint`] with some linear weights stored quantised (see
/// [`crate::safetensors_file`]); `opts.dtype` applies to the dense tensors only.
pub fn save_checkpoint_with_quantized(
    dir: &Path,
    step: u64,
    cfg: &Config,
    tensors: &[(String, Tensor)],
    quantized: &[(String, Arc<QTensor>)],
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
    let stored = StoredTensors {
        dense: tensors.to_vec(),
        quantized: quantized.iter().cloned().collect(),
    };
    validate_stored(&weights, cfg, &stored)?;
    let meta = checkpoint_meta(cfg, step, meta)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    refuse_existing(dir, step, opts.force)?;

    let mut dense: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = match opts.dtype {
            Some(d) if d != t.dtype() => t.to_dtype(d)?,
            _ => t.clone(),
        };
        dense.push((name.clone(), t));
    }
    let weights_tmp = temp_path(dir, &format!("model_{step:06}.safetensors"));
    let meta_tmp = temp_path(dir, &format!("meta_{step:06}.json"));
    let written = (|| -> Result<()> {
        safetensors_file::write(&weights_tmp, &dense, quantized)?;
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

/// [`save_checkpoint`] of a model's weights ([`Gpt::named_weights`] and
/// [`Gpt::quantized_weights`]).
pub fn save_model(
    dir: &Path,
    step: u64,
    model: &Gpt,
    meta: Option<&serde_json::Value>,
    opts: &SaveOptions,
) -> Result<CheckpointFiles> {
    save_checkpoint_with_quantized(
        dir,
        step,
        model.config(),
        &model.named_weights()?,
        &model.quantized_weights()?,
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
    /// Hold the weights in this format (`q8_0`/`q4k` quantise the linear layers and keep the
    /// embedding in bf16); `None` keeps each tensor's own dtype.
    pub dtype: Option<WeightDType>,
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
    /// How many tensors of each dtype (`f32`, `bf16`, `q8_0`, …) were written.
    pub dtypes: Vec<(String, usize)>,
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
    // Dense targets convert tensor by tensor; quantised ones go through a loaded model, which
    // picks the format of every linear layer (with its fallbacks) exactly as serving does.
    let (tensors, quantized) = match opts.dtype {
        Some(dtype @ (WeightDType::Q8_0 | WeightDType::Q4K)) => {
            let model = load_checkpoint(&source, dtype, &Device::Cpu)?.model;
            (model.named_weights()?, model.quantized_weights()?)
        }
        dense => {
            let as_dtype = dense.map(WeightDType::dense_dtype);
            let stored = match source.format {
                WeightFormat::Torch => StoredTensors {
                    dense: crate::checkpoint::read_torch_state_dict_as(&source.weights, as_dtype)?,
                    quantized: Default::default(),
                },
                WeightFormat::Safetensors => read_safetensors_as(&source.weights, as_dtype)?,
            };
            validate_stored(&source.weights, &config, &stored)?;
            (stored.dense, stored.quantized.into_iter().collect())
        }
    };
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
        dtype: None,
        force: opts.force,
    };
    // Refuse before writing anything, so a refusal leaves `to` untouched.
    refuse_existing(to, source.step, opts.force)?;
    if let Some(dir) = &tokenizer_dir {
        std::fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
        copy_tokenizer(dir, to, &config, opts.force)?;
    }
    let output = save_checkpoint_with_quantized(
        to,
        source.step,
        &config,
        &tensors,
        &quantized,
        Some(&meta),
        &save,
    )?;
    let mut dtypes: Vec<(String, usize)> = Vec::new();
    let names = tensors
        .iter()
        .map(|(_, t)| dense_name(t.dtype()))
        .chain(quantized.iter().map(|(_, q)| quantized_name(q)));
    for d in names {
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
        tensors: tensors.len() + quantized.len(),
        dtypes,
        bytes,
        tokenizer_from: tokenizer_dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn dense_name(dtype: DType) -> String {
    match dtype {
        DType::F32 => "f32".into(),
        DType::BF16 => "bf16".into(),
        DType::F16 => "f16".into(),
        other => format!("{other:?}"),
    }
}

fn quantized_name(q: &QTensor) -> String {
    match q.dtype() {
        candle_core::quantized::GgmlDType::Q8_0 => "q8_0".into(),
        candle_core::quantized::GgmlDType::Q4K => "q4k".into(),
        other => format!("{other:?}"),
    }
}
