//! One sequence being generated: the unit that continuous batching schedules, and each row of
//! [`crate::Generation`].
//!
//! A sequence owns its KV cache (batch 1, sized for prompt + max_tokens, so its memory is
//! returned the moment it is dropped), its sampler, its context (prompt + tokens so far, for
//! penalties) and the calculator's state. Its life:
//!
//! ```text
//! prefill(prompt)        one forward over the prompt → a cache and the last position's logits;
//!                        n choices of one prompt share it (`KvCache::duplicate`).
//! loop:
//!   sample(adjust)       draw from the current logits, after the caller's edit (grammar masks)
//!   push(sampled)        a queued calculator token replaces the sampled one (mask 0), else the
//!                        sampled token (mask 1); it joins the context and the tool state
//!                        machine; a terminal token completes the sequence
//!   decode_step([..])    one batched forward of every running sequence's latest token, each at
//!                        its own position → fresh logits for each (`batch_step` also carries
//!                        the next chunk of a prompt being prefilled in the same forward)
//! until the caller stops: completed, max_tokens pushed, or the context is full.
//! ```
//!
//! The sequence never decides on its own to skip a step: nanochat keeps feeding completed rows
//! of a batch, so [`crate::Generation`] does too; a server simply drops finished sequences.

use std::collections::VecDeque;

use candle_core::Tensor;
use nanochat_model::{Gpt, KvCache, Segment};
use nanochat_tokenizer::{SpecialIds, Tokenizer};

use crate::calculator::use_calculator;
use crate::error::{EngineError, Result};
use crate::sampling::{Sampler, SamplingParams};

/// Checks a prompt and runs it through the model once: its cache (room for `room` more
/// positions) and the logits (vocab) of its last position.
pub fn prefill(model: &Gpt, prompt: &[u32], room: usize) -> Result<(KvCache, Vec<f32>)> {
    let mut prefill = Prefill::new(model, prompt, room)?;
    loop {
        if let Some(done) = prefill.step(model, usize::MAX)? {
            return Ok(done);
        }
    }
}

/// A prompt being prefilled in chunks, so a server can run decode steps of other sequences
/// between them (chunked prefill): each [`Prefill::step`] feeds the next `chunk` tokens
/// through the model on top of the cache, and the last one yields the cache and logits.
pub struct Prefill {
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    done: usize,
    cache: Option<KvCache>,
}

impl Prefill {
    /// Checks the prompt (non-empty, ids in the vocabulary, prompt + room within the rotary
    /// table) and allocates its cache for prompt + `room` positions.
    pub fn new(model: &Gpt, prompt: &[u32], room: usize) -> Result<Self> {
        if prompt.is_empty() {
            return Err(EngineError::BadRequest(
                "the prompt must not be empty".into(),
            ));
        }
        let vocab = model.config().vocab_size as u32;
        if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
            return Err(EngineError::BadRequest(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let limit = model.config().rotary_len();
        if prompt.len() + room > limit {
            return Err(EngineError::BadRequest(format!(
                "prompt ({}) + max_tokens ({room}) exceeds the model's {limit} positions",
                prompt.len()
            )));
        }
        Ok(Self {
            prompt: prompt.to_vec(),
            done: 0,
            cache: Some(model.new_cache(1, prompt.len() + room)?),
        })
    }

    /// Prompt tokens not yet fed.
    pub fn remaining(&self) -> usize {
        self.prompt.len() - self.done
    }

    /// Feeds up to `chunk` more tokens (at least one); after the last, the cache and the
    /// logits (vocab) of the prompt's last position.
    pub fn step(&mut self, model: &Gpt, chunk: usize) -> Result<Option<(KvCache, Vec<f32>)>> {
        let cache = self
            .cache
            .as_mut()
            .ok_or_else(|| EngineError::BadRequest("this prefill has already finished".into()))?;
        let end = self.prompt.len().min(self.done + chunk.max(1));
        let ids = &self.prompt[self.done..end];
        let ids = Tensor::from_vec(ids.to_vec(), (1, ids.len()), model.device())?;
        // Only the last chunk's last position needs the lm_head.
        if end < self.prompt.len() {
            model.forward_hidden(&ids, Some(cache), &mut |_, _| {})?;
            self.done = end;
            return Ok(None);
        }
        let logits = model.forward_last(&ids, Some(cache))?;
        self.done = end;
        let cache = self.cache.take().expect("checked above");
        Ok(Some((cache, logits.flatten_all()?.to_vec1()?)))
    }
}

/// What a sequence needs besides its prompt.
#[derive(Clone, Debug)]
pub struct SequenceOptions {
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Token ids that complete the sequence, besides `<|assistant_end|>` and `<|bos|>`.
    pub stop_token_ids: Vec<u32>,
    /// Run the calculator on `<|python_start|>…<|python_end|>`.
    pub use_tools: bool,
}

/// The calculator's state machine (reference §5.4).
#[derive(Clone, Debug, Default)]
struct ToolState {
    /// Calculator output waiting to be forced, in order.
    forced: VecDeque<u32>,
    in_python_block: bool,
    python_expr: Vec<u32>,
}

pub struct Sequence {
    /// (n_layer, 1, n_kv_head, capacity, head_dim): this sequence's keys and values.
    cache: KvCache,
    /// (vocab): the logits the next token is drawn from (before any adjustment).
    logits: Vec<f32>,
    /// Scratch copy of `logits` that sampling may edit.
    scratch: Vec<f32>,
    sampler: Sampler,
    /// Prompt followed by every token pushed.
    context: Vec<u32>,
    prompt_len: usize,
    tools: ToolState,
    specials: SpecialIds,
    options: SequenceOptions,
    /// Tokens pushed so far.
    generated: usize,
    completed: bool,
}

impl Sequence {
    /// A sequence continuing `prompt`, from its prefilled `cache` and last-position `logits`.
    pub fn new(
        cache: KvCache,
        logits: Vec<f32>,
        prompt: &[u32],
        specials: SpecialIds,
        options: SequenceOptions,
    ) -> Result<Self> {
        options
            .sampling
            .validate()
            .map_err(EngineError::BadRequest)?;
        if cache.pos() != prompt.len() || cache.batch() != 1 {
            return Err(EngineError::BadRequest(format!(
                "a sequence needs the batch-1 cache of its {}-token prompt, got {} rows at {}",
                prompt.len(),
                cache.batch(),
                cache.pos()
            )));
        }
        Ok(Self {
            cache,
            scratch: Vec::with_capacity(logits.len()),
            logits,
            sampler: Sampler::new(options.sampling.clone(), options.seed),
            context: prompt.to_vec(),
            prompt_len: prompt.len(),
            tools: ToolState::default(),
            specials,
            options,
            generated: 0,
            completed: false,
        })
    }

    /// The logits the latest token was drawn from, or the next one will be (vocab).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Positions in the cache: prompt + tokens already fed back to the model.
    pub fn position(&self) -> usize {
        self.cache.pos()
    }

    /// Tokens pushed so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Whether a terminal token was pushed or [`Self::finish`] was called.
    pub fn is_completed(&self) -> bool {
        self.completed
    }

    /// Marks the sequence completed (a stop sequence matched); later tokens are to be ignored.
    pub fn finish(&mut self) {
        self.completed = true;
    }

    /// Whether `token` completes a sequence.
    pub fn is_terminal(&self, token: u32) -> bool {
        let t = self.specials;
        token == t.assistant_end || token == t.bos || self.options.stop_token_ids.contains(&token)
    }

    /// Draws a token from the current logits after `adjust` edited a copy of them (not called
    /// once the sequence is completed).
    pub fn sample(&mut self, adjust: &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<u32> {
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.logits);
        if !self.completed {
            adjust(&mut self.scratch)?;
        }
        Ok(self
            .sampler
            .sample(&mut self.scratch, &self.context, self.prompt_len))
    }

    /// Takes the next token — a queued calculator token if any (mask 0), else `sampled`
    /// (mask 1) — and runs the tool state machine. Returns the token and its mask.
    pub fn push(&mut self, sampled: u32, tokenizer: &Tokenizer) -> Result<(u32, u8)> {
        let (token, mask) = match self.tools.forced.pop_front() {
            Some(forced) => (forced, 0),
            None => (sampled, 1),
        };
        self.context.push(token);
        self.generated += 1;
        if self.is_terminal(token) {
            self.completed = true;
        }
        if self.options.use_tools {
            self.run_tools(token, tokenizer)?;
        }
        Ok((token, mask))
    }

    fn run_tools(&mut self, token: u32, tokenizer: &Tokenizer) -> Result<()> {
        let t = self.specials;
        let tools = &mut self.tools;
        if token == t.python_start {
            tools.in_python_block = true;
            tools.python_expr.clear();
        } else if token == t.python_end && tools.in_python_block {
            tools.in_python_block = false;
            if !tools.python_expr.is_empty() {
                let expr = tokenizer.decode(&tools.python_expr)?;
                if let Some(result) = use_calculator(&expr) {
                    tools.forced.push_back(t.output_start);
                    tools.forced.extend(tokenizer.encode(&result)?);
                    tools.forced.push_back(t.output_end);
                }
            }
            tools.python_expr.clear();
        } else if tools.in_python_block {
            tools.python_expr.push(token);
        }
        Ok(())
    }
}

/// One batched forward of the latest token of every sequence in `sequences`, each at its own
/// position and cache; replaces each one's logits. Every sequence must have pushed a token
/// since its last step.
pub fn decode_step(model: &Gpt, sequences: &mut [&mut Sequence]) -> Result<()> {
    batch_step(model, sequences, None).map(|_| ())
}

/// [`decode_step`], with the next `chunk` tokens of a prompt being prefilled in the same forward
/// (continuous batching's mixed step): the weights are read once for all rows, so a prompt
/// costs the running sequences slightly longer steps rather than steps of their own. Returns
/// the prefill's cache and the logits of the prompt's last position once its last chunk is in.
pub fn batch_step(
    model: &Gpt,
    sequences: &mut [&mut Sequence],
    mut prefill: Option<(&mut Prefill, usize)>,
) -> Result<Option<(KvCache, Vec<f32>)>> {
    let mut tokens = Vec::with_capacity(sequences.len());
    for sequence in sequences.iter() {
        if sequence.context.len() != sequence.cache.pos() + 1 {
            return Err(EngineError::BadRequest(
                "decode_step: a sequence has no new token to feed (push one first)".into(),
            ));
        }
        tokens.push(*sequence.context.last().expect("context holds the prompt"));
    }
    let mut segments = Vec::with_capacity(sequences.len() + 1);
    // The prompt chunk (first row block) and whether it is the prompt's last.
    let mut chunk_fed = None;
    if let Some((prefill, chunk)) = prefill.as_mut() {
        let Prefill {
            prompt,
            done,
            cache,
        } = &mut **prefill;
        let cache = cache
            .as_mut()
            .ok_or_else(|| EngineError::BadRequest("this prefill has already finished".into()))?;
        let end = prompt.len().min(*done + (*chunk).max(1));
        let last = end == prompt.len();
        segments.push(Segment {
            tokens: &prompt[*done..end],
            cache,
            logits: last,
        });
        chunk_fed = Some((end, last));
    }
    for (sequence, token) in sequences.iter_mut().zip(&tokens) {
        segments.push(Segment {
            tokens: std::slice::from_ref(token),
            cache: &mut sequence.cache,
            logits: true,
        });
    }
    if segments.is_empty() {
        return Ok(None);
    }
    let logits = model.forward_segments(&mut segments)?;
    drop(segments);
    let first = match chunk_fed {
        Some((_, true)) => 1, // the prompt's logits come first
        _ => 0,
    };
    if let Some(logits) = &logits {
        for (row, sequence) in sequences.iter_mut().enumerate() {
            sequence.logits = logits.get(first + row)?.to_vec1()?;
        }
    }
    match (prefill, chunk_fed) {
        (Some((prefill, _)), Some((end, last))) => {
            prefill.done = end;
            if !last {
                return Ok(None);
            }
            let cache = prefill.cache.take().expect("checked above");
            let logits = logits.expect("the last chunk asks for logits");
            Ok(Some((cache, logits.get(0)?.to_vec1()?)))
        }
        _ => Ok(None),
    }
}
