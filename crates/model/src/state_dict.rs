//! What a nanochat model's state dict contains: the tensor names (nanochat's order) and shapes a
//! config implies, and the check every load and save runs — no tensor of the newer (2026)
//! architecture, none missing or unexpected, every shape right, every dtype a float type —
//! with errors naming the file and the tensor.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::safetensors_file::StoredTensors;

/// Tensor names a nanochat model of `cfg` has, in nanochat's state-dict order.
pub fn expected_tensor_names(cfg: &Config) -> Vec<String> {
    let mut names = vec!["transformer.wte.weight".to_string()];
    for i in 0..cfg.n_layer {
        for part in [
            "attn.c_q",
            "attn.c_k",
            "attn.c_v",
            "attn.c_proj",
            "mlp.c_fc",
            "mlp.c_proj",
        ] {
            names.push(format!("transformer.h.{i}.{part}.weight"));
        }
    }
    if !cfg.tie_embeddings {
        names.push("lm_head.weight".to_string());
    }
    names
}

pub(crate) fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
}

/// Name fragments of tensors only newer nanochat checkpoints have (reference §9.2).
const NEWER_FORMAT_KEYS: [&str; 7] = [
    "resid_lambdas",
    "x0_lambdas",
    "smear_lambda",
    "backout_lambda",
    "smear_gate",
    "value_embeds",
    "ve_gate",
];

/// The shape every tensor of a `cfg` model must have, by name.
pub fn expected_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (c, hd, hidden) = (cfg.n_embd, cfg.head_dim(), cfg.mlp_hidden());
    expected_tensor_names(cfg)
        .into_iter()
        .map(|name| {
            let shape = if name == "transformer.wte.weight" || name == "lm_head.weight" {
                vec![cfg.vocab_size, c]
            } else if name.ends_with("attn.c_q.weight") {
                vec![cfg.n_head * hd, c]
            } else if name.ends_with("attn.c_k.weight") || name.ends_with("attn.c_v.weight") {
                vec![cfg.n_kv_head * hd, c]
            } else if name.ends_with("attn.c_proj.weight") {
                vec![c, c]
            } else if name.ends_with("mlp.c_fc.weight") {
                vec![hidden, c]
            } else {
                vec![c, hidden] // mlp.c_proj
            };
            (name, shape)
        })
        .collect()
}

/// Checks a state dict against `cfg`: no newer-nanochat tensors, none missing or unexpected,
/// every shape right, every dtype a float type. Errors name `path` and the tensor.
pub fn validate_tensors(path: &Path, cfg: &Config, tensors: &[(String, Tensor)]) -> Result<()> {
    let entries: Vec<Entry> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.dims().to_vec(), Some(t.dtype())))
        .collect();
    validate_entries(path, cfg, &entries)
}

/// [`validate_tensors`] for a file's dense and quantised tensors together.
pub fn validate_stored(path: &Path, cfg: &Config, stored: &StoredTensors) -> Result<()> {
    let mut entries: Vec<Entry> = stored
        .dense
        .iter()
        .map(|(n, t)| (n.as_str(), t.dims().to_vec(), Some(t.dtype())))
        .collect();
    entries.extend(
        stored
            .quantized
            .iter()
            .map(|(n, q)| (n.as_str(), q.shape().dims().to_vec(), None)),
    );
    validate_entries(path, cfg, &entries)
}

/// A tensor's name, shape and dtype (`None`: quantised).
type Entry<'a> = (&'a str, Vec<usize>, Option<DType>);

fn validate_entries(path: &Path, cfg: &Config, tensors: &[Entry]) -> Result<()> {
    let bad = |message: String| Err(ModelError::checkpoint(path, message));
    if let Some((newer, _, _)) = tensors
        .iter()
        .find(|(n, _, _)| NEWER_FORMAT_KEYS.iter().any(|k| n.contains(k)))
    {
        return bad(format!(
            "has tensor {newer:?}: this checkpoint is from a newer nanochat (2026 architecture), \
             which is not supported yet"
        ));
    }
    let expected = expected_shapes(cfg);
    let by_name: HashMap<&str, &Entry> = tensors.iter().map(|e| (e.0, e)).collect();
    if by_name.len() != tensors.len() {
        let mut seen = std::collections::HashSet::new();
        let dup = tensors.iter().find(|e| !seen.insert(e.0)).map(|e| e.0);
        return bad(format!(
            "tensor {:?} appears twice",
            dup.unwrap_or_default()
        ));
    }
    for (name, shape) in &expected {
        let Some((_, dims, dtype)) = by_name.get(name.as_str()) else {
            return bad(format!("tensor {name:?} is missing"));
        };
        if dims != shape {
            return bad(format!(
                "tensor {name:?} has shape {dims:?}, expected {shape:?} for this model_config"
            ));
        }
        if let Some(dtype) = dtype.filter(|d| !is_float(*d)) {
            return bad(format!(
                "tensor {name:?} has dtype {dtype:?}, expected a float type (f32, bf16 or f16)"
            ));
        }
    }
    if let Some((extra, _, _)) = tensors
        .iter()
        .find(|(n, _, _)| !expected.iter().any(|(e, _)| e == n))
    {
        return bad(format!("unexpected tensor {extra:?} for this model_config"));
    }
    Ok(())
}
