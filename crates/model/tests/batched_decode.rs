//! Continuous batching's steps: sequences at different positions, each with its own cache,
//! decoded in one `forward_decode` call — or, with `forward_segments`, sharing the step with
//! prompt chunks being prefilled — give the logits each would get alone.

use candle_core::{DType, Device, Tensor};
use nanochat_fixtures::max_abs_diff;
use nanochat_model::init::{random_model, InitOptions};
use nanochat_model::{Config, Gpt, KvCache, Segment};

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

fn check(name: &str, cfg: &Config, dtype: DType) {
    let model = random_model(cfg, 7, dtype, &Device::Cpu, &InitOptions::nonzero()).unwrap();
    // bf16: `logits_alone` runs the whole context as a prompt, whose matmuls round activations
    // to bf16 (relative 2⁻⁸) where one decode row keeps them exact.
    let tolerance = if dtype == DType::BF16 { 2e-2 } else { 1e-4 };
    assert_eq!(
        model.kv_dtype(),
        dtype,
        "{name}: the KV cache follows the weights"
    );
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
                diff < tolerance,
                "{name}: step {step} row {row}: max |Δ| = {diff}"
            );
        }
    }
}

#[test]
fn batched_decode_matches_each_sequence_alone() {
    let base = Config::nanochat(64, 256, 2, 4, 4, 64);
    check("mha", &base, DType::F32);
    let gqa = Config {
        n_kv_head: 2,
        ..base.clone()
    };
    check("gqa 4/2", &gqa, DType::F32);
    // bf16 weights keep a bf16 KV cache, read by both attention paths.
    check("gqa 4/2 bf16", &gqa, DType::BF16);
    check(
        "mqa 4/1 tied",
        &Config {
            n_kv_head: 1,
            tie_embeddings: true,
            ..base
        },
        DType::F32,
    );
}

/// Two decoding sequences and a prompt prefilled in chunks of 5, 5 and 3 tokens (the first
/// chunk alone, the others sharing steps with the decode rows; only the last chunk asks for
/// logits): every row's logits match the sequence alone, and so does the prompt's cache.
#[test]
fn prompt_chunks_share_steps_with_decoding_sequences() {
    let cfg = Config {
        n_kv_head: 2,
        ..Config::nanochat(64, 256, 2, 4, 4, 64)
    };
    let model = random_model(&cfg, 3, DType::F32, &Device::Cpu, &InitOptions::nonzero()).unwrap();
    let prompt: Vec<u32> = (0..13).map(|i| (i * 17 + 3) % 256).collect();
    let mut decoding: Vec<(Vec<u32>, KvCache)> = [vec![5, 6, 7], vec![9; 11]]
        .into_iter()
        .map(|p| {
            let cache = prefilled(&model, &p, 4);
            (p, cache)
        })
        .collect();
    let mut prompt_cache = model.new_cache(1, prompt.len() + 1).unwrap();
    let mut fed = 0;
    for (step, chunk) in [5, 5, 3].into_iter().enumerate() {
        let next = &prompt[fed..fed + chunk];
        let last_chunk = fed + chunk == prompt.len();
        let tokens: Vec<u32> = (0..decoding.len() as u32)
            .map(|i| 50 + i + step as u32)
            .collect();
        let mut segments = vec![Segment {
            tokens: next,
            cache: &mut prompt_cache,
            logits: last_chunk,
        }];
        if step > 0 {
            for ((_, cache), token) in decoding.iter_mut().zip(&tokens) {
                segments.push(Segment {
                    tokens: std::slice::from_ref(token),
                    cache,
                    logits: true,
                });
            }
        }
        let rows = segments.iter().filter(|s| s.logits).count();
        let logits = model.forward_segments(&mut segments).unwrap();
        fed += chunk;
        assert_eq!(prompt_cache.pos(), fed);
        let Some(logits) = logits else {
            assert_eq!((step, rows), (0, 0), "logits missing");
            continue;
        };
        assert_eq!(logits.dims(), &[rows, cfg.vocab_size]);
        let decode_rows = if last_chunk {
            let got: Vec<f32> = logits.get(0).unwrap().to_vec1().unwrap();
            let diff = max_abs_diff(&got, &logits_alone(&model, &prompt));
            assert!(diff < 1e-4, "last chunk: max |Δ| = {diff}");
            1
        } else {
            0
        };
        for (row, (context, _)) in decoding.iter_mut().enumerate() {
            context.push(tokens[row]);
            let got: Vec<f32> = logits.get(row + decode_rows).unwrap().to_vec1().unwrap();
            let diff = max_abs_diff(&got, &logits_alone(&model, context));
            assert!(diff < 1e-4, "step {step} row {row}: max |Δ| = {diff}");
        }
    }
    // The prompt's cache now decodes like the prompt prefilled in one go.
    let mut alone = prefilled(&model, &prompt, 1);
    let a = model
        .forward_decode(&[77], &mut [&mut prompt_cache])
        .unwrap();
    let b = model.forward_decode(&[77], &mut [&mut alone]).unwrap();
    let values = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let diff = max_abs_diff(&values(a), &values(b));
    assert!(diff < 1e-4, "after the chunks: max |Δ| = {diff}");
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
    let empty = Segment {
        tokens: &[],
        cache: &mut cache,
        logits: true,
    };
    assert!(model.forward_segments(&mut [empty]).is_err());
}
