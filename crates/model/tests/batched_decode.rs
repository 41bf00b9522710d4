//! Continuous batching's decode step: sequences at different positions, each with its own
//! cache, decoded in one `forward_decode` call give the logits each would get alone.

use candle_core::{DType, Device, Tensor};
use nanochat_fixtures::max_abs_diff;
use nanochat_model::init::{random_model, InitOptions};
use nanochat_model::{Config, Gpt, KvCache};

fn logits_alone(model: &Gpt, prefix: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(1, prefix.len()).unwrap();
    let ids = Tensor::from_vec(prefix.to_vec(), (1, prefix.len()), &Device::Cpu).unwrap();
    let logits = model.forward_last(&ids, Some(&mut cache)).unwrap();
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

fn prefilled(model: &Gpt, prompt: &[u32], room: usize) -> KvCache {
    let mut cache = model.new_cache(1, prompt.len() + room).unwrap();
    let ids = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), &Device::Cpu).unwrap();
    model.forward_last(&ids, Some(&mut cache)).unwrap();
    cache
}

fn check(name: &str, cfg: &Config) {
    let model = random_model(cfg, 7, DType::F32, &Device::Cpu, &InitOptions::nonzero()).unwrap();
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 2, 3],
        (0..17).map(|i| (i * 13 + 5) % 256).collect(),
        vec![200],
        (0..9).map(|i| (i * 31) % 256).collect(),
    ];
    // Each sequence gets a cache of its own; one forward_decode call steps all of them, twice
    // (the second step also exercises a cache that must grow: room 1).
    let mut caches: Vec<KvCache> = prompts.iter().map(|p| prefilled(&model, p, 1)).collect();
    let mut contexts = prompts.clone();
    for step in 0..2u32 {
        let tokens: Vec<u32> = (0..prompts.len() as u32)
            .map(|i| 40 + 3 * i + step)
            .collect();
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        let batched = model.forward_decode(&tokens, &mut refs).unwrap();
        assert_eq!(batched.dims(), &[prompts.len(), cfg.vocab_size]);
        for (row, context) in contexts.iter_mut().enumerate() {
            context.push(tokens[row]);
            assert_eq!(
                caches[row].pos(),
                context.len(),
                "{name}: row {row} position"
            );
            let got: Vec<f32> = batched.get(row).unwrap().to_vec1().unwrap();
            let want = logits_alone(&model, context);
            let diff = max_abs_diff(&got, &want);
            assert!(
                diff < 1e-4,
                "{name}: step {step} row {row}: max |Δ| = {diff}"
            );
        }
    }
}

#[test]
fn batched_decode_matches_each_sequence_alone() {
    let base = Config::nanochat(64, 256, 2, 4, 4, 64);
    check("mha", &base);
    check(
        "gqa 4/2",
        &Config {
            n_kv_head: 2,
            ..base.clone()
        },
    );
    check(
        "mqa 4/1 tied",
        &Config {
            n_kv_head: 1,
            tie_embeddings: true,
            ..base
        },
    );
}

#[test]
fn batched_decode_refuses_mismatched_inputs() {
    let cfg = Config::nanochat(64, 256, 1, 2, 2, 32);
    let model = random_model(&cfg, 1, DType::F32, &Device::Cpu, &InitOptions::nonzero()).unwrap();
    let mut cache = model.new_cache(1, 4).unwrap();
    assert!(model.forward_decode(&[1, 2], &mut [&mut cache]).is_err());
    assert!(model.forward_decode(&[], &mut []).is_err());
    let mut two_rows = model.new_cache(2, 4).unwrap();
    assert!(model.forward_decode(&[1], &mut [&mut two_rows]).is_err());
}
