//! The model configuration: nanochat's `GPTConfig` (`model_config` in a checkpoint's meta JSON:
//! `sequence_len, vocab_size, n_layer, n_head, n_kv_head, n_embd`) plus the architecture options
//! our users want for their own models. Every option defaults to nanochat's behaviour and is
//! written into the meta only when it differs, so a default model's meta is exactly nanochat's.
//!
//! * `tie_embeddings` — `lm_head` shares `wte` (one tensor stored).
//! * `mlp_ratio` — MLP hidden width = `mlp_ratio · n_embd`, rounded to the nearest integer and
//!   then up to a multiple of 8 (4 and 3 give exactly `4·n_embd` / `3·n_embd` for any
//!   `n_embd` that is a multiple of 8; 2.5 gives `2.5·n_embd` when `n_embd` is a multiple of 16).
//! * `activation` — `relu2` (nanochat: `relu(x)²`), `gelu` (exact, erf), `silu`.
//! * `logit_softcap` — `cap·tanh(logits/cap)`, 15 by default; `"none"` (or JSON null) disables it.
//! * `rope_base` — 10,000 by default (nanochat@01f5f10).
//!
//! A config that cannot work (odd head_dim, `n_head % n_kv_head ≠ 0`, zeros…) is refused with a
//! message naming the field. Unknown keys in `model_config` are tolerated.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ModelError, Result};

pub const DEFAULT_LOGIT_SOFTCAP: f32 = 15.0;
pub const DEFAULT_ROPE_BASE: f32 = 10_000.0;
pub const DEFAULT_MLP_RATIO: f64 = 4.0;

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `relu(x)²`, nanochat's.
    #[default]
    Relu2,
    /// GELU with the exact erf form (PyTorch's default `F.gelu`).
    Gelu,
    Silu,
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "relu2" => Ok(Self::Relu2),
            "gelu" => Ok(Self::Gelu),
            "silu" => Ok(Self::Silu),
            _ => Err(format!(
                "unknown activation {s:?} (expected relu2, gelu or silu)"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub sequence_len: usize,
    pub vocab_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_embd: usize,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tie_embeddings: bool,
    #[serde(
        default = "default_mlp_ratio",
        skip_serializing_if = "is_default_mlp_ratio"
    )]
    pub mlp_ratio: f64,
    #[serde(default, skip_serializing_if = "is_default_activation")]
    pub activation: Activation,
    #[serde(
        default = "default_softcap",
        skip_serializing_if = "is_default_softcap",
        serialize_with = "serialize_softcap",
        deserialize_with = "deserialize_softcap"
    )]
    pub logit_softcap: Option<f32>,
    #[serde(
        default = "default_rope_base",
        skip_serializing_if = "is_default_rope_base"
    )]
    pub rope_base: f32,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn default_mlp_ratio() -> f64 {
    DEFAULT_MLP_RATIO
}
fn is_default_mlp_ratio(r: &f64) -> bool {
    *r == DEFAULT_MLP_RATIO
}
fn is_default_activation(a: &Activation) -> bool {
    *a == Activation::Relu2
}
fn default_softcap() -> Option<f32> {
    Some(DEFAULT_LOGIT_SOFTCAP)
}
fn is_default_softcap(c: &Option<f32>) -> bool {
    *c == Some(DEFAULT_LOGIT_SOFTCAP)
}
fn default_rope_base() -> f32 {
    DEFAULT_ROPE_BASE
}
fn is_default_rope_base(b: &f32) -> bool {
    *b == DEFAULT_ROPE_BASE
}

fn serialize_softcap<S: Serializer>(
    cap: &Option<f32>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match cap {
        Some(c) => s.serialize_f32(*c),
        None => s.serialize_str("none"),
    }
}

fn deserialize_softcap<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cap {
        Number(f32),
        Text(String),
    }
    match Option::<Cap>::deserialize(d)? {
        None => Ok(None),
        Some(Cap::Number(c)) => Ok(Some(c)),
        Some(Cap::Text(t)) if t == "none" => Ok(None),
        Some(Cap::Text(t)) => Err(serde::de::Error::custom(format!(
            "logit_softcap must be a number or \"none\", found {t:?}"
        ))),
    }
}

impl Config {
    /// nanochat's six fields with every option at its default.
    pub fn nanochat(
        sequence_len: usize,
        vocab_size: usize,
        n_layer: usize,
        n_head: usize,
        n_kv_head: usize,
        n_embd: usize,
    ) -> Self {
        Self {
            sequence_len,
            vocab_size,
            n_layer,
            n_head,
            n_kv_head,
            n_embd,
            tie_embeddings: false,
            mlp_ratio: DEFAULT_MLP_RATIO,
            activation: Activation::Relu2,
            logit_softcap: Some(DEFAULT_LOGIT_SOFTCAP),
            rope_base: DEFAULT_ROPE_BASE,
        }
    }

    /// The shape `base_train.py` builds for `--depth`: `n_embd = 64·depth`,
    /// `n_head = ceil(n_embd / 128)`, `n_kv_head = n_head`, sequence 2048.
    pub fn for_depth(depth: usize, vocab_size: usize) -> Self {
        let n_embd = 64 * depth;
        let n_head = n_embd.div_ceil(128).max(1);
        Self::nanochat(2048, vocab_size, depth, n_head, n_head, n_embd)
    }

    /// Parses a `model_config` JSON object (unknown keys are ignored) and validates it.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let cfg: Config = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::BadConfig(format!("model_config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// MLP hidden width (see the module documentation for the rounding).
    pub fn mlp_hidden(&self) -> usize {
        let raw = (self.mlp_ratio * self.n_embd as f64).round() as usize;
        raw.div_ceil(8) * 8
    }

    /// Rotary tables cover this many positions (nanochat: 10 × sequence_len).
    pub fn rotary_len(&self) -> usize {
        10 * self.sequence_len
    }

    /// Number of parameters (the embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let (c, v) = (self.n_embd, self.vocab_size);
        let kv = self.n_kv_head * self.head_dim();
        let per_layer = c * c + 2 * kv * c + c * c + 2 * self.mlp_hidden() * c;
        let embeddings = if self.tie_embeddings {
            v * c
        } else {
            2 * v * c
        };
        embeddings + self.n_layer * per_layer
    }

    /// Refuses configurations that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::BadConfig(msg));
        for (name, value) in [
            ("sequence_len", self.sequence_len),
            ("vocab_size", self.vocab_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_kv_head", self.n_kv_head),
            ("n_embd", self.n_embd),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!(
                "n_embd ({}) must be divisible by n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim = n_embd / n_head = {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if self.n_kv_head > self.n_head || !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!(
                "n_head ({}) must be a multiple of n_kv_head ({})",
                self.n_head, self.n_kv_head
            ));
        }
        if self.vocab_size > u32::MAX as usize {
            return bad(format!(
                "vocab_size {} does not fit 32-bit token ids",
                self.vocab_size
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            return bad(format!(
                "mlp_ratio must be a positive number, found {}",
                self.mlp_ratio
            ));
        }
        if let Some(cap) = self.logit_softcap {
            if !(cap.is_finite() && cap > 0.0) {
                return bad(format!(
                    "logit_softcap must be positive or \"none\", found {cap}"
                ));
            }
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return bad(format!(
                "rope_base must be greater than 1, found {}",
                self.rope_base
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_not_written_and_unknown_keys_are_ignored() {
        let cfg = Config::nanochat(64, 512, 2, 4, 4, 64);
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 6, "{json}");
        let mut with_extra = json.clone();
        with_extra["window_size"] = serde_json::json!(12);
        assert_eq!(Config::from_json(&with_extra).unwrap(), cfg);
    }

    #[test]
    fn options_round_trip() {
        let mut cfg = Config::nanochat(64, 512, 2, 4, 2, 64);
        cfg.tie_embeddings = true;
        cfg.mlp_ratio = 2.5;
        cfg.activation = Activation::Silu;
        cfg.logit_softcap = None;
        cfg.rope_base = 100_000.0;
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["logit_softcap"], "none");
        assert_eq!(Config::from_json(&json).unwrap(), cfg);
        assert_eq!(cfg.mlp_hidden(), 160);
    }

    #[test]
    fn impossible_configs_name_the_field() {
        let mut cfg = Config::nanochat(64, 512, 2, 4, 3, 64);
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("n_kv_head"));
        cfg.n_kv_head = 4;
        cfg.n_head = 64 / 3 + 1; // 22: 64 % 22 != 0
        assert!(cfg.validate().unwrap_err().to_string().contains("n_head"));
        cfg.n_head = 64; // head_dim 1, odd
        cfg.n_kv_head = 64;
        assert!(cfg.validate().unwrap_err().to_string().contains("head_dim"));
    }

    #[test]
    fn d20_has_nanochats_parameter_count() {
        assert_eq!(Config::for_depth(20, 65536).num_parameters(), 560_988_160);
        assert_eq!(Config::for_depth(32, 65536).num_parameters(), 1_879_048_192);
    }
}
