//! Checkpoints on disk: nanochat's `model_<step>.pt` + `meta_<step>.json` (reference §1) and our
//! own `model_<step>.safetensors` + `meta_<step>.json`, side by side in the same directories so
//! one discovery rule finds both.
//!
//! * Discovery is nanochat's: `<base>/{base,mid,chatsft,chatrl}_checkpoints/<tag>/`; the default
//!   tag is the largest `d<N>` (regex at the start of the name, like Python's `re.match`), else the
//!   most recently modified directory; the default step is the largest `model_<N>.pt` (exact
//!   name) — or `.safetensors`, which wins over a `.pt` of the same step because it loads faster.
//! * nanochat's state dict: `_orig_mod.` prefixes are stripped; loading is strict (a missing or
//!   unexpected tensor is an error naming it); bf16 tensors (the `wte` of CUDA-trained releases)
//!   are converted to the requested dtype.
//! * Checkpoints of newer nanochat (`window_pattern`, value embeddings, smear, lambdas, §9) are
//!   detected and refused with a message saying what was found.
//! * A model directory may carry its tokenizer (`tokenizer.pkl`) beside the weights; otherwise
//!   the tokenizer is `<base>/tokenizer/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::gpt::Gpt;
use crate::linear::{WeightDType, Weights};
use crate::state_dict::validate_stored;

/// The training stage a checkpoint comes from, and its directory under the base dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Base,
    Mid,
    Sft,
    Rl,
}

impl Source {
    /// `base`, `mid`, `sft` or `rl`, as `-i/--source` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Source::Base => "base",
            Source::Mid => "mid",
            Source::Sft => "sft",
            Source::Rl => "rl",
        }
    }

    pub fn dir_name(self) -> &'static str {
        match self {
            Source::Base => "base_checkpoints",
            Source::Mid => "mid_checkpoints",
            Source::Sft => "chatsft_checkpoints",
            Source::Rl => "chatrl_checkpoints",
        }
    }

    pub const ALL: [Source; 4] = [Source::Base, Source::Mid, Source::Sft, Source::Rl];
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Source::ALL
            .into_iter()
            .find(|source| source.name() == s)
            .ok_or_else(|| format!("unknown source {s:?} (expected base, mid, sft or rl)"))
    }
}

/// The weight file format of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// nanochat's `torch.save` zip.
    Torch,
    /// Our safetensors file.
    Safetensors,
}

/// The files of one checkpoint step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFiles {
    pub dir: PathBuf,
    pub step: u64,
    pub weights: PathBuf,
    pub format: WeightFormat,
    pub meta: PathBuf,
}

fn io_error(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.into(),
        source,
    }
}

/// nanochat's `find_largest_model`: the largest `d<N>` tag (matched at the start of the name),
/// else the most recently modified sub-directory.
pub fn find_largest_model(stage_dir: &Path) -> Result<String> {
    let entries = std::fs::read_dir(stage_dir).map_err(|e| io_error(stage_dir, e))?;
    let mut tags = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(stage_dir, e))?;
        if entry
            .file_type()
            .map_err(|e| io_error(stage_dir, e))?
            .is_dir()
        {
            if let Some(name) = entry.file_name().to_str() {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                tags.push((name.to_string(), modified));
            }
        }
    }
    let depth = |name: &str| -> Option<u64> {
        let digits: String = name
            .strip_prefix('d')?
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    if let Some((tag, _)) = tags
        .iter()
        .filter_map(|(t, _)| depth(t).map(|d| (t, d)))
        .max_by_key(|(_, d)| *d)
    {
        return Ok(tag.clone());
    }
    tags.into_iter()
        .max_by_key(|(_, modified)| *modified)
        .map(|(t, _)| t)
        .ok_or_else(|| {
            ModelError::NotFound(format!("no model directories in {}", stage_dir.display()))
        })
}

/// Step number of `model_<digits>.<ext>` (the whole name must match).
fn step_of(name: &str, extension: &str) -> Option<u64> {
    let digits = name.strip_prefix("model_")?.strip_suffix(extension)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoint of `step` (default: the last one, nanochat's `find_last_step`) in `dir`.
pub fn checkpoint_in_dir(dir: &Path, step: Option<u64>) -> Result<CheckpointFiles> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut found: Vec<(u64, WeightFormat, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(s) = step_of(&name, ".pt") {
            found.push((s, WeightFormat::Torch, entry.path()));
        } else if let Some(s) = step_of(&name, ".safetensors") {
            found.push((s, WeightFormat::Safetensors, entry.path()));
        }
    }
    let wanted = match step {
        Some(s) => s,
        None => found.iter().map(|(s, _, _)| *s).max().ok_or_else(|| {
            ModelError::NotFound(format!(
                "no model_<step>.pt or model_<step>.safetensors in {}",
                dir.display()
            ))
        })?,
    };
    let (_, format, weights) = found
        .into_iter()
        .filter(|(s, _, _)| *s == wanted)
        .max_by_key(|(_, f, _)| *f == WeightFormat::Safetensors)
        .ok_or_else(|| {
            ModelError::NotFound(format!(
                "no checkpoint of step {wanted} in {}",
                dir.display()
            ))
        })?;
    let meta = dir.join(format!("meta_{wanted:06}.json"));
    if !meta.exists() {
        return Err(ModelError::checkpoint(
            &meta,
            "the meta file of this checkpoint is missing",
        ));
    }
    Ok(CheckpointFiles {
        dir: dir.to_path_buf(),
        step: wanted,
        weights,
        format,
        meta,
    })
}

/// nanochat's `load_model(source, …, model_tag, step)` discovery under `base_dir`.
pub fn find_checkpoint(
    base_dir: &Path,
    source: Source,
    tag: Option<&str>,
    step: Option<u64>,
) -> Result<CheckpointFiles> {
    let stage_dir = base_dir.join(source.dir_name());
    if !stage_dir.is_dir() {
        return Err(ModelError::NotFound(format!(
            "{} does not exist (looked for {:?} checkpoints under NANOCHAT_BASE_DIR={})",
            stage_dir.display(),
            source,
            base_dir.display()
        )));
    }
    let tag = match tag {
        Some(t) => t.to_string(),
        None => find_largest_model(&stage_dir)?,
    };
    checkpoint_in_dir(&stage_dir.join(tag), step)
}

/// A checkpoint named by path: a weights file (`model_<step>.pt` / `.safetensors`) or a
/// directory holding them.
pub fn checkpoint_at_path(path: &Path, step: Option<u64>) -> Result<CheckpointFiles> {
    if path.is_dir() {
        return checkpoint_in_dir(path, step);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (file_step, format) = match (step_of(name, ".pt"), step_of(name, ".safetensors")) {
        (Some(s), _) => (s, WeightFormat::Torch),
        (_, Some(s)) => (s, WeightFormat::Safetensors),
        _ if !path.exists() => {
            return Err(ModelError::NotFound(format!(
                "{} does not exist",
                path.display()
            )))
        }
        _ => {
            return Err(ModelError::checkpoint(
                path,
                "expected a checkpoint directory or a model_<step>.pt / .safetensors file",
            ))
        }
    };
    if !path.exists() {
        return Err(ModelError::NotFound(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let meta = dir.join(format!("meta_{file_step:06}.json"));
    if !meta.exists() {
        return Err(ModelError::checkpoint(
            &meta,
            "the meta file of this checkpoint is missing",
        ));
    }
    Ok(CheckpointFiles {
        dir,
        step: file_step,
        weights: path.to_path_buf(),
        format,
        meta,
    })
}

/// Reads the meta JSON and its `model_config`.
pub fn read_meta(path: &Path) -> Result<(serde_json::Value, Config)> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::checkpoint(path, format!("not valid JSON: {e}")))?;
    let model_config = meta
        .get("model_config")
        .ok_or_else(|| ModelError::checkpoint(path, "no \"model_config\" in the meta file"))?;
    if model_config.get("window_pattern").is_some() {
        return Err(ModelError::checkpoint(
            path,
            "model_config has \"window_pattern\": this checkpoint is from a newer nanochat (2026 architecture with \
             sliding windows, value embeddings, smear and per-layer lambdas), which is not supported yet",
        ));
    }
    let config =
        Config::from_json(model_config).map_err(|e| ModelError::checkpoint(path, e.to_string()))?;
    Ok((meta, config))
}

fn candle_dtype(path: &Path, name: &str, dtype: nanochat_pt::DType) -> Result<DType> {
    match dtype {
        nanochat_pt::DType::F32 => Ok(DType::F32),
        nanochat_pt::DType::BF16 => Ok(DType::BF16),
        nanochat_pt::DType::F16 => Ok(DType::F16),
        other => Err(ModelError::checkpoint(
            path,
            format!("tensor {name:?} has dtype {other:?}, expected a float type"),
        )),
    }
}

/// Reads every tensor of a nanochat `.pt` state dict, keys stripped of `_orig_mod.`.
pub fn read_torch_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    read_torch_state_dict_as(path, None)
}

/// [`read_torch_state_dict`], each tensor converted to `dtype` as soon as it is read (so a
/// whole model is never held twice).
pub fn read_torch_state_dict_as(
    path: &Path,
    dtype: Option<DType>,
) -> Result<Vec<(String, Tensor)>> {
    // TorchError names the file itself; keep only what went wrong.
    let bad = |e: nanochat_pt::TorchError| ModelError::checkpoint(path, e.kind.to_string());
    let mut file = nanochat_pt::TorchFile::open(path).map_err(bad)?;
    let records = file.state_dict().map_err(bad)?;
    let mut tensors = Vec::with_capacity(records.len());
    for (name, record) in records {
        let name = name.strip_prefix("_orig_mod.").unwrap_or(&name).to_string();
        let stored = candle_dtype(path, &name, record.dtype)?;
        let bytes = file.read_tensor_bytes(&record).map_err(bad)?;
        let tensor = Tensor::from_raw_buffer(&bytes, stored, &record.shape, &Device::Cpu)?;
        drop(bytes);
        tensors.push((name, convert_to(tensor, dtype)?));
    }
    Ok(tensors)
}

fn convert_to(tensor: Tensor, dtype: Option<DType>) -> Result<Tensor> {
    Ok(match dtype {
        Some(d) if d != tensor.dtype() => tensor.to_dtype(d)?,
        _ => tensor,
    })
}

/// The dense tensors of one of our safetensors checkpoints (quantised ones are an error here;
/// see [`read_safetensors_as`]).
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let stored = read_safetensors_as(path, None)?;
    if let Some(name) = stored.quantized.keys().next() {
        return Err(ModelError::checkpoint(
            path,
            format!("tensor {name:?} is quantised; load the model with load_checkpoint instead"),
        ));
    }
    Ok(stored.dense)
}

/// The tensors of a safetensors checkpoint: dense ones (converted to `dtype` as they are read)
/// and quantised ones (see [`crate::safetensors_file`]).
pub fn read_safetensors_as(path: &Path, dtype: Option<DType>) -> Result<StoredTensors> {
    let mut stored = crate::safetensors_file::read(path, &mut |t| convert_to(t, dtype))?;
    stored.dense.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(stored)
}

pub use crate::safetensors_file::StoredTensors;

/// A model loaded from disk.
pub struct LoadedModel {
    pub model: Gpt,
    pub config: Config,
    pub meta: serde_json::Value,
    pub files: CheckpointFiles,
}

/// Loads a checkpoint into a model whose linear layers are held in `dtype` (quantising them at
/// load unless the file already stores them quantised).
pub fn load_checkpoint(
    files: &CheckpointFiles,
    dtype: WeightDType,
    device: &Device,
) -> Result<LoadedModel> {
    let (meta, config) = read_meta(&files.meta)?;
    // Dense tensors are converted as they are read: to the model's dtype for f32/bf16; kept as
    // stored for the quantised formats, which quantise from the stored precision.
    let read_as = match dtype {
        WeightDType::F32 | WeightDType::Bf16 => Some(dtype.dense_dtype()),
        _ => None,
    };
    let stored = match files.format {
        WeightFormat::Torch => StoredTensors {
            dense: read_torch_state_dict_as(&files.weights, read_as)?,
            quantized: HashMap::new(),
        },
        WeightFormat::Safetensors => read_safetensors_as(&files.weights, read_as)?,
    };
    validate_stored(&files.weights, &config, &stored)?;
    // A file stored quantised runs in its stored format, whatever `dtype` asked.
    let quantized_formats: Vec<GgmlDType> = stored.quantized.values().map(|q| q.dtype()).collect();
    let dtype = if quantized_formats.contains(&GgmlDType::Q4K) {
        WeightDType::Q4K
    } else if quantized_formats.is_empty() {
        dtype
    } else {
        WeightDType::Q8_0
    };
    let source_dtype = stored
        .dense
        .iter()
        .find(|(n, _)| n != "transformer.wte.weight")
        .map_or(dtype.dense_dtype(), |(_, t)| t.dtype());
    let map: HashMap<String, Tensor> = stored.dense.into_iter().collect();
    // The builder hands out tensors as stored (quantisation reads them at full precision).
    let builder_dtype = read_as.unwrap_or(source_dtype);
    let weights = Weights {
        vb: VarBuilder::from_tensors(map, builder_dtype, device),
        quantized: Arc::new(Mutex::new(stored.quantized)),
        linear: dtype,
    };
    let model = Gpt::load(&config, &weights)
        .map_err(|e| ModelError::checkpoint(&files.weights, e.to_string()))?;
    Ok(LoadedModel {
        model,
        config,
        meta,
        files: files.clone(),
    })
}
