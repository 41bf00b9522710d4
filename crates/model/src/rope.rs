//! Rotary position embeddings exactly as nanochat@01f5f10 computes them (reference §3.2).
//!
//! * Tables cover `10 · sequence_len` positions and are **rounded to bf16 even in fp32 models**
//!   (nanochat asserts bf16 tables); the rounded values are then used in f32 arithmetic.
//! * The angle is computed in f32 exactly like torch: `inv_freq = f32(1) / f32(base^(2j/hd))`
//!   with the power correctly rounded to f32, then `angle = f32(t) · inv_freq` — one f32
//!   multiply. Doing the angle in f64 instead changes thousands of bf16 entries. cos/sin of that
//!   f32 angle are taken in f64, rounded to f32 and then to bf16; this reproduces torch's CPU table
//!   except 4 of 2,621,440 entries of the d20 table (hd 128, 20,480 positions), listed in the
//!   fixture `outputs/rotary/index.json` — none within the first 640 positions.
//! * Pairs are `(j, j + hd/2)` (halves, not interleaved) and the rotation is by −θ:
//!   `y1 = x1·cos + x2·sin`, `y2 = −x1·sin + x2·cos` — the transpose of the textbook rotation,
//!   kept for weight compatibility. We feed candle's half-split `rope` kernel (+θ) with `−sin`.

use candle_core::{DType, Device, Tensor};
use half::bf16;

use crate::error::Result;

pub struct Rotary {
    /// (positions, head_dim / 2), f32 holding bf16-rounded values.
    cos: Tensor,
    /// (positions, head_dim / 2), the *negated* bf16-rounded sines (see the module doc).
    neg_sin: Tensor,
    positions: usize,
}

/// The bf16 cos and sin tables as raw `(cos, sin)` values, row-major `(positions, head_dim/2)`.
pub fn rotary_tables(positions: usize, head_dim: usize, base: f32) -> (Vec<bf16>, Vec<bf16>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|j| {
            let exponent = (2 * j) as f32 / head_dim as f32;
            let power = (base as f64).powf(exponent as f64) as f32;
            1.0f32 / power
        })
        .collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for t in 0..positions {
        for &f in &inv_freq {
            let angle = (t as f32 * f) as f64;
            cos.push(bf16_nearest(angle.cos()));
            sin.push(bf16_nearest(angle.sin()));
        }
    }
    (cos, sin)
}

/// torch computes cos/sin in f32 and then rounds to bf16: two roundings, f64 → f32 → bf16,
/// both to nearest-even. (Rounding f64 straight to bf16 differs at near-ties.)
fn bf16_nearest(x: f64) -> bf16 {
    bf16::from_f32(x as f32)
}

impl Rotary {
    pub fn new(positions: usize, head_dim: usize, base: f32, device: &Device) -> Result<Self> {
        let (cos, sin) = rotary_tables(positions, head_dim, base);
        let half = head_dim / 2;
        let cos: Vec<f32> = cos.iter().map(|v| v.to_f32()).collect();
        let neg_sin: Vec<f32> = sin.iter().map(|v| -v.to_f32()).collect();
        Ok(Self {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            neg_sin: Tensor::from_vec(neg_sin, (positions, half), device)?,
            positions,
        })
    }

    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Rotates `x` (B, heads, T, head_dim) whose first position is `offset`.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        if offset + t > self.positions {
            return Err(crate::error::ModelError::TooLong {
                needed: offset + t,
                limit: self.positions,
            });
        }
        let dtype = x.dtype();
        let cos = self.cos.narrow(0, offset, t)?;
        let neg_sin = self.neg_sin.narrow(0, offset, t)?;
        let x32 = if dtype == DType::F32 {
            x.contiguous()?
        } else {
            x.to_dtype(DType::F32)?.contiguous()?
        };
        let y = candle_nn::rotary_emb::rope(&x32, &cos.contiguous()?, &neg_sin.contiguous()?)?;
        Ok(if dtype == DType::F32 {
            y
        } else {
            y.to_dtype(dtype)?
        })
    }

    /// Rotates one new position per sequence: `x` (S, heads, 1, head_dim) f32, row `s` sitting
    /// at `positions[s]` (continuous batching: every sequence is at its own position).
    pub fn apply_at(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        if let Some(&too_far) = positions.iter().find(|&&p| p >= self.positions) {
            return Err(crate::error::ModelError::TooLong {
                needed: too_far + 1,
                limit: self.positions,
            });
        }
        let rows = positions.len();
        let half = self.cos.dim(1)?;
        let index: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let index = Tensor::from_vec(index, rows, x.device())?;
        let cos = self.cos.index_select(&index, 0)?.reshape((rows, 1, half))?;
        let neg_sin = self
            .neg_sin
            .index_select(&index, 0)?
            .reshape((rows, 1, half))?;
        Ok(candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &cos,
            &neg_sin,
        )?)
    }
}
