//! Continuous batching's mixed step: a prompt prefilled chunk by chunk inside the decode steps of
//! a running sequence (`batch_step`) gives the cache and logits of a prefill alone, and the
//! running sequence generates exactly what it generates alone.

use candle_core::Device;
use nanochat_engine::{
    batch_step, decode_step, prefill, Prefill, SamplingParams, Sequence, SequenceOptions,
};
use nanochat_fixtures::{fixture, max_abs_diff};
use nanochat_model::checkpoint::{find_checkpoint, load_checkpoint, Source};
use nanochat_model::Gpt;
use nanochat_tokenizer::Tokenizer;

fn greedy() -> SequenceOptions {
    SequenceOptions {
        sampling: SamplingParams::default(),
        seed: 1,
        stop_token_ids: Vec::new(),
        use_tools: false,
    }
}

fn sequence(model: &Gpt, tok: &Tokenizer, prompt: &[u32], room: usize) -> Sequence {
    let (cache, logits) = prefill(model, prompt, room).unwrap();
    Sequence::new(cache, logits, prompt, tok.special_ids().unwrap(), greedy()).unwrap()
}

/// Samples and pushes one token; returns it.
fn advance(sequence: &mut Sequence, tok: &Tokenizer) -> u32 {
    let sampled = sequence.sample(&mut |_| Ok(())).unwrap();
    sequence.push(sampled, tok).unwrap().0
}

#[test]
fn a_prompt_prefilled_inside_decode_steps_matches_a_prefill_alone() {
    let tok = Tokenizer::from_dir(&fixture("nanochat-2025/tokenizer")).unwrap();
    let files = find_checkpoint(&fixture("nanochat-2025"), Source::Sft, Some("d2"), None).unwrap();
    let model = load_checkpoint(&files, nanochat_model::WeightDType::F32, &Device::Cpu)
        .unwrap()
        .model;
    let bos = tok.special_ids().unwrap().bos;
    let running_prompt = [vec![bos], tok.encode("The sky is").unwrap()].concat();
    let new_prompt = [
        vec![bos],
        tok.encode("Once upon a time, in a land far away,").unwrap(),
    ]
    .concat();
    assert!(new_prompt.len() > 7, "the prompt must take several chunks");

    // Alone: the running sequence's next tokens, and the new prompt's prefill.
    let mut alone = sequence(&model, &tok, &running_prompt, 16);
    let mut want_tokens = Vec::new();
    for _ in 0..8 {
        want_tokens.push(advance(&mut alone, &tok));
        decode_step(&model, &mut [&mut alone]).unwrap();
    }
    let (_, want_logits) = prefill(&model, &new_prompt, 4).unwrap();

    // Mixed: the new prompt rides along in chunks of 3 tokens.
    let mut running = sequence(&model, &tok, &running_prompt, 16);
    let mut pending = Prefill::new(&model, &new_prompt, 4).unwrap();
    let mut got_tokens = Vec::new();
    let mut done = None;
    for _ in 0..8 {
        got_tokens.push(advance(&mut running, &tok));
        let prefill = done.is_none().then_some((&mut pending, 3));
        if let Some(result) = batch_step(&model, &mut [&mut running], prefill).unwrap() {
            done = Some(result);
        }
    }
    assert_eq!(got_tokens, want_tokens);
    let (cache, logits) = done.expect("the prompt was fed within 8 steps");
    assert_eq!(cache.pos(), new_prompt.len());
    let diff = max_abs_diff(&logits, &want_logits);
    assert!(diff < 1e-4, "prompt logits: max |Δ| = {diff}");

    // A finished prefill is not fed again.
    let again = batch_step(&model, &mut [], Some((&mut pending, 3)));
    assert!(again.is_err());
}
