//! Linear layers in the weight formats a model can run in, and the loader that builds them.
//!
//! * `f32` and `bf16` weights are kept as candle tensors (out, in). Few rows (decode, batched
//!   decode) go through our own kernels ([`crate::kernels`]), which read every weight once per
//!   call whatever the row count — candle's f32 matmul packs the weights on each call and its
//!   bf16 matmul widens the whole weight to f32 first. Many rows (prefill) use candle's GEMM for
//!   f32; bf16 stays on our kernel, which is compute-bound there.
//! * `q8_0` weights are repacked at load into our kernel's tiled layout
//!   ([`kernels::Q8_0Weight`]: the ggml bytes reordered, same size) and only that is kept; the
//!   ggml blocks are rebuilt when a checkpoint is saved. The kernel runs on rayon's pool and
//!   reads each weight byte once per call; candle's q8_0 matmul spins its own thread pool
//!   against rayon's and re-reads the weight every 4 rows.
//! * `q4k` is run by candle's quantised matmul (AVX-512 VNNI repacked on this kind of CPU).
//!   Activations go in and out as f32 (both quantise them to int8 per block inside their dot
//!   products). A weight whose input width is not a
//!   multiple of the block (256 for q4k, 32 for q8_0) falls back to the next finer format
//!   (q4k → q8_0 → bf16), so any model shape loads.
//! * Embeddings are not matmuls: they stay f32 in an f32 model and bf16 otherwise (nanochat's own
//!   CUDA releases store `wte` in bf16), and the KV cache is always f32 — nanochat activations
//!   overflow f16, which is never used.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{CpuStorage, DType, Device, Module, Storage, Tensor};
use candle_nn::VarBuilder;

use crate::error::{ModelError, Result};
use crate::kernels;

/// Row counts up to this go through our kernels for f32 weights (decode and batched decode).
const F32_KERNEL_MAX_ROWS: usize = 32;

/// The format linear weights are held in for inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDType {
    F32,
    Bf16,
    Q8_0,
    Q4K,
}

impl WeightDType {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4k",
        }
    }

    /// The dtype of the tensors that stay dense: embeddings, and fallbacks.
    pub fn dense_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            _ => DType::BF16,
        }
    }

    /// The ggml format, for the quantised ones.
    pub fn ggml(self) -> Option<GgmlDType> {
        match self {
            Self::Q8_0 => Some(GgmlDType::Q8_0),
            Self::Q4K => Some(GgmlDType::Q4K),
            _ => None,
        }
    }

    /// Parses `f32`, `bf16`, `q8_0` or `q4k` (also `bfloat16`, `float32`, `q8`, `q4_k`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "q8_0" | "q8" => Ok(Self::Q8_0),
            "q4k" | "q4_k" => Ok(Self::Q4K),
            "f16" | "float16" | "fp16" => {
                Err("f16 is not supported: nanochat's activations overflow it (use bf16)".into())
            }
            other => Err(format!(
                "unknown weight dtype {other:?} (expected f32, bf16, q8_0 or q4k)"
            )),
        }
    }
}

impl std::fmt::Display for WeightDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WeightDType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s)
    }
}

/// A bias-free linear layer, weight (out, in) like `nn.Linear`.
#[derive(Clone)]
pub struct Linear {
    weight: LinearWeight,
    in_dim: usize,
    out_dim: usize,
}

#[derive(Clone)]
enum LinearWeight {
    /// (out_features, in_features), f32 or bf16.
    Dense(Tensor),
    /// (out_features, in_features) in ggml blocks other than q8_0 (q4k), split by output rows
    /// into one slice per compute thread, each (rows_i, in_features) with candle's matmul over
    /// it: the slices run in parallel on rayon's pool and candle's own pool stays at one
    /// thread (see the CLI's main). Slices concatenated in order are the whole tensor.
    Quantized { parts: Vec<(Arc<QTensor>, QMatMul)> },
    /// (out_features, in_features) q8_0, in our kernel's layout.
    Q8_0(Arc<kernels::Q8_0Weight>),
}

impl Linear {
    /// A dense layer from its (out, in) weight.
    pub fn from_weight(weight: Tensor) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        Ok(Self {
            weight: LinearWeight::Dense(weight),
            in_dim,
            out_dim,
        })
    }

    /// A quantised layer; the tensor's shape is (out, in).
    pub fn from_qtensor(qtensor: Arc<QTensor>) -> Result<Self> {
        let (out_dim, in_dim) = qtensor.shape().dims2()?;
        if qtensor.dtype() == GgmlDType::Q8_0 {
            let packed = kernels::Q8_0Weight::from_ggml(&qtensor.data()?, out_dim, in_dim)
                .map_err(|e| ModelError::BadInput(format!("q8_0 weight: {e}")))?;
            return Ok(Self {
                weight: LinearWeight::Q8_0(Arc::new(packed)),
                in_dim,
                out_dim,
            });
        }
        let format = qtensor.dtype();
        let row_bytes = in_dim / format.block_size() * format.type_size();
        let slices = rayon::current_num_threads().clamp(1, out_dim.max(1));
        let parts = if slices == 1 {
            vec![(qtensor.clone(), QMatMul::from_arc(qtensor)?)]
        } else {
            let data = qtensor.data()?;
            let mut parts = Vec::with_capacity(slices);
            for i in 0..slices {
                let (start, end) = (out_dim * i / slices, out_dim * (i + 1) / slices);
                let bytes = data[start * row_bytes..end * row_bytes].to_vec();
                let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, format)?;
                let part = Arc::new(QTensor::new(storage, (end - start, in_dim))?);
                parts.push((part.clone(), QMatMul::from_arc(part)?));
            }
            parts
        };
        Ok(Self {
            weight: LinearWeight::Quantized { parts },
            in_dim,
            out_dim,
        })
    }

    /// One layer computing `parts` side by side: their weights stacked along the output rows
    /// (all parts must share the input width and, when quantised, the format). One call reads
    /// them all, which costs less than three small calls (q, k and v).
    pub fn stack(parts: &[Linear]) -> Result<Linear> {
        let first = parts
            .first()
            .ok_or_else(|| ModelError::BadInput("Linear::stack needs at least one part".into()))?;
        let in_dim = first.in_dim;
        if parts.iter().any(|p| p.in_dim != in_dim) {
            return Err(ModelError::BadInput(
                "Linear::stack: the parts have different input widths".into(),
            ));
        }
        let dense: Option<Vec<&Tensor>> = parts.iter().map(|p| p.weight()).collect();
        if let Some(weights) = dense {
            let dtype = weights[0].dtype();
            let weights: Vec<Tensor> = weights
                .into_iter()
                .map(|w| w.to_dtype(dtype))
                .collect::<candle_core::Result<_>>()?;
            return Linear::from_weight(Tensor::cat(&weights, 0)?);
        }
        let q8: Option<Vec<&kernels::Q8_0Weight>> = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Q8_0(w) => Some(&**w),
                _ => None,
            })
            .collect();
        if let Some(q8) = q8 {
            let stacked = kernels::Q8_0Weight::stack(&q8)
                .map_err(|e| ModelError::BadInput(format!("Linear::stack: {e}")))?;
            return Ok(Linear::from_q8_0(stacked));
        }
        let quantized: Option<Vec<Arc<QTensor>>> = parts.iter().map(|p| p.qtensor()).collect();
        match quantized {
            Some(qs) if qs.iter().all(|q| q.dtype() == qs[0].dtype()) => {
                // Rows are whole blocks (the input width is a multiple of the block size), so
                // stacking rows is concatenating their bytes.
                let mut bytes = Vec::new();
                for q in &qs {
                    bytes.extend_from_slice(&q.data()?);
                }
                let out: usize = parts.iter().map(|p| p.out_dim).sum();
                let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, qs[0].dtype())?;
                Linear::from_qtensor(Arc::new(QTensor::new(storage, (out, in_dim))?))
            }
            // Parts of one model's attention share their input width, hence their format.
            _ => Err(ModelError::BadInput(
                "Linear::stack: the parts are held in different formats".into(),
            )),
        }
    }

    /// The layer of output rows `start..start + len` (a view for dense weights, a copy of the
    /// blocks for quantised ones).
    pub fn rows(&self, start: usize, len: usize) -> Result<Linear> {
        if start + len > self.out_dim {
            return Err(ModelError::BadInput(format!(
                "rows {start}..{} of a layer with {} outputs",
                start + len,
                self.out_dim
            )));
        }
        match &self.weight {
            LinearWeight::Dense(w) => Linear::from_weight(w.narrow(0, start, len)?),
            LinearWeight::Q8_0(w) => {
                Ok(Linear::from_q8_0(w.rows(start, len).map_err(|e| {
                    ModelError::BadInput(format!("Linear::rows: {e}"))
                })?))
            }
            LinearWeight::Quantized { .. } => {
                let qtensor = self.qtensor().expect("a quantised layer");
                let format = qtensor.dtype();
                let row_bytes = self.in_dim / format.block_size() * format.type_size();
                let data = qtensor.data()?;
                let bytes = data[start * row_bytes..(start + len) * row_bytes].to_vec();
                let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, format)?;
                Linear::from_qtensor(Arc::new(QTensor::new(storage, (len, self.in_dim))?))
            }
        }
    }

    /// The dense weight (out, in); `None` for a quantised layer.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            LinearWeight::Dense(w) => Some(w),
            LinearWeight::Quantized { .. } | LinearWeight::Q8_0(_) => None,
        }
    }

    /// A q8_0 layer from our kernel's weight.
    fn from_q8_0(weight: kernels::Q8_0Weight) -> Self {
        Self {
            in_dim: weight.k(),
            out_dim: weight.n(),
            weight: LinearWeight::Q8_0(Arc::new(weight)),
        }
    }

    /// The quantised weight in ggml blocks; `None` for a dense layer. A q8_0 weight is rebuilt
    /// from our kernel's layout on each call (for saving; it is not kept).
    pub fn qtensor(&self) -> Option<Arc<QTensor>> {
        match &self.weight {
            LinearWeight::Quantized { parts } if parts.len() == 1 => Some(parts[0].0.clone()),
            LinearWeight::Quantized { parts } => {
                let format = parts[0].0.dtype();
                let mut bytes = Vec::new();
                for (part, _) in parts {
                    bytes.extend_from_slice(&part.data().expect("CPU quantised storage"));
                }
                // Whole rows of one format, so the concatenation is the (out, in) tensor.
                let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, format)
                    .expect("blocks concatenated from valid slices");
                let tensor = QTensor::new(storage, (self.out_dim, self.in_dim))
                    .expect("blocks concatenated from valid slices");
                Some(Arc::new(tensor))
            }
            LinearWeight::Q8_0(w) => {
                let bytes = Cow::Owned(w.to_ggml());
                // The bytes are whole q8_0 blocks of an (out, in) tensor by construction.
                let storage = QStorage::from_data(bytes, &Device::Cpu, GgmlDType::Q8_0)
                    .expect("q8_0 blocks rebuilt from a valid layout");
                let tensor = QTensor::new(storage, (self.out_dim, self.in_dim))
                    .expect("q8_0 blocks rebuilt from a valid layout");
                Some(Arc::new(tensor))
            }
            LinearWeight::Dense(_) => None,
        }
    }

    /// Bytes of weight read by one forward call.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            LinearWeight::Quantized { parts } => {
                parts.iter().map(|(q, _)| q.storage_size_in_bytes()).sum()
            }
            LinearWeight::Q8_0(w) => w.size_in_bytes(),
        }
    }

    /// x (…, in) → (…, out) in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.in_dim) {
            return Err(ModelError::BadInput(format!(
                "linear layer expects inputs of width {}, got shape {dims:?}",
                self.in_dim
            )));
        }
        let rows = x.elem_count() / self.in_dim;
        let x2 = x.reshape((rows, self.in_dim))?.to_dtype(DType::F32)?;
        let y = match &self.weight {
            LinearWeight::Dense(w) => match w.dtype() {
                DType::BF16 => self.kernel(&x2, w)?,
                DType::F32 if rows <= F32_KERNEL_MAX_ROWS => self.kernel(&x2, w)?,
                _ => x2
                    .to_dtype(w.dtype())?
                    .matmul(&w.t()?)?
                    .to_dtype(DType::F32)?,
            },
            LinearWeight::Quantized { parts } if parts.len() == 1 => parts[0].1.forward(&x2)?,
            LinearWeight::Quantized { parts } => {
                use rayon::prelude::*;
                let outs: Vec<Tensor> = parts
                    .par_iter()
                    .map(|(_, matmul)| matmul.forward(&x2))
                    .collect::<candle_core::Result<_>>()?;
                Tensor::cat(&outs, 1)?
            }
            LinearWeight::Q8_0(w) => {
                let x2 = x2.contiguous()?;
                let (storage, layout) = x2.storage_and_layout();
                let xs = match (&*storage, layout.contiguous_offsets()) {
                    (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => &v[start..end],
                    _ => {
                        return Err(ModelError::BadInput(
                            "linear: expected contiguous f32 inputs on the CPU".into(),
                        ))
                    }
                };
                let mut y = vec![0f32; rows * self.out_dim];
                w.matmul(xs, &mut y, rows)
                    .map_err(|e| ModelError::BadInput(format!("linear: {e}")))?;
                Tensor::from_vec(y, (rows, self.out_dim), x.device())?
            }
        };
        let mut out_dims = dims;
        *out_dims.last_mut().expect("checked above") = self.out_dim;
        Ok(y.reshape(out_dims)?)
    }

    /// Our CPU kernel: x (rows, in) f32 · wᵀ with w (out, in) f32 or bf16.
    fn kernel(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (rows, k, n) = (x.dim(0)?, self.in_dim, self.out_dim);
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        let mut y = vec![0f32; rows * n];
        let (x_storage, x_layout) = x.storage_and_layout();
        let (w_storage, w_layout) = w.storage_and_layout();
        let range = |layout: &candle_core::Layout| {
            layout
                .contiguous_offsets()
                .ok_or_else(|| ModelError::BadInput("linear: non-contiguous tensor".into()))
        };
        let (xs, xe) = range(x_layout)?;
        let (ws, we) = range(w_layout)?;
        let outcome = match (&*x_storage, &*w_storage) {
            (Storage::Cpu(CpuStorage::F32(xv)), Storage::Cpu(CpuStorage::BF16(wv))) => {
                kernels::matmul_bf16_nt(&xv[xs..xe], &wv[ws..we], &mut y, rows, k, n)
            }
            (Storage::Cpu(CpuStorage::F32(xv)), Storage::Cpu(CpuStorage::F32(wv))) => {
                kernels::matmul_f32_nt(&xv[xs..xe], &wv[ws..we], &mut y, rows, k, n)
            }
            _ => {
                drop((x_storage, w_storage));
                return Ok(x
                    .to_dtype(w.dtype())?
                    .matmul(&w.t()?)?
                    .to_dtype(DType::F32)?);
            }
        };
        outcome.map_err(|e| ModelError::BadInput(format!("linear: {e}")))?;
        Ok(Tensor::from_vec(y, (rows, n), x.device())?)
    }
}

/// Where a model's weights come from: dense tensors through a `VarBuilder` (its dtype is the
/// dense dtype), tensors stored already quantised (by full name), and the format linear weights
/// are to be held in.
#[derive(Clone)]
pub struct Weights<'a> {
    pub vb: VarBuilder<'a>,
    /// Taken out as each layer is built, so a stored tensor is freed once repacked (otherwise
    /// loading a q8_0 checkpoint held both copies of every weight at its peak).
    pub quantized: Arc<Mutex<HashMap<String, Arc<QTensor>>>>,
    pub linear: WeightDType,
}

impl<'a> Weights<'a> {
    /// Dense weights only, held in the builder's dtype (f32 or bf16).
    pub fn dense(vb: VarBuilder<'a>) -> Self {
        let linear = if vb.dtype() == DType::BF16 {
            WeightDType::Bf16
        } else {
            WeightDType::F32
        };
        Self {
            vb,
            quantized: Arc::default(),
            linear,
        }
    }

    pub fn pp(&self, name: impl ToString) -> Self {
        Self {
            vb: self.vb.pp(name),
            quantized: self.quantized.clone(),
            linear: self.linear,
        }
    }

    /// The linear layer `<prefix>.weight`, (out, in), in the requested format.
    pub fn linear(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let name = format!("{}.weight", self.vb.prefix());
        let stored = self
            .quantized
            .lock()
            .map_err(|_| ModelError::BadInput("the quantised weights' lock is poisoned".into()))?
            .remove(&name);
        if let Some(q) = stored {
            let linear = Linear::from_qtensor(q.clone())?;
            if (linear.out_dim, linear.in_dim) != (out_dim, in_dim) {
                return Err(ModelError::BadInput(format!(
                    "{name} is stored with shape {:?}, expected ({out_dim}, {in_dim})",
                    q.shape()
                )));
            }
            return Ok(linear);
        }
        let dense = self.vb.get((out_dim, in_dim), "weight")?;
        quantize_linear(dense, self.linear)
    }
}

/// Holds `dense` (out, in) in `dtype`: as is for f32/bf16, else quantised — falling back to a
/// finer format when the input width does not fit the block size.
pub fn quantize_linear(dense: Tensor, dtype: WeightDType) -> Result<Linear> {
    let in_dim = dense.dim(1)?;
    let format = match dtype {
        WeightDType::Q4K if in_dim % GgmlDType::Q4K.block_size() == 0 => Some(GgmlDType::Q4K),
        WeightDType::Q4K | WeightDType::Q8_0 if in_dim % GgmlDType::Q8_0.block_size() == 0 => {
            Some(GgmlDType::Q8_0)
        }
        _ => None,
    };
    match format {
        Some(format) => Linear::from_qtensor(Arc::new(QTensor::quantize(&dense, format)?)),
        None => Linear::from_weight(dense.to_dtype(dtype.dense_dtype())?),
    }
}
