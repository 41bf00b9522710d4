//! Every architecture option our users can choose (tied embeddings, MLP ratio 3 and 2.5,
//! GELU/SiLU, no softcap, RoPE base 100k, GQA/MQA) generates through the engine, and the
//! KV-cached decode agrees with a full no-cache forward pass of the same sequence.

use candle_core::{DType, Device, Tensor};
use nanochat_engine::{Engine, GenerateOptions};
use nanochat_fixtures::max_abs_diff;
use nanochat_model::init::{random_model, InitOptions};
use nanochat_model::{Activation, Config};
use nanochat_tokenizer::Tokenizer;

fn variants() -> Vec<(&'static str, Config)> {
    // A byte-level tokenizer has 256 + 9 specials = 265 ids.
    let base = Config::nanochat(64, 265, 2, 4, 4, 64);
    let with = |f: &dyn Fn(&mut Config)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    vec![
        ("default", base.clone()),
        ("tie_embeddings", with(&|c| c.tie_embeddings = true)),
        ("mlp_ratio 3", with(&|c| c.mlp_ratio = 3.0)),
        ("mlp_ratio 2.5", with(&|c| c.mlp_ratio = 2.5)),
        ("gelu", with(&|c| c.activation = Activation::Gelu)),
        ("silu", with(&|c| c.activation = Activation::Silu)),
        ("no softcap", with(&|c| c.logit_softcap = None)),
        ("rope_base 100000", with(&|c| c.rope_base = 100_000.0)),
        ("gqa 4/2", with(&|c| c.n_kv_head = 2)),
        ("mqa 4/1", with(&|c| c.n_kv_head = 1)),
    ]
}

#[test]
fn every_option_generates_and_cached_decode_matches_full_forward() {
    let tok = Tokenizer::with_nanochat_specials((0..=255u8).map(|b| vec![b]).collect()).unwrap();
    for (name, cfg) in variants() {
        let model =
            random_model(&cfg, 7, DType::F32, &Device::Cpu, &InitOptions::nonzero()).unwrap();
        let engine = Engine::new(&model, &tok).unwrap();
        let prompt = tok
            .encode_with_specials("Hello there", Some(tok.bos_id().unwrap()), None)
            .unwrap();
        let options = GenerateOptions {
            max_tokens: Some(12),
            stop_token_ids: vec![],
            ..GenerateOptions::default()
        };
        let mut generation = engine.generate(&prompt, &options).unwrap();
        let mut sequence = prompt.clone();
        let mut cached_logits = Vec::new();
        while let Some(column) = generation.next_column().unwrap() {
            cached_logits.extend(generation.row_logits(0).iter().copied());
            sequence.push(column.tokens[0]);
        }
        assert_eq!(
            sequence.len(),
            prompt.len() + 12,
            "{name}: generated 12 tokens"
        );
        // The logits used at each step, recomputed without a cache from the whole prefix.
        let ids = Tensor::from_vec(sequence.clone(), (1, sequence.len()), &Device::Cpu).unwrap();
        let full = model.forward(&ids, None).unwrap();
        let full: Vec<f32> = full
            .narrow(1, prompt.len() - 1, 12)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = max_abs_diff(&cached_logits, &full);
        assert!(
            diff < 1e-4,
            "{name}: cached decode vs full forward max |Δ| = {diff}"
        );
        if cfg.logit_softcap.is_some() {
            assert!(
                full.iter().all(|l| l.abs() <= 15.0),
                "{name}: softcap bounds the logits"
            );
        }
    }
}
