//! nanochat's `Engine.generate` (reference §5.2–5.4): KV-cached sampling of one or more rows
//! from a prompt, with the calculator tool.
//!
//! The generate loop is a state machine, one [`Generation::next_column`] call per step:
//!
//! ```text
//! new():   prefill the prompt once on a batch-1 cache → logits of its last position;
//!          copy that cache into a `num_samples`-row decode cache.
//! step:    stop if max_tokens columns were produced, or every row is completed;
//!          first step: sample ONE token from the prefill logits and give it to every row
//!                      (nanochat broadcasts it, so rows only diverge from step 2), or one
//!                      token per row from those logits when `broadcast_first_token` is off;
//!          later:      forward the previous column (B, 1) through the decode cache, sample
//!                      one token per row;
//!          per row:    the caller's `adjust` hook may edit the row's logits (grammar masks);
//!                      a queued forced token (calculator output) replaces the sampled one
//!                      (mask 0, the sampled token is wasted), else the sampled token (mask 1);
//!                      <|assistant_end|>, <|bos|> or an extra stop id completes the row (it
//!                      keeps receiving tokens while other rows run; callers ignore them);
//!                      tool state: <|python_start|> opens an expression, <|python_end|> closes
//!                      it and, if the calculator can evaluate it, queues
//!                      <|output_start|> result <|output_end|>;
//!          yield the column. Forced tokens count toward max_tokens and go through the model.
//! ```

use std::collections::VecDeque;

use candle_core::{Device, Tensor};
use nanochat_model::{Gpt, KvCache};
use nanochat_tokenizer::{SpecialIds, Tokenizer};

use crate::calculator::use_calculator;
use crate::error::{EngineError, Result};
use crate::sampling::{Sampler, SamplingParams};

/// A model with its tokenizer, ready to generate.
pub struct Engine<'a> {
    model: &'a Gpt,
    tokenizer: &'a Tokenizer,
    tokens: SpecialIds,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub num_samples: usize,
    /// `None` = until the rows complete or the context is full.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Token ids that end a row, besides `<|assistant_end|>` and `<|bos|>`.
    pub stop_token_ids: Vec<u32>,
    /// Run the calculator on `<|python_start|>…<|python_end|>` (nanochat always does).
    pub use_tools: bool,
    /// nanochat samples ONE first token and gives it to every row; `false` samples the first
    /// token per row (what an OpenAI server's `n` needs: independent choices).
    pub broadcast_first_token: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            num_samples: 1,
            max_tokens: None,
            sampling: SamplingParams::default(),
            seed: 42,
            stop_token_ids: Vec::new(),
            use_tools: true,
            broadcast_first_token: true,
        }
    }
}

/// Every row's tokens (prompt + reply) and masks (0 prompt or forced, 1 sampled).
pub type RowsAndMasks = (Vec<Vec<u32>>, Vec<Vec<u8>>);

/// One step's output: a token and a mask (1 sampled, 0 forced by the tool) per row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub tokens: Vec<u32>,
    pub masks: Vec<u8>,
}

/// Per-row state of the generate loop.
#[derive(Clone, Debug, Default)]
struct RowState {
    /// Prompt followed by every token given to this row (for penalties).
    context: Vec<u32>,
    /// Calculator output waiting to be forced, in order.
    forced: VecDeque<u32>,
    in_python_block: bool,
    python_expr: Vec<u32>,
    completed: bool,
}

impl<'a> Engine<'a> {
    pub fn new(model: &'a Gpt, tokenizer: &'a Tokenizer) -> Result<Self> {
        Ok(Self {
            model,
            tokenizer,
            tokens: tokenizer.special_ids()?,
        })
    }

    pub fn model(&self) -> &Gpt {
        self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tokenizer
    }

    pub fn tokens(&self) -> SpecialIds {
        self.tokens
    }

    /// Starts generating: runs the prefill and returns the state machine.
    pub fn generate(
        &self,
        prompt: &[u32],
        options: &GenerateOptions,
    ) -> Result<Generation<'_, 'a>> {
        Generation::new(self, prompt, options)
    }

    /// nanochat's `generate_batch`: every row's prompt + reply (terminal token excluded) and masks.
    pub fn generate_batch(
        &self,
        prompt: &[u32],
        options: &GenerateOptions,
    ) -> Result<RowsAndMasks> {
        let mut results = vec![prompt.to_vec(); options.num_samples];
        let mut masks = vec![vec![0u8; prompt.len()]; options.num_samples];
        let mut completed = vec![false; options.num_samples];
        let mut generation = self.generate(prompt, options)?;
        while let Some(column) = generation.next_column()? {
            for (row, (&token, &mask)) in column.tokens.iter().zip(&column.masks).enumerate() {
                if completed[row] {
                    continue;
                }
                if generation.is_terminal(token) {
                    completed[row] = true;
                } else {
                    results[row].push(token);
                    masks[row].push(mask);
                }
            }
            if completed.iter().all(|&c| c) {
                break;
            }
        }
        Ok((results, masks))
    }
}

/// A generation in progress; see the module documentation for the state machine.
pub struct Generation<'e, 'a> {
    engine: &'e Engine<'a>,
    options: GenerateOptions,
    prompt_len: usize,
    /// Decode cache, (n_layer, num_samples rows, …).
    cache: KvCache,
    rows: Vec<RowState>,
    sampler: Sampler,
    /// Logits the next column is sampled from: (1, vocab) after prefill, (rows, vocab) later.
    logits: Tensor,
    /// The previous column, fed to the model at the next step.
    previous: Vec<u32>,
    generated: usize,
    first: bool,
}

impl<'e, 'a> Generation<'e, 'a> {
    fn new(engine: &'e Engine<'a>, prompt: &[u32], options: &GenerateOptions) -> Result<Self> {
        if prompt.is_empty() {
            return Err(EngineError::BadRequest(
                "the prompt must not be empty".into(),
            ));
        }
        if options.num_samples == 0 {
            return Err(EngineError::BadRequest(
                "num_samples must be at least 1".into(),
            ));
        }
        options
            .sampling
            .validate()
            .map_err(EngineError::BadRequest)?;
        let model = engine.model;
        let vocab = model.config().vocab_size as u32;
        if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
            return Err(EngineError::BadRequest(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let limit = model.config().rotary_len();
        let capacity = match options.max_tokens {
            Some(m) => prompt.len() + m,
            None => model.config().sequence_len,
        };
        if prompt.len() + options.max_tokens.unwrap_or(0) > limit {
            return Err(EngineError::BadRequest(format!(
                "prompt ({}) + max_tokens ({}) exceeds the model's {limit} positions",
                prompt.len(),
                options.max_tokens.unwrap_or(0)
            )));
        }
        let device = model.device().clone();
        let mut prefill_cache = model.new_cache(1, prompt.len())?;
        let ids = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), &device)?;
        let logits = model.forward_last(&ids, Some(&mut prefill_cache))?;
        let mut cache = model.new_cache(options.num_samples, capacity.max(prompt.len()))?;
        cache.broadcast_from(&prefill_cache)?;
        let row = RowState {
            context: prompt.to_vec(),
            ..RowState::default()
        };
        Ok(Self {
            engine,
            options: options.clone(),
            prompt_len: prompt.len(),
            cache,
            rows: vec![row; options.num_samples],
            sampler: Sampler::new(options.sampling.clone(), options.seed),
            logits,
            previous: Vec::new(),
            generated: 0,
            first: true,
        })
    }

    /// Whether `token` ends a row.
    pub fn is_terminal(&self, token: u32) -> bool {
        let t = self.engine.tokens;
        token == t.assistant_end || token == t.bos || self.options.stop_token_ids.contains(&token)
    }

    /// Logits of the last model call, (1, vocab) after prefill or (rows, vocab) after a decode
    /// step (before any bias or penalty).
    pub fn last_logits(&self) -> &Tensor {
        &self.logits
    }

    /// Columns produced so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Whether each row has completed.
    pub fn completed(&self) -> Vec<bool> {
        self.rows.iter().map(|r| r.completed).collect()
    }

    fn device(&self) -> &Device {
        self.engine.model.device()
    }

    /// Runs one step; `None` when generation is over.
    pub fn next_column(&mut self) -> Result<Option<Column>> {
        self.next_column_with(&mut |_, _| Ok(()))
    }

    /// Runs one step, letting `adjust(row, logits)` edit each row's logits before sampling
    /// (a grammar sets forbidden tokens to −∞). Completed rows are not adjusted.
    pub fn next_column_with(
        &mut self,
        adjust: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Option<Column>> {
        if self.options.max_tokens.is_some_and(|m| self.generated >= m)
            || self.rows.iter().all(|r| r.completed)
        {
            return Ok(None);
        }
        let sampled: Vec<u32> = if self.first {
            self.first = false;
            if self.options.broadcast_first_token {
                let token = self.sample_row(0, adjust)?;
                vec![token; self.rows.len()]
            } else {
                (0..self.rows.len())
                    .map(|row| self.sample_row(row, adjust))
                    .collect::<Result<_>>()?
            }
        } else {
            if self.cache.pos() >= self.engine.model.config().rotary_len() {
                return Ok(None); // the context is full
            }
            let ids = Tensor::from_vec(self.previous.clone(), (self.rows.len(), 1), self.device())?;
            self.logits = self
                .engine
                .model
                .forward_last(&ids, Some(&mut self.cache))?;
            (0..self.rows.len())
                .map(|row| self.sample_row(row, adjust))
                .collect::<Result<_>>()?
        };
        let mut column = Column {
            tokens: Vec::with_capacity(sampled.len()),
            masks: Vec::with_capacity(sampled.len()),
        };
        for (row, sampled_token) in sampled.into_iter().enumerate() {
            let (token, mask) = match self.rows[row].forced.pop_front() {
                Some(forced) => (forced, 0),
                None => (sampled_token, 1),
            };
            self.advance_row(row, token)?;
            column.tokens.push(token);
            column.masks.push(mask);
        }
        self.previous = column.tokens.clone();
        self.generated += 1;
        Ok(Some(column))
    }

    /// Marks `row` completed (the caller saw a stop sequence): it no longer keeps the
    /// generation going, and its later tokens are to be ignored like after a terminal token.
    pub fn finish_row(&mut self, row: usize) {
        if let Some(state) = self.rows.get_mut(row) {
            state.completed = true;
        }
    }

    /// Which row of [`Self::last_logits`] row `row`'s latest token was sampled from (the
    /// prefill logits have one row shared by all).
    pub fn logits_row(&self, row: usize) -> usize {
        if self.logits.dims().first() == Some(&1) {
            0
        } else {
            row
        }
    }

    /// Samples a token for `row` from its logits row, after the caller's adjustment.
    fn sample_row(
        &mut self,
        row: usize,
        adjust: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<u32> {
        let mut logits: Vec<f32> = self.logits.get(self.logits_row(row))?.to_vec1()?;
        let state = &self.rows[row];
        if !state.completed {
            adjust(row, &mut logits)?;
        }
        Ok(self
            .sampler
            .sample(&mut logits, &state.context, self.prompt_len))
    }

    /// Appends `token` to `row` and runs the tool state machine.
    fn advance_row(&mut self, row: usize, token: u32) -> Result<()> {
        let t = self.engine.tokens;
        let terminal = self.is_terminal(token);
        let use_tools = self.options.use_tools;
        let tokenizer = self.engine.tokenizer;
        let state = &mut self.rows[row];
        state.context.push(token);
        if terminal {
            state.completed = true;
        }
        if !use_tools {
            return Ok(());
        }
        if token == t.python_start {
            state.in_python_block = true;
            state.python_expr.clear();
        } else if token == t.python_end && state.in_python_block {
            state.in_python_block = false;
            if !state.python_expr.is_empty() {
                let expr = tokenizer.decode(&state.python_expr)?;
                if let Some(result) = use_calculator(&expr) {
                    state.forced.push_back(t.output_start);
                    state.forced.extend(tokenizer.encode(&result)?);
                    state.forced.push_back(t.output_end);
                }
            }
            state.python_expr.clear();
        } else if state.in_python_block {
            state.python_expr.push(token);
        }
        Ok(())
    }
}
