//! Our checkpoint weights file: safetensors, with quantised tensors stored as their raw ggml
//! blocks.
//!
//! * A quantised tensor `name` is a `U8` tensor of its block bytes; the header's
//!   `__metadata__["nanochat.quantized"]` (a JSON string) maps each such name to its format and
//!   logical shape: `{"transformer.h.0.attn.c_q.weight": {"format": "q8_0", "shape": [1280, 1280]}}`.
//!   Loading one is a copy of its bytes: no quantisation at load time.
//! * Reading goes tensor by tensor straight from the file (header parsed here, each tensor read
//!   at its offset), so loading holds the model once plus one tensor in flight — not the whole
//!   file and the model side by side.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The metadata key listing quantised tensors.
pub const QUANTIZED_KEY: &str = "nanochat.quantized";

/// Tensors read from a weights file.
#[derive(Default)]
pub struct StoredTensors {
    pub dense: Vec<(String, Tensor)>,
    pub quantized: HashMap<String, Arc<QTensor>>,
}

#[derive(Serialize, Deserialize)]
struct QuantizedEntry {
    format: String,
    shape: Vec<usize>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

fn ggml_format(name: &str) -> Option<GgmlDType> {
    match name {
        "q8_0" => Some(GgmlDType::Q8_0),
        "q4k" => Some(GgmlDType::Q4K),
        _ => None,
    }
}

fn ggml_name(format: GgmlDType) -> Result<&'static str> {
    match format {
        GgmlDType::Q8_0 => Ok("q8_0"),
        GgmlDType::Q4K => Ok("q4k"),
        other => Err(ModelError::BadInput(format!(
            "cannot store a {other:?} tensor (only q8_0 and q4k)"
        ))),
    }
}

fn dtype_of(path: &Path, name: &str, text: &str) -> Result<DType> {
    match text {
        "F32" => Ok(DType::F32),
        "BF16" => Ok(DType::BF16),
        "F16" => Ok(DType::F16),
        "U8" => Ok(DType::U8),
        other => Err(ModelError::checkpoint(
            path,
            format!("tensor {name:?} has dtype {other}, expected F32, BF16 or F16"),
        )),
    }
}

/// Reads every tensor of `path`; each dense tensor goes through `convert` as soon as it is read.
pub fn read(
    path: &Path,
    convert: &mut dyn FnMut(Tensor) -> Result<Tensor>,
) -> Result<StoredTensors> {
    let io = |e: std::io::Error| ModelError::Io {
        path: path.into(),
        source: e,
    };
    let bad = |message: String| ModelError::checkpoint(path, message);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("too short for a safetensors file".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100 << 20 || 8 + header_len > file_len {
        return Err(bad(format!(
            "not a safetensors file (header length {header_len})"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let mut entries: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("bad safetensors header: {e}")))?;
    let quantized_index: HashMap<String, QuantizedEntry> = match entries.remove("__metadata__") {
        Some(serde_json::Value::Object(meta)) => match meta.get(QUANTIZED_KEY) {
            Some(serde_json::Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| bad(format!("bad {QUANTIZED_KEY} metadata: {e}")))?,
            _ => HashMap::new(),
        },
        _ => HashMap::new(),
    };
    let data_start = 8 + header_len;
    let entries: Vec<(String, HeaderEntry)> = entries
        .into_iter()
        .map(|(name, value)| {
            let entry: HeaderEntry = serde_json::from_value(value)
                .map_err(|e| bad(format!("bad header entry for {name:?}: {e}")))?;
            Ok((name, entry))
        })
        .collect::<Result<_>>()?;
    // Tensors are read in parallel (positioned reads): filling fresh memory is page-fault
    // bound, and faults on two cores go twice as fast.
    use rayon::prelude::*;
    let file = &file;
    let read: Vec<(String, Loaded)> = entries
        .into_par_iter()
        .map(|(name, entry)| {
            let loaded = read_entry(
                path,
                file,
                data_start,
                file_len,
                &name,
                &entry,
                &quantized_index,
            )?;
            Ok((name, loaded))
        })
        .collect::<Result<_>>()?;
    let mut out = StoredTensors::default();
    for (name, loaded) in read {
        match loaded {
            Loaded::Dense(tensor) => out.dense.push((name, convert(tensor)?)),
            Loaded::Quantized(q) => {
                out.quantized.insert(name, Arc::new(q));
            }
        }
    }
    Ok(out)
}

enum Loaded {
    Dense(Tensor),
    Quantized(QTensor),
}

/// Reads one tensor of the file at its offset.
fn read_entry(
    path: &Path,
    file: &std::fs::File,
    data_start: u64,
    file_len: u64,
    name: &str,
    entry: &HeaderEntry,
    quantized_index: &HashMap<String, QuantizedEntry>,
) -> Result<Loaded> {
    let bad = |message: String| ModelError::checkpoint(path, message);
    let io = |e: std::io::Error| ModelError::Io {
        path: path.into(),
        source: e,
    };
    let (begin, end) = entry.data_offsets;
    if begin > end || data_start + end > file_len {
        return Err(bad(format!("tensor {name:?} lies outside the file")));
    }
    let (offset, byte_len) = (data_start + begin, (end - begin) as usize);
    let dtype = dtype_of(path, name, &entry.dtype)?;
    if let Some(q) = quantized_index.get(name) {
        let format = ggml_format(&q.format).ok_or_else(|| {
            bad(format!(
                "tensor {name:?} has unknown quantised format {:?}",
                q.format
            ))
        })?;
        let elements: usize = q.shape.iter().product();
        let expected = elements / format.block_size() * format.type_size();
        if dtype != DType::U8
            || byte_len != expected
            || !elements.is_multiple_of(format.block_size())
        {
            return Err(bad(format!(
                "quantised tensor {name:?} ({} {:?}) should be {expected} bytes, found {byte_len}",
                q.format, q.shape
            )));
        }
        let mut bytes = vec![0u8; byte_len];
        file.read_exact_at(&mut bytes, offset).map_err(io)?;
        let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, format)?;
        return Ok(Loaded::Quantized(QTensor::new(storage, q.shape.clone())?));
    }
    let expected = entry.shape.iter().product::<usize>() * dtype.size_in_bytes();
    if byte_len != expected {
        return Err(bad(format!(
            "tensor {name:?} {:?} {} should be {expected} bytes, found {byte_len}",
            entry.shape, entry.dtype
        )));
    }
    Ok(Loaded::Dense(
        read_dense(file, offset, dtype, &entry.shape).map_err(io)?,
    ))
}

/// Reads one little-endian tensor straight into the buffer the tensor will own: one pass over
/// the bytes, no intermediate copy (all our targets are little-endian, like the file).
fn read_dense(
    file: &std::fs::File,
    offset: u64,
    dtype: DType,
    shape: &[usize],
) -> std::io::Result<Tensor> {
    fn read_vec<T: bytemuck::Pod + candle_core::WithDType>(
        file: &std::fs::File,
        offset: u64,
        shape: &[usize],
    ) -> std::io::Result<Tensor> {
        let mut values = vec![T::zeroed(); shape.iter().product()];
        file.read_exact_at(bytemuck::cast_slice_mut(&mut values), offset)?;
        Tensor::from_vec(values, shape, &Device::Cpu).map_err(std::io::Error::other)
    }
    match dtype {
        DType::F32 => read_vec::<f32>(file, offset, shape),
        DType::BF16 => read_vec::<half::bf16>(file, offset, shape),
        DType::F16 => read_vec::<half::f16>(file, offset, shape),
        _ => read_vec::<u8>(file, offset, shape),
    }
}

/// Writes dense and quantised tensors to `path` (see the module documentation).
pub fn write(
    path: &Path,
    dense: &[(String, Tensor)],
    quantized: &[(String, Arc<QTensor>)],
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = dense.to_vec();
    let mut index: HashMap<String, QuantizedEntry> = HashMap::new();
    for (name, q) in quantized {
        let bytes = q.data()?.into_owned();
        let n = bytes.len();
        tensors.push((name.clone(), Tensor::from_vec(bytes, n, &Device::Cpu)?));
        index.insert(
            name.clone(),
            QuantizedEntry {
                format: ggml_name(q.dtype())?.to_string(),
                shape: q.shape().dims().to_vec(),
            },
        );
    }
    let metadata = if index.is_empty() {
        None
    } else {
        let text = serde_json::to_string(&index)
            .map_err(|e| ModelError::checkpoint(path, e.to_string()))?;
        Some(HashMap::from([(QUANTIZED_KEY.to_string(), text)]))
    };
    safetensors::serialize_to_file(tensors, metadata, path)
        .map_err(|e| ModelError::checkpoint(path, e.to_string()))
}
