//! Random weights with nanochat's initialization (reference §3.4), for tests, benchmarks and
//! training from scratch.
//!
//! * Every Linear weight `(out, in)` ~ N(0, σ) with `σ = 1/sqrt(in) · min(1, sqrt(out/in))`.
//! * `transformer.wte.weight` ~ N(0, 1).
//! * nanochat then zeroes `lm_head` and every `c_proj` (attention and MLP). A model like that
//!   gives all-zero logits, so [`InitOptions`] says what to do with those two instead:
//!   [`InitOptions::nanochat`] (both zero, exactly nanochat), [`InitOptions::benchmark`]
//!   (`lm_head` zero so greedy decoding never meets a stop token, `c_proj` small normals so the
//!   blocks do real work), [`InitOptions::nonzero`] (everything random: logits depend on every
//!   weight, what tests want).
//!
//! Reproducible: a tensor's values depend only on the seed, its name, its shape and the fill —
//! not on the thread count, the dtype (bf16/f16 values are the f32 values rounded) or the other
//! tensors. Each tensor is cut into blocks of [`BLOCK`] elements, each drawn from its own
//! ChaCha8 stream, generated in parallel with rayon (a d20 model, 561 M parameters, takes a
//! second or two on a few cores).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use half::{bf16, f16};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::gpt::Gpt;
use crate::state_dict::expected_tensor_names;

/// Elements drawn from one random stream.
pub const BLOCK: usize = 1 << 16;

/// How to fill a weight that nanochat zeroes (`lm_head`, every `c_proj`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// All zeros (nanochat's `init_weights`).
    Zeros,
    /// N(0, σ) with the fan-in σ every other Linear gets.
    FanIn,
    /// N(0, std).
    Normal(f32),
}

/// What [`random_weights`] does with the weights nanochat zeroes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitOptions {
    /// `lm_head.weight`. Ignored when embeddings are tied (`lm_head` is `wte`, N(0, 1)).
    pub lm_head: Fill,
    /// `attn.c_proj.weight` and `mlp.c_proj.weight` of every layer.
    pub c_proj: Fill,
}

impl InitOptions {
    /// Exactly nanochat: `lm_head` and every `c_proj` zero (every logit is 0).
    pub fn nanochat() -> Self {
        Self {
            lm_head: Fill::Zeros,
            c_proj: Fill::Zeros,
        }
    }

    /// For speed measurements: `lm_head` zero (all logits 0, so greedy decoding picks token 0
    /// every step and never stops early), `c_proj` ~ N(0, 0.02) so the blocks compute
    /// something non-trivial.
    pub fn benchmark() -> Self {
        Self {
            lm_head: Fill::Zeros,
            c_proj: Fill::Normal(0.02),
        }
    }

    /// Every weight random at its fan-in σ: logits depend on every tensor (for tests).
    pub fn nonzero() -> Self {
        Self {
            lm_head: Fill::FanIn,
            c_proj: Fill::FanIn,
        }
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        Self::nanochat()
    }
}

/// nanochat's Linear σ for a weight of shape (out, in).
pub fn linear_std(fan_out: usize, fan_in: usize) -> f64 {
    let (fan_out, fan_in) = (fan_out as f64, fan_in as f64);
    1.0 / fan_in.sqrt() * (fan_out / fan_in).sqrt().min(1.0)
}

/// (shape, default std) of every tensor of `cfg`, in nanochat's order.
fn tensor_specs(cfg: &Config) -> Vec<(String, (usize, usize))> {
    let (c, hd) = (cfg.n_embd, cfg.head_dim());
    expected_tensor_names(cfg)
        .into_iter()
        .map(|name| {
            let shape = if name == "transformer.wte.weight" || name == "lm_head.weight" {
                (cfg.vocab_size, c)
            } else if name.ends_with("attn.c_q.weight") {
                (cfg.n_head * hd, c)
            } else if name.ends_with("attn.c_k.weight") || name.ends_with("attn.c_v.weight") {
                (cfg.n_kv_head * hd, c)
            } else if name.ends_with("attn.c_proj.weight") {
                (c, c)
            } else if name.ends_with("mlp.c_fc.weight") {
                (cfg.mlp_hidden(), c)
            } else if name.ends_with("mlp.c_proj.weight") {
                (c, cfg.mlp_hidden())
            } else {
                unreachable!("expected_tensor_names gave an unknown tensor {name}")
            };
            (name, shape)
        })
        .collect()
}

/// The standard deviation `name` gets under `opts` (0 = zeros).
fn std_of(name: &str, shape: (usize, usize), opts: &InitOptions) -> f64 {
    let fan_in = linear_std(shape.0, shape.1);
    let fill = |f: Fill| match f {
        Fill::Zeros => 0.0,
        Fill::FanIn => fan_in,
        Fill::Normal(std) => std as f64,
    };
    if name == "transformer.wte.weight" {
        1.0
    } else if name == "lm_head.weight" {
        fill(opts.lm_head)
    } else if name.ends_with("c_proj.weight") {
        fill(opts.c_proj)
    } else {
        fan_in
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the tensor name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `n` samples of N(0, std) converted by `conv`, block by block in parallel.
fn normal_vec<T: Copy + Default + Send>(
    n: usize,
    std: f32,
    stream: u64,
    conv: impl Fn(f32) -> T + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); n];
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(block, chunk)| {
            let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(stream ^ splitmix64(block as u64)));
            for x in chunk.iter_mut() {
                let z: f32 = StandardNormal.sample(&mut rng);
                *x = conv(z * std);
            }
        });
    out
}

fn random_tensor(shape: (usize, usize), std: f64, stream: u64, dtype: DType) -> Result<Tensor> {
    let dev = Device::Cpu;
    if std == 0.0 {
        return Ok(Tensor::zeros(shape, dtype, &dev)?);
    }
    let n = shape.0 * shape.1;
    let std = std as f32;
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(normal_vec(n, std, stream, |x| x), shape, &dev)?,
        DType::BF16 => Tensor::from_vec(normal_vec(n, std, stream, bf16::from_f32), shape, &dev)?,
        DType::F16 => Tensor::from_vec(normal_vec(n, std, stream, f16::from_f32), shape, &dev)?,
        other => {
            return Err(ModelError::BadInput(format!(
                "random weights must be f32, bf16 or f16, not {other:?}"
            )))
        }
    })
}

/// Random weights of a `cfg` model, named as nanochat's state dict, on the CPU, in `dtype`
/// (f32, bf16 or f16). See the module documentation for the distributions.
pub fn random_weights(
    cfg: &Config,
    seed: u64,
    dtype: DType,
    opts: &InitOptions,
) -> Result<HashMap<String, Tensor>> {
    cfg.validate()?;
    let seed = splitmix64(seed);
    tensor_specs(cfg)
        .into_iter()
        .map(|(name, shape)| {
            let std = std_of(&name, shape, opts);
            let stream = splitmix64(seed ^ name_hash(&name));
            let tensor = random_tensor(shape, std, stream, dtype)?;
            Ok((name, tensor))
        })
        .collect()
}

/// A `cfg` model with [`random_weights`] drawn in f32, its linear layers held in `dtype`
/// (quantised from the f32 draws for q8_0/q4k).
pub fn random_model_as(
    cfg: &Config,
    seed: u64,
    dtype: crate::linear::WeightDType,
    device: &Device,
    opts: &InitOptions,
) -> Result<Gpt> {
    let drawn = match dtype {
        crate::linear::WeightDType::Bf16 => DType::BF16,
        _ => DType::F32,
    };
    let weights = random_weights(cfg, seed, drawn, opts)?;
    let weights = crate::linear::Weights {
        vb: VarBuilder::from_tensors(weights, drawn, device),
        quantized: Default::default(),
        linear: dtype,
    };
    Gpt::load(cfg, &weights)
}

/// A `cfg` model with [`random_weights`], its weights on `device` in `dtype`.
pub fn random_model(
    cfg: &Config,
    seed: u64,
    dtype: DType,
    device: &Device,
    opts: &InitOptions,
) -> Result<Gpt> {
    let weights = random_weights(cfg, seed, dtype, opts)?;
    Gpt::new(cfg, VarBuilder::from_tensors(weights, dtype, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: &Tensor) -> (f64, f64) {
        let v: Vec<f32> = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn distributions_follow_nanochat() {
        let mut cfg = Config::nanochat(64, 1024, 2, 4, 2, 128);
        cfg.mlp_ratio = 3.0;
        let w = random_weights(&cfg, 7, DType::F32, &InitOptions::nanochat()).unwrap();
        assert_eq!(w.len(), 2 + 6 * 2);
        let (_, std) = stats(&w["transformer.wte.weight"]);
        assert!((std - 1.0).abs() < 0.02, "wte std {std}");
        // c_q (128, 128): 1/sqrt(128); c_k (64, 128): 1/sqrt(128)·sqrt(0.5); c_fc (384, 128).
        for (name, expected) in [
            ("transformer.h.0.attn.c_q.weight", 1.0 / 128f64.sqrt()),
            (
                "transformer.h.1.attn.c_k.weight",
                1.0 / 128f64.sqrt() * 0.5f64.sqrt(),
            ),
            ("transformer.h.0.mlp.c_fc.weight", 1.0 / 128f64.sqrt()),
        ] {
            let (mean, std) = stats(&w[name]);
            assert!(mean.abs() < 0.05 * expected, "{name} mean {mean}");
            assert!(
                (std / expected - 1.0).abs() < 0.05,
                "{name} std {std} vs {expected}"
            );
        }
        assert_eq!(w["transformer.h.0.mlp.c_fc.weight"].dims(), &[384, 128]);
        assert_eq!(w["transformer.h.0.mlp.c_proj.weight"].dims(), &[128, 384]);
        for name in [
            "lm_head.weight",
            "transformer.h.1.attn.c_proj.weight",
            "transformer.h.0.mlp.c_proj.weight",
        ] {
            assert_eq!(stats(&w[name]), (0.0, 0.0), "{name}");
        }
        let w = random_weights(&cfg, 7, DType::F32, &InitOptions::benchmark()).unwrap();
        let (_, std) = stats(&w["transformer.h.0.mlp.c_proj.weight"]);
        assert!((std / 0.02 - 1.0).abs() < 0.05, "{std}");
        assert_eq!(stats(&w["lm_head.weight"]), (0.0, 0.0));
    }

    #[test]
    fn seeded_reproducible_and_dtype_independent() {
        let cfg = Config::nanochat(64, 4096, 1, 2, 2, 64); // wte spans several blocks
        let opts = InitOptions::nonzero();
        let a = random_weights(&cfg, 3, DType::F32, &opts).unwrap();
        let b = random_weights(&cfg, 3, DType::F32, &opts).unwrap();
        let c = random_weights(&cfg, 4, DType::F32, &opts).unwrap();
        let h = random_weights(&cfg, 3, DType::BF16, &opts).unwrap();
        for (name, t) in &a {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let w: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
            let x: Vec<f32> = c[name].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(v, w, "{name}");
            assert_ne!(v, x, "{name}");
            let rounded: Vec<bf16> = v.iter().map(|&f| bf16::from_f32(f)).collect();
            assert_eq!(h[name].dtype(), DType::BF16);
            assert_eq!(
                h[name].flatten_all().unwrap().to_vec1::<bf16>().unwrap(),
                rounded
            );
        }
        // Distinct tensors of the same shape get distinct values.
        let q: Vec<f32> = a["transformer.h.0.attn.c_q.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let k: Vec<f32> = a["transformer.h.0.attn.c_k.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_ne!(q, k);
    }

    #[test]
    fn tied_embeddings_have_no_lm_head() {
        let mut cfg = Config::nanochat(64, 256, 1, 2, 2, 64);
        cfg.tie_embeddings = true;
        let w = random_weights(&cfg, 1, DType::F32, &InitOptions::nanochat()).unwrap();
        assert!(!w.contains_key("lm_head.weight"));
        let model =
            random_model(&cfg, 1, DType::F32, &Device::Cpu, &InitOptions::nanochat()).unwrap();
        let names: Vec<String> = model
            .named_weights()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, expected_tensor_names(&cfg));
    }
}
