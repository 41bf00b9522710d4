//! Choosing the next token from logits (reference §5.3, plus what an OpenAI server needs).
//!
//! Order of operations, per row: logit bias → repetition penalty (HF style: positive logits
//! divided, negative multiplied, for every token already in the prompt or the reply) → presence
//! and frequency penalties (OpenAI: `- presence·[count>0] - frequency·count`, over the reply's
//! tokens) → temperature 0 means greedy (first index of the maximum, like torch's argmax) →
//! divide by temperature → top-k → softmax → top-p (smallest set whose probability reaches p)
//! → min-p (drop tokens below `min_p · p_max`) → draw.
//!
//! The random generator is ours (ChaCha via `rand`'s `StdRng`, seeded per request), so a given
//! seed reproduces the same tokens with this build; torch's generator is not imitated. With
//! `top_k = 1` sampling is deterministic, which is how the fixtures test it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to pick tokens. `Default` is greedy with no penalties.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    /// Added to the logits of these tokens before anything else.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// nanochat's knobs: temperature and top-k.
    pub fn nanochat(temperature: f32, top_k: Option<usize>) -> Self {
        Self {
            temperature,
            top_k,
            ..Self::default()
        }
    }

    fn uses_penalties(&self) -> bool {
        self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || self.repetition_penalty != 1.0
    }

    /// Checks ranges; the message names the parameter.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!("temperature must be ≥ 0, got {}", self.temperature));
        }
        if self.top_k == Some(0) {
            return Err("top_k must be at least 1".into());
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p must be in (0, 1], got {p}"));
            }
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("min_p must be in [0, 1], got {p}"));
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() {
                return Err(format!("{name} must be a finite number, got {v}"));
            }
        }
        Ok(())
    }
}

/// Index of the largest value; the first one on ties (torch's argmax).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// A request's sampler: parameters plus its own seeded random generator.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch: (token, logit) candidates, reused between calls.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self {
            params,
            rng: StdRng::seed_from_u64(seed),
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token. `context` are the tokens the penalties look at: `prompt_len` prompt
    /// tokens followed by the reply so far. `logits` may be modified (bias, penalties).
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], prompt_len: usize) -> u32 {
        let p = &self.params;
        for &(token, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if p.uses_penalties() {
            apply_penalties(p, logits, context, prompt_len);
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l * inv_t)),
        );
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = p.top_k {
            let k = k.min(self.candidates.len());
            if k < self.candidates.len() {
                self.candidates.select_nth_unstable_by(k - 1, by_logit_desc);
                self.candidates.truncate(k);
            }
        }
        self.candidates.sort_unstable_by(by_logit_desc);
        // softmax in place: logits become probabilities
        let max = self.candidates.first().map_or(0.0, |c| c.1);
        let mut total = 0.0f64;
        for c in self.candidates.iter_mut() {
            c.1 = (c.1 - max).exp();
            total += c.1 as f64;
        }
        if let Some(top_p) = p.top_p {
            let mut mass = 0.0f64;
            let mut keep = self.candidates.len();
            for (i, c) in self.candidates.iter().enumerate() {
                mass += c.1 as f64 / total;
                if mass >= top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.candidates.truncate(keep);
        }
        if let Some(min_p) = p.min_p {
            let threshold = self.candidates.first().map_or(0.0, |c| c.1) * min_p;
            self.candidates.retain(|c| c.1 >= threshold);
        }
        let total: f64 = self.candidates.iter().map(|c| c.1 as f64).sum();
        let mut draw = self.rng.random::<f64>() * total;
        for c in &self.candidates {
            draw -= c.1 as f64;
            if draw < 0.0 {
                return c.0;
            }
        }
        self.candidates
            .last()
            .map_or_else(|| argmax(logits), |c| c.0)
    }
}

fn apply_penalties(p: &SamplingParams, logits: &mut [f32], context: &[u32], prompt_len: usize) {
    if p.repetition_penalty != 1.0 {
        let mut seen = vec![false; logits.len()];
        for &t in context {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        for (l, s) in logits.iter_mut().zip(seen) {
            if s {
                *l = if *l > 0.0 {
                    *l / p.repetition_penalty
                } else {
                    *l * p.repetition_penalty
                };
            }
        }
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        let mut counts = std::collections::HashMap::<u32, u32>::new();
        for &t in &context[prompt_len.min(context.len())..] {
            *counts.entry(t).or_default() += 1;
        }
        for (t, n) in counts {
            if let Some(l) = logits.get_mut(t as usize) {
                *l -= p.presence_penalty + p.frequency_penalty * n as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        let mut s = Sampler::new(SamplingParams::default(), 0);
        assert_eq!(s.sample(&mut [0.0, 5.0, 5.0], &[], 0), 1);
    }

    #[test]
    fn top_k_1_is_deterministic_and_seeds_reproduce() {
        let logits = [0.5f32, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingParams::nanochat(1.0, Some(1)), 7);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[], 0), 1);
        }
        let draws = |seed| {
            let mut s = Sampler::new(SamplingParams::nanochat(1.0, None), seed);
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[], 0))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let mut s = Sampler::new(SamplingParams::nanochat(1.0, None), 1);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&mut logits.clone(), &[], 0) == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    #[test]
    fn top_p_min_p_bias_and_penalties() {
        let logits = [3.0f32, 2.9, -5.0, -6.0];
        let mut p = SamplingParams::nanochat(1.0, None);
        p.top_p = Some(0.5);
        let mut s = Sampler::new(p, 2);
        assert!(
            (0..200).all(|_| s.sample(&mut logits.clone(), &[], 0) == 0),
            "top_p keeps only the best"
        );
        let mut p = SamplingParams::nanochat(1.0, None);
        p.min_p = Some(0.5);
        let mut s = Sampler::new(p, 2);
        assert!(
            (0..200).all(|_| s.sample(&mut logits.clone(), &[], 0) < 2),
            "min_p drops the unlikely"
        );
        let mut p = SamplingParams::default();
        p.logit_bias = vec![(3, 100.0)];
        assert_eq!(Sampler::new(p, 0).sample(&mut logits.clone(), &[], 0), 3);
        let mut p = SamplingParams::default();
        p.frequency_penalty = 1.0;
        // token 0 appeared twice in the reply: 3.0 - 2 < 2.9
        assert_eq!(
            Sampler::new(p, 0).sample(&mut logits.clone(), &[0, 0], 0),
            1
        );
        let mut p = SamplingParams::default();
        p.presence_penalty = 1.0;
        // prompt tokens do not count for presence
        assert_eq!(
            Sampler::new(p.clone(), 0).sample(&mut logits.clone(), &[0], 1),
            0
        );
        assert_eq!(Sampler::new(p, 0).sample(&mut logits.clone(), &[0], 0), 1);
        let mut p = SamplingParams::default();
        p.repetition_penalty = 2.0;
        assert_eq!(Sampler::new(p, 0).sample(&mut logits.clone(), &[0], 1), 1);
    }

    #[test]
    fn invalid_parameters_name_themselves() {
        let mut p = SamplingParams::default();
        p.top_k = Some(0);
        assert!(p.validate().unwrap_err().contains("top_k"));
        p.top_k = None;
        p.top_p = Some(1.5);
        assert!(p.validate().unwrap_err().contains("top_p"));
    }
}
