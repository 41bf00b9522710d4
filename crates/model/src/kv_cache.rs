//! The KV cache (reference §5.1): keys and values of every layer for the positions seen so far,
//! so decoding a token costs one position's forward pass instead of the whole prefix.
//!
//! Storage is allocated once per capacity and written in place (`slice_set`); attention reads a
//! narrowed view of the filled part, never a copy of the cache. When a forward would run past the
//! capacity the cache grows like nanochat's: to `roundup_1024(needed + 1024)` positions.
//! `pos` (positions filled) advances only after the last layer has written, so every layer of one
//! forward sees the same offset — which is also the rotary offset of the new positions.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

pub struct KvCache {
    /// Per layer: (batch, n_kv_head, capacity, head_dim).
    keys: Vec<Tensor>,
    /// Per layer: (batch, n_kv_head, capacity, head_dim).
    values: Vec<Tensor>,
    batch: usize,
    n_kv_head: usize,
    head_dim: usize,
    capacity: usize,
    /// Positions filled (the same for every row).
    pos: usize,
    dtype: DType,
    device: Device,
}

fn round_up_1024(n: usize) -> usize {
    n.div_ceil(1024) * 1024
}

impl KvCache {
    pub fn new(
        n_layer: usize,
        batch: usize,
        n_kv_head: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let zeros = || Tensor::zeros((batch, n_kv_head, capacity, head_dim), dtype, device);
        let keys = (0..n_layer)
            .map(|_| zeros())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let values = (0..n_layer)
            .map(|_| zeros())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            keys,
            values,
            batch,
            n_kv_head,
            head_dim,
            capacity,
            pos: 0,
            dtype,
            device: device.clone(),
        })
    }

    /// Positions filled so far (the rotary offset of the next forward).
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn n_layer(&self) -> usize {
        self.keys.len()
    }

    /// Makes room for `new` more positions, growing like nanochat when needed.
    pub(crate) fn reserve(&mut self, new: usize) -> Result<()> {
        let needed = self.pos + new;
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = round_up_1024(needed + 1024);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let grown = Tensor::zeros(
                (self.batch, self.n_kv_head, capacity, self.head_dim),
                self.dtype,
                &self.device,
            )?;
            grown.slice_set(&layer.narrow(2, 0, self.pos)?.contiguous()?, 2, 0)?;
            *layer = grown;
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`, `v` (batch, n_kv_head, T, head_dim) at `pos..pos+T` of `layer` and returns views
    /// of all filled positions `0..pos+T` (batch, n_kv_head, pos+T, head_dim).
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let (keys, values) = (&self.keys[layer], &self.values[layer]);
        keys.slice_set(&k.to_dtype(self.dtype)?.contiguous()?, 2, self.pos)?;
        values.slice_set(&v.to_dtype(self.dtype)?.contiguous()?, 2, self.pos)?;
        Ok((
            keys.narrow(2, 0, self.pos + t)?,
            values.narrow(2, 0, self.pos + t)?,
        ))
    }

    /// The whole storage of `layer` (keys, values), each (batch, n_kv_head, capacity, head_dim):
    /// positions `0..pos` are filled, plus whatever this forward appended.
    pub(crate) fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Called once per forward, after the last layer appended `t` positions.
    pub(crate) fn advance(&mut self, t: usize) {
        self.pos += t;
    }

    /// A deep copy (the storage is written in place, so a shared `Tensor` clone would let two
    /// sequences overwrite each other): how `n` choices share one prompt prefill.
    pub fn duplicate(&self) -> Result<Self> {
        let copy = |layers: &[Tensor]| -> Result<Vec<Tensor>> {
            layers.iter().map(|t| Ok(t.copy()?)).collect()
        };
        Ok(Self {
            keys: copy(&self.keys)?,
            values: copy(&self.values)?,
            batch: self.batch,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            capacity: self.capacity,
            pos: self.pos,
            dtype: self.dtype,
            device: self.device.clone(),
        })
    }
}
