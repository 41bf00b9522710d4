//! Attention of new positions over their sequence's own KV cache, each row up to its own
//! position, computed straight on the cache's storage (decode, batched decode, and prompt
//! chunks prefilled in the same step).
//!
//! Why not candle ops: per sequence and layer they would be about ten small tensor operations
//! (views, two matmuls, softmax, copies), each with its own allocation and dispatch — at 8
//! sequences × 20 layers that is thousands per step, a visible share of a decode step. Here one
//! pass per (sequence, query head) reads the filled part of the cache in place, on rayon's pool.
//! Scores and the softmax are f32, the maximum subtracted first, like torch's softmax; a bf16
//! cache is widened to f32 as it is read.

use candle_core::{CpuStorage, Storage, Tensor};
use half::bf16;
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Shapes of one layer's attention.
#[derive(Clone, Copy, Debug)]
pub struct HeadShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

/// One sequence's inputs: its query (n_head · head_dim, after RoPE and norm), its cache tensors
/// for the layer, each (1, n_kv_head, capacity, head_dim) f32 or bf16, and how many positions
/// are filled (including the new one).
pub struct Row<'a> {
    pub q: &'a [f32],
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
    pub len: usize,
}

/// y (rows, n_head · head_dim): softmax(q·kᵀ / √hd) · v per query head, query head h reading
/// kv head h / (n_head / n_kv_head).
pub fn attend(rows: &[Row], shape: HeadShape) -> Result<Vec<f32>> {
    let HeadShape {
        n_head,
        head_dim: hd,
        ..
    } = shape;
    // Read guards on every cache: held for the duration of the pass.
    let mut guards = Vec::with_capacity(rows.len());
    for row in rows {
        let (k, k_layout) = row.keys.storage_and_layout();
        let (v, v_layout) = row.values.storage_and_layout();
        let capacity = row.keys.dim(2)?;
        if row.q.len() != n_head * hd || row.len > capacity || row.keys.dims() != row.values.dims()
        {
            return Err(ModelError::BadInput(format!(
                "decode attention: q of {} values, {} positions, cache {:?}",
                row.q.len(),
                row.len,
                row.keys.dims()
            )));
        }
        guards.push((
            k,
            k_layout.start_offset(),
            v,
            v_layout.start_offset(),
            capacity,
        ));
    }
    // Every cache of one model has the same dtype: f32 or bf16.
    let mut f32_slices = Vec::with_capacity(rows.len());
    let mut bf16_slices = Vec::with_capacity(rows.len());
    for (k, k_off, v, v_off, capacity) in &guards {
        match (&**k, &**v) {
            (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) => {
                f32_slices.push((&k[*k_off..], &v[*v_off..], *capacity))
            }
            (Storage::Cpu(CpuStorage::BF16(k)), Storage::Cpu(CpuStorage::BF16(v))) => {
                bf16_slices.push((&k[*k_off..], &v[*v_off..], *capacity))
            }
            _ => {
                return Err(ModelError::BadInput(
                    "decode attention needs an f32 or bf16 KV cache on the CPU".into(),
                ))
            }
        }
    }
    let mut out = vec![0f32; rows.len() * n_head * hd];
    match (f32_slices.len(), bf16_slices.len()) {
        (_, 0) => attend_on(rows, &f32_slices, shape, &mut out),
        (0, _) => attend_on(rows, &bf16_slices, shape, &mut out),
        _ => {
            return Err(ModelError::BadInput(
                "decode attention: the KV caches of one step differ in dtype".into(),
            ))
        }
    }
    Ok(out)
}

/// A KV cache element, read as f32 (bf16 → f32 is exact: a shift).
trait KvValue: Copy + Sync {
    fn f32(self) -> f32;
}

impl KvValue for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl KvValue for bf16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
}

/// [`attend`] over caches of element type `T`: `slices[r]` holds row r's keys, values (from
/// the layer's start) and capacity.
fn attend_on<T: KvValue>(
    rows: &[Row],
    slices: &[(&[T], &[T], usize)],
    shape: HeadShape,
    out: &mut [f32],
) {
    let HeadShape {
        n_head,
        n_kv_head,
        head_dim: hd,
    } = shape;
    let group = n_head / n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd).enumerate().for_each_init(
        Vec::new,
        |scores: &mut Vec<f32>, (index, y)| {
            let (r, h) = (index / n_head, index % n_head);
            let (keys, values, capacity) = slices[r];
            let len = rows[r].len;
            let q = &rows[r].q[h * hd..(h + 1) * hd];
            let head = (h / group) * capacity * hd; // this kv head's (capacity, hd) block
            scores.clear();
            scores.extend((0..len).map(|t| {
                let key = &keys[head + t * hd..head + (t + 1) * hd];
                dot(q, key) * scale
            }));
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            y.fill(0.0);
            for (t, p) in scores.iter().enumerate() {
                let value = &values[head + t * hd..head + (t + 1) * hd];
                let p = p / total;
                for (o, v) in y.iter_mut().zip(value) {
                    *o += p * v.f32();
                }
            }
        },
    );
}

/// Dot product in 16 independent partial sums, which the compiler turns into SIMD lanes (a
/// plain `sum()` is one serial chain of additions: at 1,000 cached positions that made decode
/// attention a visible share of a step, and a prompt chunk's rows cost as much each).
fn dot<T: KvValue>(a: &[f32], b: &[T]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(p, q)| p * q.f32())
        .sum();
    for (pa, pb) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += pa[l] * pb[l].f32();
        }
    }
    acc.iter().sum::<f32>() + tail
}
