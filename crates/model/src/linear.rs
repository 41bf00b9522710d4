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
//! * `q4k` likewise ([`kernels::Q4KWeight`]: ggml's 144 bytes per 256 values, reordered);
//!   candle's q4k matmul read the weights at about half the speed (12–14 GB/s against 26–33 at
//!   one row, measured with `--example q4k_bench`). Activations go in and out as f32 (both
//!   kernels quantise them to int8 per block inside their dot products). A weight whose input
//!   width is not a multiple of the block (256 for q4k, 32 for q8_0) falls back to the next
//!   finer format (q4k → q8_0 → bf16), so any model shape loads.
//! * Embeddings are not matmuls: they stay f32 in an f32 model and bf16 otherwise (nanochat's own
//!   CUDA releases store `wte` in bf16), and so does the KV cache ([`crate::Gpt::kv_dtype`]) —
//!   nanochat activations overflow f16, which is never used.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
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
    /// (out_features, in_features) q8_0, in our kernel's layout.
    Q8_0(Arc<kernels::Q8_0Weight>),
    /// (out_features, in_features) q4k, in our kernel's layout.
    Q4K(Arc<kernels::Q4KWeight>),
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

    /// A quantised layer (q8_0 or q4k); the tensor's shape is (out, in). The blocks are
    /// repacked into our kernel's layout; the tensor itself is not kept.
    pub fn from_qtensor(qtensor: Arc<QTensor>) -> Result<Self> {
        let (out_dim, in_dim) = qtensor.shape().dims2()?;
        let bytes = qtensor.data()?;
        let bad = |e: kernels::KernelError| {
            ModelError::BadInput(format!("{:?} weight: {e}", qtensor.dtype()))
        };
        let weight = match qtensor.dtype() {
            GgmlDType::Q8_0 => LinearWeight::Q8_0(Arc::new(
                kernels::Q8_0Weight::from_ggml(&bytes, out_dim, in_dim).map_err(bad)?,
            )),
            GgmlDType::Q4K => LinearWeight::Q4K(Arc::new(
                kernels::Q4KWeight::from_ggml(&bytes, out_dim, in_dim).map_err(bad)?,
            )),
            other => {
                return Err(ModelError::BadInput(format!(
                    "quantised weights in {other:?} are not supported (q8_0 and q4k are)"
                )))
            }
        };
        Ok(Self {
            weight,
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
        let stack_err =
            |e: kernels::KernelError| ModelError::BadInput(format!("Linear::stack: {e}"));
        let q8: Option<Vec<&kernels::Q8_0Weight>> = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Q8_0(w) => Some(&**w),
                _ => None,
            })
            .collect();
        if let Some(q8) = q8 {
            let stacked = kernels::Q8_0Weight::stack(&q8).map_err(stack_err)?;
            return Ok(Linear::from_q8_0(stacked));
        }
        let q4k: Option<Vec<&kernels::Q4KWeight>> = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Q4K(w) => Some(&**w),
                _ => None,
            })
            .collect();
        if let Some(q4k) = q4k {
            let stacked = kernels::Q4KWeight::stack(&q4k).map_err(stack_err)?;
            return Ok(Linear::from_q4k(stacked));
        }
        // Parts of one model's attention share their input width, hence their format.
        Err(ModelError::BadInput(
            "Linear::stack: the parts are held in different formats".into(),
        ))
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
        let rows_err = |e: kernels::KernelError| ModelError::BadInput(format!("Linear::rows: {e}"));
        match &self.weight {
            LinearWeight::Dense(w) => Linear::from_weight(w.narrow(0, start, len)?),
            LinearWeight::Q8_0(w) => Ok(Linear::from_q8_0(w.rows(start, len).map_err(rows_err)?)),
            LinearWeight::Q4K(w) => Ok(Linear::from_q4k(w.rows(start, len).map_err(rows_err)?)),
        }
    }

    /// The dense weight (out, in); `None` for a quantised layer.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            LinearWeight::Dense(w) => Some(w),
            LinearWeight::Q8_0(_) | LinearWeight::Q4K(_) => None,
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

    /// A q4k layer from our kernel's weight.
    fn from_q4k(weight: kernels::Q4KWeight) -> Self {
        Self {
            in_dim: weight.k(),
            out_dim: weight.n(),
            weight: LinearWeight::Q4K(Arc::new(weight)),
        }
    }

    /// The quantised weight in ggml blocks; `None` for a dense layer. Rebuilt from our kernel's
    /// layout on each call (for saving; the ggml blocks are not kept).
    pub fn qtensor(&self) -> Option<Arc<QTensor>> {
        let (bytes, format) = match &self.weight {
            LinearWeight::Q8_0(w) => (w.to_ggml(), GgmlDType::Q8_0),
            LinearWeight::Q4K(w) => (w.to_ggml(), GgmlDType::Q4K),
            LinearWeight::Dense(_) => return None,
        };
        // The bytes are whole blocks of an (out, in) tensor by construction.
        let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, format)
            .expect("ggml blocks rebuilt from a valid layout");
        let tensor = QTensor::new(storage, (self.out_dim, self.in_dim))
            .expect("ggml blocks rebuilt from a valid layout");
        Some(Arc::new(tensor))
    }

    /// Bytes of weight read by one forward call.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            LinearWeight::Q8_0(w) => w.size_in_bytes(),
            LinearWeight::Q4K(w) => w.size_in_bytes(),
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
            LinearWeight::Q8_0(w) => self.quantized(&x2, rows, |xs, y| w.matmul(xs, y, rows))?,
            LinearWeight::Q4K(w) => self.quantized(&x2, rows, |xs, y| w.matmul(xs, y, rows))?,
        };
        let mut out_dims = dims;
        *out_dims.last_mut().expect("checked above") = self.out_dim;
        Ok(y.reshape(out_dims)?)
    }

    /// One of our quantised kernels, `matmul(x, y)`, on x (rows, in) f32 → (rows, out).
    fn quantized(
        &self,
        x: &Tensor,
        rows: usize,
        matmul: impl Fn(&[f32], &mut [f32]) -> std::result::Result<(), kernels::KernelError>,
    ) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let xs = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => &v[start..end],
            _ => {
                return Err(ModelError::BadInput(
                    "linear: expected contiguous f32 inputs on the CPU".into(),
                ))
            }
        };
        let mut y = vec![0f32; rows * self.out_dim];
        matmul(xs, &mut y).map_err(|e| ModelError::BadInput(format!("linear: {e}")))?;
        Ok(Tensor::from_vec(y, (rows, self.out_dim), x.device())?)
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
