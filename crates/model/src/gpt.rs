//! The nanochat GPT forward pass (reference §3.1), in the style of candle-transformers:
//! `Attention`, `Mlp`, `Block`, `Gpt`, each with `new(cfg, vb)` and `forward`.
//!
//! * RMSNorm has no weight and ε = f32 machine epsilon (1.19e-7, torch's `rms_norm(eps=None)`),
//!   not 1e-5: it is applied to the embedding, before each branch, to q and k per head (after
//!   RoPE), and at the end.
//! * GQA maps query head h to kv head h / (n_head / n_kv_head) (repeat-interleave). We never copy
//!   K/V per head: the query heads of a group are stacked along the time axis instead.
//! * Logits of every position, through `15·tanh(x/15)`.
//! * Weights may be f32 or bf16; activations, norms, softmax and the residual stream stay f32
//!   (matmul inputs are cast to the weight dtype; nanochat activations overflow f16, never use it).
//!
//! A trace callback receives named intermediate activations (the fixture names: `emb`,
//! `block0_q_lin`, `block0_attn_y`, …) so tests can compare them with the reference.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::{Activation, Config};
use crate::decode_attention::{attend, HeadShape, Row};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::linear::{quantize_linear, Linear, WeightDType, Weights};
use crate::rope::Rotary;

/// torch.finfo(torch.float32).eps
pub const RMS_NORM_EPS: f32 = f32::EPSILON;

/// One sequence's part of a [`Gpt::forward_segments`] step: the tokens to feed (one when
/// decoding, a chunk when prefilling) on top of its batch-1 cache.
pub struct Segment<'a> {
    pub tokens: &'a [u32],
    /// (n_layer, 1, n_kv_head, capacity, head_dim)
    pub cache: &'a mut KvCache,
    /// Whether the step returns logits for its last token (a prompt chunk that is not the
    /// prompt's last needs none, and skipping it saves a pass over the lm_head's weights).
    pub logits: bool,
}

/// Named intermediate activations, for tests and debugging.
pub type Trace<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// Weightless RMSNorm over the last dimension, in f32.
pub fn rms_norm(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_mul(&(mean_square + RMS_NORM_EPS as f64)?.sqrt()?.recip()?)?)
}

pub struct Attention {
    /// c_q, c_k and c_v stacked: (n_head·hd + 2·n_kv_head·hd, n_embd); one matmul for all three.
    c_qkv: Linear,
    c_proj: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    layer: usize,
}

impl Attention {
    pub fn new(cfg: &Config, layer: usize, w: &Weights) -> Result<Self> {
        let hd = cfg.head_dim();
        Ok(Self {
            c_qkv: Linear::stack(&[
                w.pp("c_q").linear(cfg.n_embd, cfg.n_head * hd)?,
                w.pp("c_k").linear(cfg.n_embd, cfg.n_kv_head * hd)?,
                w.pp("c_v").linear(cfg.n_embd, cfg.n_kv_head * hd)?,
            ])?,
            c_proj: w.pp("c_proj").linear(cfg.n_embd, cfg.n_embd)?,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: hd,
            layer,
        })
    }

    /// The q, k and v projections of x (…, C): (…, n_head·hd), (…, n_kv_head·hd) twice.
    fn qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (q_width, kv_width) = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim);
        let qkv = self.c_qkv.forward(x)?;
        Ok((
            qkv.narrow(D::Minus1, 0, q_width)?,
            qkv.narrow(D::Minus1, q_width, kv_width)?,
            qkv.narrow(D::Minus1, q_width + kv_width, kv_width)?,
        ))
    }

    /// The separate c_q, c_k and c_v layers (views of the stacked one when dense).
    fn split_qkv(&self) -> Result<[Linear; 3]> {
        let (q_width, kv_width) = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim);
        Ok([
            self.c_qkv.rows(0, q_width)?,
            self.c_qkv.rows(q_width, kv_width)?,
            self.c_qkv.rows(q_width + kv_width, kv_width)?,
        ])
    }

    /// x (B, T, C) normalized → (B, T, C). `offset` = positions already in `cache` (0 without).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        offset: usize,
        cache: Option<&mut KvCache>,
        trace: Trace,
    ) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        let (q, k, v) = self.qkv(x)?;
        let name = |what: &str| format!("block{}_{what}", self.layer);
        trace(&name("q_lin"), &q);
        trace(&name("k_lin"), &k);
        trace(&name("v_lin"), &v);
        // (B, T, heads·hd) → (B, heads, T, hd)
        let heads = |x: Tensor, n: usize| -> Result<Tensor> {
            Ok(x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = rms_norm(&rotary.apply(&heads(q, nh)?, offset)?)?;
        let k = rms_norm(&rotary.apply(&heads(k, nkv)?, offset)?)?;
        let v = heads(v, nkv)?;
        trace(
            &name("q_rope_norm"),
            &q.transpose(1, 2)?.reshape((b, t, nh * hd))?,
        );
        trace(
            &name("k_rope_norm"),
            &k.transpose(1, 2)?.reshape((b, t, nkv * hd))?,
        );

        // Keys/values of all visible positions: (B, n_kv_head, L, hd).
        let (k_all, v_all) = match cache {
            Some(cache) => cache.append(self.layer, &k, &v)?,
            None => (k, v),
        };
        let kv_len = k_all.dim(2)?;
        let group = nh / nkv;
        // Stack the `group` query heads that share a kv head along time: (B, n_kv, group·T, hd).
        let q = q.reshape((b, nkv, group * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let k_t = k_all.to_dtype(DType::F32)?.transpose(2, 3)?;
        let mut scores = (q.matmul(&k_t)? * scale)?; // (B, n_kv, group·T, L)
        if t > 1 {
            // Query j of this chunk sits at absolute position offset + j and sees keys ≤ it.
            let mask: Vec<f32> = (0..t)
                .flat_map(|j| {
                    (0..kv_len).map(move |key| {
                        if key <= offset + j {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (t, kv_len), x.device())?;
            scores = scores
                .reshape((b, nkv, group, t, kv_len))?
                .broadcast_add(&mask)?
                .reshape((b, nkv, group * t, kv_len))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v_all.to_dtype(DType::F32)?)?; // (B, n_kv, group·T, hd)
        let y = y
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, c))?;
        trace(&name("attn_y"), &y);
        self.c_proj.forward(&y)
    }
    /// Continuous batching: the new positions of S sequences, each at its own position with its
    /// own batch-1 cache — one position per decoding sequence, or a chunk of a prompt being
    /// prefilled. x (R, 1, C) normalized, R = Σ segment lengths, rows in segment order →
    /// (R, 1, C). The projections run over all R rows at once (each weight read once for all);
    /// attention runs per row over its sequence's cache up to its own position, straight on the
    /// cache's storage ([`crate::decode_attention`]).
    /// Every cache must have room for its segment (`Gpt::forward_segments` reserves it).
    pub fn forward_segments(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        segments: &mut [Segment],
    ) -> Result<Tensor> {
        let (r, _, c) = x.dims3()?;
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        // Absolute position of every row.
        let positions: Vec<usize> = segments
            .iter()
            .flat_map(|s| s.cache.pos()..s.cache.pos() + s.tokens.len())
            .collect();
        // (R, 1, heads·hd) → (R, heads, 1, hd)
        let heads = |x: Tensor, n: usize| -> Result<Tensor> { Ok(x.reshape((r, n, 1, hd))?) };
        let (q, k, v) = self.qkv(x)?;
        let q = rms_norm(&rotary.apply_at(&heads(q.contiguous()?, nh)?, &positions)?)?;
        let k = rms_norm(&rotary.apply_at(&heads(k.contiguous()?, nkv)?, &positions)?)?;
        let v = heads(v.contiguous()?, nkv)?;
        let mut start = 0;
        for segment in segments.iter_mut() {
            let t = segment.tokens.len();
            // (T, n_kv, 1, hd) → (1, n_kv, T, hd), the cache's layout.
            let rows =
                |x: &Tensor| -> Result<Tensor> { Ok(x.narrow(0, start, t)?.transpose(0, 2)?) };
            segment.cache.append(self.layer, &rows(&k)?, &rows(&v)?)?;
            start += t;
        }
        let q: Vec<f32> = q.flatten_all()?.to_vec1()?; // R rows of n_head·hd
        let mut rows = Vec::with_capacity(r);
        for segment in segments.iter() {
            let (keys, values) = segment.cache.layer(self.layer);
            for j in 0..segment.tokens.len() {
                let row = rows.len();
                rows.push(Row {
                    q: &q[row * nh * hd..(row + 1) * nh * hd],
                    keys,
                    values,
                    // Row j of the segment sees the cache up to its own position.
                    len: segment.cache.pos() + j + 1,
                });
            }
        }
        let shape = HeadShape {
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
        };
        let y = attend(&rows, shape)?;
        self.c_proj
            .forward(&Tensor::from_vec(y, (r, 1, c), x.device())?)
    }
}

pub struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
    layer: usize,
}

impl Mlp {
    pub fn new(cfg: &Config, layer: usize, w: &Weights) -> Result<Self> {
        let hidden = cfg.mlp_hidden();
        Ok(Self {
            c_fc: w.pp("c_fc").linear(cfg.n_embd, hidden)?,
            c_proj: w.pp("c_proj").linear(hidden, cfg.n_embd)?,
            activation: cfg.activation,
            layer,
        })
    }

    pub fn forward(&self, x: &Tensor, trace: Trace) -> Result<Tensor> {
        let h = self.c_fc.forward(x)?;
        trace(&format!("block{}_mlp_fc", self.layer), &h);
        let h = match self.activation {
            Activation::Relu2 => h.relu()?.sqr()?,
            Activation::Gelu => h.gelu_erf()?,
            Activation::Silu => candle_nn::ops::silu(&h)?,
        };
        self.c_proj.forward(&h)
    }
}

pub struct Block {
    attn: Attention,
    mlp: Mlp,
    layer: usize,
}

impl Block {
    pub fn new(cfg: &Config, layer: usize, w: &Weights) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(cfg, layer, &w.pp("attn"))?,
            mlp: Mlp::new(cfg, layer, &w.pp("mlp"))?,
            layer,
        })
    }

    fn weight_bytes(&self) -> usize {
        let (a, m) = (&self.attn, &self.mlp);
        [&a.c_qkv, &a.c_proj, &m.c_fc, &m.c_proj]
            .iter()
            .map(|l| l.weight_bytes())
            .sum()
    }

    /// Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x)).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        offset: usize,
        cache: Option<&mut KvCache>,
        trace: Trace,
    ) -> Result<Tensor> {
        let name = |what: &str| format!("block{}_{what}", self.layer);
        trace(&name("in"), x);
        let a = self
            .attn
            .forward(&rms_norm(x)?, rotary, offset, cache, trace)?;
        trace(&name("attn_out"), &a);
        let x = (x + a)?;
        let m = self.mlp.forward(&rms_norm(&x)?, trace)?;
        trace(&name("mlp_out"), &m);
        let x = (x + m)?;
        trace(&name("out"), &x);
        Ok(x)
    }
    /// The same block for the new positions of several sequences (see
    /// `Attention::forward_segments`).
    pub fn forward_segments(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        segments: &mut [Segment],
    ) -> Result<Tensor> {
        let x = (x + self
            .attn
            .forward_segments(&rms_norm(x)?, rotary, segments)?)?;
        let m = self.mlp.forward(&rms_norm(&x)?, &mut |_, _| {})?;
        Ok((x + m)?)
    }
}

pub struct Gpt {
    /// (vocab_size, n_embd)
    wte: Tensor,
    blocks: Vec<Block>,
    /// (vocab_size, n_embd); the same tensor as `wte` when embeddings are tied.
    lm_head: Linear,
    rotary: Rotary,
    /// The format the linear layers were asked to be held in.
    linear_dtype: WeightDType,
    cfg: Config,
}

impl Gpt {
    /// Builds the model from dense weights named as nanochat's state dict
    /// (`transformer.wte.weight`, `transformer.h.{i}.attn.c_q.weight`, …, `lm_head.weight`),
    /// held in the builder's dtype.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::load(cfg, &Weights::dense(vb))
    }

    /// Builds the model with its linear layers in `w.linear`'s format (see [`Weights`]).
    pub fn load(cfg: &Config, w: &Weights) -> Result<Self> {
        cfg.validate()?;
        let source_wte =
            w.vb.pp("transformer")
                .pp("wte")
                .get((cfg.vocab_size, cfg.n_embd), "weight")?;
        let blocks = (0..cfg.n_layer)
            .map(|i| Block::new(cfg, i, &w.pp("transformer").pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_embeddings {
            quantize_linear(source_wte.clone(), w.linear)?
        } else {
            w.pp("lm_head").linear(cfg.n_embd, cfg.vocab_size)?
        };
        // The embedding is a lookup: f32 in an f32 model, bf16 otherwise.
        let wte = source_wte.to_dtype(w.linear.dense_dtype())?;
        let rotary = Rotary::new(
            cfg.rotary_len(),
            cfg.head_dim(),
            cfg.rope_base,
            w.vb.device(),
        )?;
        Ok(Self {
            wte,
            blocks,
            lm_head,
            rotary,
            linear_dtype: w.linear,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.wte.device()
    }

    /// Every linear layer under its state-dict name, q, k and v split apart again.
    fn linears(&self) -> Result<Vec<(String, Linear)>> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let [q, k, v] = block.attn.split_qkv()?;
            for (part, linear) in [
                ("attn.c_q", q),
                ("attn.c_k", k),
                ("attn.c_v", v),
                ("attn.c_proj", block.attn.c_proj.clone()),
                ("mlp.c_fc", block.mlp.c_fc.clone()),
                ("mlp.c_proj", block.mlp.c_proj.clone()),
            ] {
                out.push((format!("transformer.h.{i}.{part}.weight"), linear));
            }
        }
        if !self.cfg.tie_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.clone()));
        }
        Ok(out)
    }

    /// Every dense weight under its nanochat state-dict name, in nanochat's order (wte, per
    /// layer c_q, c_k, c_v, attn c_proj, c_fc, mlp c_proj, then lm_head). Tied embeddings give
    /// one tensor, `transformer.wte.weight`, and no `lm_head.weight`. Tensors are shared, not
    /// copied. Quantised layers are in [`Self::quantized_weights`] instead.
    pub fn named_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("transformer.wte.weight".to_string(), self.wte.clone())];
        for (name, linear) in self.linears()? {
            if let Some(weight) = linear.weight() {
                out.push((name, weight.clone()));
            }
        }
        Ok(out)
    }

    /// The quantised linear weights by state-dict name (none in an f32 or bf16 model).
    pub fn quantized_weights(&self) -> Result<Vec<(String, Arc<QTensor>)>> {
        Ok(self
            .linears()?
            .into_iter()
            .filter_map(|(name, linear)| linear.qtensor().map(|q| (name, q.clone())))
            .collect())
    }

    /// The format the linear layers were asked for (some may have fallen back to a finer one).
    pub fn linear_dtype(&self) -> WeightDType {
        self.linear_dtype
    }

    /// Bytes of weights read per decoded token: every linear layer plus one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let mut bytes: usize = self.blocks.iter().map(|b| b.weight_bytes()).sum();
        bytes += self.lm_head.weight_bytes();
        bytes + self.cfg.n_embd * self.wte.dtype().size_in_bytes()
    }

    /// A KV cache for this model: `batch` rows, room for `capacity` positions; f32 for an f32
    /// model (exact, as nanochat's CPU path), bf16 otherwise (see [`Gpt::kv_dtype`]).
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        KvCache::new(
            self.cfg.n_layer,
            batch,
            self.cfg.n_kv_head,
            self.cfg.head_dim(),
            capacity,
            self.kv_dtype(),
            self.device(),
        )
    }

    /// The KV cache's dtype: f32 for f32 weights, bf16 for bf16 and quantised ones — as
    /// nanochat's GPU engine holds it under bf16 autocast. bf16 keeps f32's range (nanochat's
    /// activations overflow f16, never used) and halves the cache: its bytes are read in full at
    /// every decode step (d20: 200 KiB per position in f32, so at 1,000 positions a fifth of
    /// the bf16 weights, and at 8 sequences × 100 positions 12% of a batched step).
    pub fn kv_dtype(&self) -> DType {
        if self.linear_dtype == WeightDType::F32 {
            DType::F32
        } else {
            DType::BF16
        }
    }

    /// The final hidden states (B, T, C) after the last norm.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        trace: Trace,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.pos());
        if let Some(cache) = cache.as_deref_mut() {
            cache.reserve(t)?;
        }
        let emb = self
            .wte
            .embedding(&ids.flatten_all()?)?
            .to_dtype(DType::F32)?;
        let emb = emb.reshape((ids.dim(0)?, t, self.cfg.n_embd))?;
        trace("emb", &emb);
        let mut x = rms_norm(&emb)?;
        trace("emb_norm", &x);
        for block in &self.blocks {
            x = block.forward(&x, &self.rotary, offset, cache.as_deref_mut(), trace)?;
        }
        if let Some(cache) = cache {
            cache.advance(t);
        }
        let x = rms_norm(&x)?;
        trace("final_norm", &x);
        Ok(x)
    }

    /// Logits (…, vocab) from final hidden states, softcapped.
    pub fn logits(&self, hidden: &Tensor, trace: Trace) -> Result<Tensor> {
        let raw = self.lm_head.forward(hidden)?;
        trace("lm_head_raw", &raw);
        let logits = match self.cfg.logit_softcap {
            Some(cap) => softcap(&raw, cap)?,
            None => raw,
        };
        trace("logits", &logits);
        Ok(logits)
    }

    /// ids (B, T) u32 → logits (B, T, vocab) f32 for every position.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.forward_traced(ids, cache, &mut |_, _| {})
    }

    pub fn forward_traced(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        trace: Trace,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, cache, trace)?;
        self.logits(&hidden, trace)
    }

    /// Continuous batching's decode step: the next token of each of S sequences, every one with
    /// its own batch-1 cache at its own position → logits (S, vocab). Gives the same values as
    /// `forward_last` on each sequence alone, up to matmul summation order.
    pub fn forward_decode(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        if tokens.len() != caches.len() {
            return Err(ModelError::BadInput(format!(
                "forward_decode needs one cache per token, got {} tokens and {} caches",
                tokens.len(),
                caches.len()
            )));
        }
        let mut segments: Vec<Segment> = tokens
            .chunks(1)
            .zip(caches.iter_mut())
            .map(|(tokens, cache)| Segment {
                tokens,
                cache,
                logits: true,
            })
            .collect();
        self.forward_segments(&mut segments)?
            .ok_or_else(|| ModelError::BadInput("forward_decode needs at least one token".into()))
    }

    /// One forward over several sequences' new tokens — a decode step's one token per sequence
    /// and a prompt chunk being prefilled can share it, so the weights are read once for all —
    /// each segment at its own cache's position → logits (S', vocab) of the last token of each
    /// of the S' segments that ask for them (`None` if none does). Every row gets the values it
    /// would get alone, up to matmul summation order.
    pub fn forward_segments(&self, segments: &mut [Segment]) -> Result<Option<Tensor>> {
        if segments.is_empty() || segments.iter().any(|s| s.tokens.is_empty()) {
            return Err(ModelError::BadInput(
                "forward_segments needs at least one segment, none empty".into(),
            ));
        }
        if let Some(segment) = segments.iter().find(|s| s.cache.batch() != 1) {
            return Err(ModelError::BadInput(format!(
                "forward_segments needs batch-1 caches, got one with {} rows",
                segment.cache.batch()
            )));
        }
        for segment in segments.iter_mut() {
            segment.cache.reserve(segment.tokens.len())?;
        }
        let ids: Vec<u32> = segments
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let r = ids.len();
        let ids = Tensor::from_vec(ids, r, self.device())?;
        let emb = self.wte.embedding(&ids)?.to_dtype(DType::F32)?;
        let mut x = rms_norm(&emb.reshape((r, 1, self.cfg.n_embd))?)?;
        for block in &self.blocks {
            x = block.forward_segments(&x, &self.rotary, segments)?;
        }
        // The last row of each segment that wants logits.
        let mut last = Vec::with_capacity(segments.len());
        let mut end = 0;
        for segment in segments.iter_mut() {
            end += segment.tokens.len();
            if segment.logits {
                last.push(end as u32 - 1);
            }
            segment.cache.advance(segment.tokens.len());
        }
        if last.is_empty() {
            return Ok(None);
        }
        let x = x.reshape((r, self.cfg.n_embd))?;
        let x = if last.len() == r {
            x
        } else {
            let n = last.len();
            x.index_select(&Tensor::from_vec(last, n, self.device())?, 0)?
        };
        Ok(Some(self.logits(&rms_norm(&x)?, &mut |_, _| {})?))
    }

    /// Logits of the last position only, (B, vocab): what generation needs, without the
    /// lm_head cost of every prompt position.
    pub fn forward_last(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, cache, &mut |_, _| {})?;
        let t = hidden.dim(1)?;
        let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        self.logits(&last, &mut |_, _| {})
    }
}

/// `cap·tanh(x/cap)` in one pass on rayon's pool. As candle ops this was three passes over the
/// (rows, vocab) logits, each allocating, and each large enough to wake candle's own thread
/// pool, whose spinning workers then competed with the matmul threads on a small machine.
fn softcap(raw: &Tensor, cap: f32) -> Result<Tensor> {
    use rayon::prelude::*;
    let mut values = raw.flatten_all()?.to_vec1::<f32>()?;
    values
        .par_chunks_mut(16 * 1024)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh()));
    Ok(Tensor::from_vec(values, raw.shape(), raw.device())?)
}
