//! nanochat's `Engine.generate` (reference §5.2–5.4): KV-cached sampling of one or more rows
//! from a prompt, with the calculator tool.
//!
//! The generate loop is a state machine, one [`Generation::next_column`] call per step:
//!
//! ```text
//! new():   prefill the prompt once → a batch-1 cache and the logits of its last position;
//!          every row is a [`Sequence`] with its own copy of that cache and its own sampler
//!          (row r seeded `seed + r`).
//! step:    stop if max_tokens columns were produced, or every row is completed;
//!          first step: sample ONE token from the prefill logits and give it to every row
//!                      (nanochat broadcasts it, so rows only diverge from step 2), or one
//!                      token per row from those logits when `broadcast_first_token` is off;
//!          later:      forward the previous column in one batched decode step (each row
//!                      through its own cache), sample one token per row;
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

use nanochat_model::Gpt;
use nanochat_tokenizer::{SpecialIds, Tokenizer};

use crate::error::{EngineError, Result};
use crate::sampling::SamplingParams;
use crate::sequence::{decode_step, prefill, Sequence, SequenceOptions};

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
    /// One sequence per row, each with its own cache (n_layer, 1, n_kv_head, capacity, head_dim).
    rows: Vec<Sequence>,
    generated: usize,
    first: bool,
}

impl<'e, 'a> Generation<'e, 'a> {
    fn new(engine: &'e Engine<'a>, prompt: &[u32], options: &GenerateOptions) -> Result<Self> {
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
        let room = match options.max_tokens {
            Some(m) => m,
            None => model.config().sequence_len.saturating_sub(prompt.len()),
        };
        let (cache, logits) = prefill(model, prompt, room)?;
        let mut prefilled = Some(cache);
        let mut rows = Vec::with_capacity(options.num_samples);
        for row in 0..options.num_samples {
            // Every row but the last gets a copy of the prompt's cache; the last takes it.
            let cache = match &prefilled {
                Some(cache) if row + 1 < options.num_samples => cache.duplicate()?,
                _ => prefilled
                    .take()
                    .expect("the prefill cache is taken once, by the last row"),
            };
            let row_options = SequenceOptions {
                sampling: options.sampling.clone(),
                seed: options.seed.wrapping_add(row as u64),
                stop_token_ids: options.stop_token_ids.clone(),
                use_tools: options.use_tools,
            };
            rows.push(Sequence::new(
                cache,
                logits.clone(),
                prompt,
                engine.tokens,
                row_options,
            )?);
        }
        Ok(Self {
            engine,
            options: options.clone(),
            rows,
            generated: 0,
            first: true,
        })
    }

    /// Whether `token` ends a row.
    pub fn is_terminal(&self, token: u32) -> bool {
        self.rows[0].is_terminal(token)
    }

    /// The logits (vocab) row `row`'s latest token was drawn from, before any adjustment.
    pub fn row_logits(&self, row: usize) -> &[f32] {
        self.rows[row].logits()
    }

    /// Columns produced so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Whether each row has completed.
    pub fn completed(&self) -> Vec<bool> {
        self.rows.iter().map(|r| r.is_completed()).collect()
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
            || self.rows.iter().all(|r| r.is_completed())
        {
            return Ok(None);
        }
        let sampled: Vec<u32> = if self.first {
            self.first = false;
            if self.options.broadcast_first_token {
                let token = self.rows[0].sample(&mut |logits| adjust(0, logits))?;
                vec![token; self.rows.len()]
            } else {
                self.sample_rows(adjust)?
            }
        } else {
            if self.rows[0].position() >= self.engine.model.config().rotary_len() {
                return Ok(None); // the context is full
            }
            let mut rows: Vec<&mut Sequence> = self.rows.iter_mut().collect();
            decode_step(self.engine.model, &mut rows)?;
            self.sample_rows(adjust)?
        };
        let mut column = Column {
            tokens: Vec::with_capacity(sampled.len()),
            masks: Vec::with_capacity(sampled.len()),
        };
        for (row, sampled_token) in self.rows.iter_mut().zip(sampled) {
            let (token, mask) = row.push(sampled_token, self.engine.tokenizer)?;
            column.tokens.push(token);
            column.masks.push(mask);
        }
        self.generated += 1;
        Ok(Some(column))
    }

    fn sample_rows(
        &mut self,
        adjust: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Vec<u32>> {
        self.rows
            .iter_mut()
            .enumerate()
            .map(|(row, sequence)| sequence.sample(&mut |logits| adjust(row, logits)))
            .collect()
    }

    /// Marks `row` completed (the caller saw a stop sequence): it no longer keeps the
    /// generation going, and its later tokens are to be ignored like after a terminal token.
    pub fn finish_row(&mut self, row: usize) {
        if let Some(sequence) = self.rows.get_mut(row) {
            sequence.finish();
        }
    }
}
