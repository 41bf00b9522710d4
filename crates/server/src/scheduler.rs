//! Continuous batching for one checkpoint model: a thread that owns the model and steps every
//! running sequence together.
//!
//! Each turn of the loop:
//!
//! 1. take newly submitted requests (blocking only while nothing runs);
//! 2. forget waiting requests whose client has left;
//! 3. admit requests from the head of the queue, in arrival order, while their `n` sequences
//!    fit in the free slots (`max_seqs`) and the KV budget: render the prompt, refuse it when
//!    prompt + `max_tokens` exceeds the context (never clamped silently), prefill it (in
//!    chunks, see below), make one [`Sequence`] per choice, send `Started`;
//! 4. sample one token for every running sequence (grammar mask, logprobs, stop sequences and
//!    tool-call detection in its [`ChoiceOutput`]) and send it;
//! 5. drop finished requests and those whose client left: their KV caches are freed now;
//! 6. one batched forward ([`batch_step`]) over every sequence still running, together with
//!    the next chunk of the prompt being prefilled, if any.
//!
//! **KV budget rule.** Each sequence reserves `prompt + max_tokens` positions when admitted (its
//! cache is allocated at exactly that size and freed when it finishes or is cancelled); the
//! reservations of running sequences never exceed the budget, by default `max_seqs × context`
//! (so by default only `max_seqs` limits). A request that does not fit waits in the queue — no
//! later request overtakes it — and a request that could never fit (`n` above `max_seqs`, or
//! `n × (prompt + max_tokens)` above the budget) is refused with a 400 naming the parameter.
//! The queue itself holds at most `max_queue` requests; beyond that, 429 with `Retry-After`.
//!
//! **Chunked prefill, mixed into decode steps.** A forward pass carries at most
//! `max_batched_tokens` tokens (as vLLM's `max_num_batched_tokens`): one per decoding sequence,
//! the rest (at least one) taken by the next chunk of the prompt being prefilled, as extra rows
//! of the same forward pass ([`batch_step`]). The weights are read once for all rows, so a
//! prompt makes the running streams' steps somewhat longer instead of adding steps of its own;
//! with nothing else running, chunks of `max_batched_tokens` follow each other at once. Every
//! row is computed as it would be alone (the kernels treat rows independently; attention runs
//! per row), so a request's output does not depend on what else was running — except that bf16
//! weights take the bf16-dot kernels, which round activations to bf16, from 5 rows in one step
//! up. One request prefills at a time, keeping admission in arrival order.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};

use nanochat_engine::constraint::{Constraint, ConstraintFactory};
use nanochat_engine::{batch_step, EngineError, Prefill, Sequence, SequenceOptions};
use nanochat_model::checkpoint::LoadedModel;
use nanochat_model::KvCache;
use nanochat_tokenizer::Tokenizer;

use crate::api_error::ApiError;
use crate::backend::{
    BackendStats, Event, EventSender, FinishReason, GenerationRequest, OutputFormat, Prompt,
    RunningGuard, ToolChoice, ToolSpec,
};
use crate::chat_prompt::{render_chat, tool_call_schema};
use crate::choice_output::{ChoiceOutput, OutputMode};
use crate::logprobs::token_logprobs;
use crate::model_backend::LazyModel;

/// A request as submitted, with the channel its answer goes to.
pub(crate) struct Job {
    pub request: GenerationRequest,
    pub events: EventSender,
}

/// How many sequences may run at once, and how much KV memory they may reserve.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Sequences decoded together (`--max-seqs`).
    pub max_seqs: usize,
    /// KV positions that running sequences may reserve in all (`--kv-budget-tokens`).
    pub kv_budget_tokens: usize,
    /// Tokens per forward pass: decode rows first, the rest a prompt chunk
    /// (`--max-batched-tokens`).
    pub max_batched_tokens: usize,
}

/// The loaded model, its tokenizer and (built on first use) its grammar factory.
pub(crate) struct Model {
    pub loaded: LoadedModel,
    pub tokenizer: Tokenizer,
    pub constraints: Option<Arc<ConstraintFactory>>,
    /// Context window enforced on prompt + max_tokens.
    pub context: usize,
}

/// A waiting request, and once its prompt is rendered, what admitting it needs.
struct Waiting {
    job: Job,
    prepared: Option<Prepared>,
}

struct Prepared {
    prompt: Vec<u32>,
    max_tokens: usize,
    constraint: Option<Constraint>,
    mode: OutputMode,
}

impl Prepared {
    /// KV positions the request's sequences reserve.
    fn reservation(&self, n: usize) -> usize {
        n * (self.prompt.len() + self.max_tokens)
    }
}

/// An admitted request whose prompt is being prefilled, chunk by chunk.
struct Prefilling {
    job: Job,
    prepared: Prepared,
    prefill: Prefill,
    /// KV positions reserved for its sequences.
    reserved: usize,
    guard: RunningGuard,
}

/// A request being generated.
struct Running {
    events: EventSender,
    tools: Vec<ToolSpec>,
    logprobs: Option<usize>,
    choices: Vec<Choice>,
    /// KV positions reserved for its sequences.
    reserved: usize,
    _running: RunningGuard,
}

struct Choice {
    /// `None` once the choice has finished: its cache is freed.
    sequence: Option<Sequence>,
    output: ChoiceOutput,
    constraint: Option<Constraint>,
    max_tokens: usize,
}

pub(crate) struct Scheduler {
    limits: BatchLimits,
    stats: Arc<BackendStats>,
    waiting: VecDeque<Waiting>,
    /// The admitted request being prefilled, if any (it counts as running).
    prefilling: Option<Prefilling>,
    running: Vec<Running>,
}

impl Scheduler {
    pub fn new(limits: BatchLimits, stats: Arc<BackendStats>) -> Self {
        stats
            .kv_budget_tokens
            .store(limits.kv_budget_tokens, Ordering::SeqCst);
        Self {
            limits,
            stats,
            waiting: VecDeque::new(),
            prefilling: None,
            running: Vec::new(),
        }
    }

    /// Serves requests from `queue` until every sender is gone; `model` loads the first time a
    /// request needs it.
    pub fn run(mut self, queue: std_mpsc::Receiver<Job>, model: &mut LazyModel) {
        loop {
            // 1. New requests: wait for one when idle, else take what has arrived.
            if self.running.is_empty() && self.waiting.is_empty() && self.prefilling.is_none() {
                match queue.recv() {
                    Ok(job) => self.waiting.push_back(Waiting {
                        job,
                        prepared: None,
                    }),
                    Err(_) => return,
                }
            }
            while let Ok(job) = queue.try_recv() {
                self.waiting.push_back(Waiting {
                    job,
                    prepared: None,
                });
            }
            // 2. Clients that left while waiting.
            let stats = &self.stats;
            self.waiting.retain(|w| {
                let gone = w.job.events.is_closed();
                if gone {
                    stats.waiting.fetch_sub(1, Ordering::SeqCst);
                    stats.cancel();
                }
                !gone
            });
            let model = match model.get() {
                Ok(model) => model,
                Err(message) => {
                    tracing::error!("cannot load the model: {message}");
                    for w in self.waiting.drain(..) {
                        self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                        let _ = w.job.events.send(Event::Failed(ApiError::internal(format!(
                            "the model failed to load: {message}"
                        ))));
                    }
                    continue;
                }
            };
            // 3–6.
            self.admit(model);
            self.sample(model);
            self.drop_finished();
            self.decode(model);
        }
    }

    /// Sequences decoding, not counting the request being prefilled.
    fn decoding_sequences(&self) -> usize {
        self.running
            .iter()
            .map(|r| r.choices.iter().filter(|c| c.sequence.is_some()).count())
            .sum()
    }

    fn running_sequences(&self) -> usize {
        self.decoding_sequences() + self.prefilling.as_ref().map_or(0, |p| p.job.request.n)
    }

    fn reserved(&self) -> usize {
        self.running.iter().map(|r| r.reserved).sum::<usize>()
            + self.prefilling.as_ref().map_or(0, |p| p.reserved)
    }

    /// Step 3: admits waiting requests in order while they fit. With nothing decoding, a
    /// prompt is prefilled here, chunk after chunk; otherwise its chunks ride along with the
    /// decode steps (step 6).
    fn admit(&mut self, model: &mut Model) {
        let chunk = self.limits.max_batched_tokens.max(1);
        loop {
            if self.prefilling.is_none() && !self.admit_one(model) {
                break;
            }
            if self.decoding_sequences() > 0 || self.drop_abandoned_prefill() {
                break;
            }
            let Some(prefilling) = self.prefilling.as_mut() else {
                break;
            };
            let step = batch_step(
                &model.loaded.model,
                &mut [],
                Some((&mut prefilling.prefill, chunk)),
            );
            match step {
                Ok(None) => {}
                Ok(Some((cache, logits))) => self.prefilled(model, cache, logits),
                Err(error) => {
                    let prefilling = self.prefilling.take().expect("checked above");
                    let _ = prefilling
                        .job
                        .events
                        .send(Event::Failed(engine_error(error)));
                }
            }
        }
        self.publish_reserved();
    }

    /// Forgets the request being prefilled if its client has left (freeing its reservation);
    /// true if there was one.
    fn drop_abandoned_prefill(&mut self) -> bool {
        if self
            .prefilling
            .as_ref()
            .is_some_and(|p| p.job.events.is_closed())
        {
            self.prefilling = None;
            self.stats.cancel();
            return true;
        }
        false
    }

    /// The request being prefilled has its cache and first logits: its choices start running.
    fn prefilled(&mut self, model: &mut Model, cache: KvCache, logits: Vec<f32>) {
        let Some(prefilling) = self.prefilling.take() else {
            return;
        };
        match start(model, prefilling, cache, logits) {
            Ok(Some(running)) => self.running.push(running),
            Ok(None) => self.stats.cancel(), // the client left meanwhile
            Err((events, error)) => {
                let _ = events.send(Event::Failed(error));
            }
        }
    }

    /// Moves the head of the queue into `prefilling` if it fits; false if it cannot (yet).
    fn admit_one(&mut self, model: &mut Model) -> bool {
        while let Some(head) = self.waiting.front_mut() {
            if head.prepared.is_none() {
                match prepare(model, &head.job.request, self.limits) {
                    Ok(prepared) => head.prepared = Some(prepared),
                    Err(error) => {
                        self.refuse_head(error);
                        continue;
                    }
                }
            }
            let n = head.job.request.n;
            let need = head.prepared.as_ref().map_or(0, |p| p.reservation(n));
            if self.running_sequences() + n > self.limits.max_seqs
                || self.reserved() + need > self.limits.kv_budget_tokens
            {
                return false; // wait until running sequences finish
            }
            let Some(Waiting { job, prepared }) = self.waiting.pop_front() else {
                return false;
            };
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            let prepared = prepared.expect("prepared above");
            let guard = self.stats.start();
            match Prefill::new(&model.loaded.model, &prepared.prompt, prepared.max_tokens) {
                Ok(prefill) => {
                    self.prefilling = Some(Prefilling {
                        job,
                        prepared,
                        prefill,
                        reserved: need,
                        guard,
                    });
                    return true;
                }
                Err(error) => {
                    let _ = job.events.send(Event::Failed(engine_error(error)));
                }
            }
        }
        false
    }

    fn refuse_head(&mut self, error: ApiError) {
        if let Some(w) = self.waiting.pop_front() {
            self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            let _ = w.job.events.send(Event::Failed(error));
        }
    }

    /// Step 4: one token for every running sequence.
    fn sample(&mut self, model: &mut Model) {
        for running in &mut self.running {
            if running.events.is_closed() {
                continue; // dropped in step 5
            }
            if let Err(error) = sample_request(running, &model.tokenizer) {
                let _ = running.events.send(Event::Failed(error));
                for choice in &mut running.choices {
                    choice.sequence = None;
                }
            }
        }
    }

    /// Step 5: finished and abandoned requests leave, freeing their caches.
    fn drop_finished(&mut self) {
        let stats = &self.stats;
        self.running.retain(|r| {
            if r.events.is_closed() {
                stats.cancel();
                return false;
            }
            r.choices.iter().any(|c| c.sequence.is_some())
        });
        self.publish_reserved();
    }

    /// Step 6: one batched forward over every running sequence, with the next chunk of the
    /// prompt being prefilled, if any.
    fn decode(&mut self, model: &mut Model) {
        self.drop_abandoned_prefill();
        let mut sequences: Vec<&mut Sequence> = self
            .running
            .iter_mut()
            .flat_map(|r| r.choices.iter_mut().filter_map(|c| c.sequence.as_mut()))
            .collect();
        if sequences.is_empty() {
            return; // a prompt alone is prefilled by step 3
        }
        // The decode rows first; the prompt chunk fills the rest of the step's tokens.
        let chunk = self
            .limits
            .max_batched_tokens
            .saturating_sub(sequences.len())
            .max(1);
        let prefill = self.prefilling.as_mut().map(|p| (&mut p.prefill, chunk));
        match batch_step(&model.loaded.model, &mut sequences, prefill) {
            Ok(None) => {}
            Ok(Some((cache, logits))) => self.prefilled(model, cache, logits),
            Err(error) => {
                tracing::error!("decode step failed: {error}");
                let failed = |events: &EventSender| {
                    let _ = events.send(Event::Failed(ApiError::internal(format!(
                        "the model failed: {error}"
                    ))));
                };
                for running in self.running.drain(..) {
                    failed(&running.events);
                }
                if let Some(prefilling) = self.prefilling.take() {
                    failed(&prefilling.job.events);
                }
                self.publish_reserved();
            }
        }
    }

    fn publish_reserved(&self) {
        self.stats
            .kv_reserved_tokens
            .store(self.reserved(), Ordering::SeqCst);
    }
}

/// Renders the prompt and checks everything that can be checked before admission.
fn prepare(
    model: &mut Model,
    request: &GenerationRequest,
    limits: BatchLimits,
) -> Result<Prepared, ApiError> {
    let prompt = prompt_ids(model, request)?;
    let room = model.context.saturating_sub(prompt.len());
    let requested = match request.max_tokens {
        Some(m) if request.clamp_max_tokens && room > 0 => Some(m.min(room)),
        m => m,
    };
    if prompt.len() + requested.unwrap_or(1) > model.context {
        return Err(ApiError::context_length(
            model.context,
            prompt.len(),
            request.max_tokens,
        ));
    }
    let max_tokens = requested.unwrap_or(room);
    if request.n > limits.max_seqs {
        return Err(ApiError::invalid_value(
            "n",
            format!(
                "n = {} is more than the {} sequences this server decodes at once (--max-seqs)",
                request.n, limits.max_seqs
            ),
        ));
    }
    let prepared = constrained(model, request)?;
    let (constraint, forced_tool) = match prepared {
        Some((c, tool)) => (Some(c), tool),
        None => (None, false),
    };
    let mode = if forced_tool {
        OutputMode::ForcedTool
    } else if request.tool_choice == ToolChoice::Auto && !request.tools.is_empty() {
        OutputMode::MaybeTool
    } else {
        OutputMode::Text
    };
    let prepared = Prepared {
        prompt,
        max_tokens,
        constraint,
        mode,
    };
    let need = prepared.reservation(request.n);
    if need > limits.kv_budget_tokens {
        return Err(ApiError::invalid_value(
            if request.n > 1 { "n" } else { "max_tokens" },
            format!(
                "n × (prompt + max_tokens) = {need} positions is more than the server's KV \
                 budget of {} (--kv-budget-tokens); lower n or max_tokens",
                limits.kv_budget_tokens
            ),
        ));
    }
    Ok(prepared)
}

fn prompt_ids(model: &Model, request: &GenerationRequest) -> Result<Vec<u32>, ApiError> {
    let tok = &model.tokenizer;
    let specials = tok
        .special_ids()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ids = match &request.prompt {
        Prompt::Chat(messages) => render_chat(
            tok,
            specials,
            messages,
            &request.tools,
            &request.tool_choice,
        ),
        Prompt::Text(text) => tok
            .encode(text)
            .map(|ids| [vec![specials.bos], ids].concat()),
        Prompt::Tokens(ids) => {
            let vocab = model.loaded.config.vocab_size as u32;
            if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
                return Err(ApiError::invalid_value(
                    "prompt",
                    format!("token id {bad} is outside the vocabulary ({vocab})"),
                ));
            }
            Ok(if ids.is_empty() {
                vec![specials.bos]
            } else {
                ids.clone()
            })
        }
    };
    ids.map_err(|e| ApiError::invalid_request(e.to_string(), Some("messages")))
}

/// The grammar every choice must follow, if any, and whether it is a forced tool call.
fn constrained(
    model: &mut Model,
    request: &GenerationRequest,
) -> Result<Option<(Constraint, bool)>, ApiError> {
    let (schema, param, is_tool) = match (
        tool_call_schema(&request.tools, &request.tool_choice),
        &request.output,
    ) {
        (Some(schema), _) => (Some(schema), "tools", true),
        (None, OutputFormat::JsonSchema(schema)) => {
            (Some(schema.clone()), "response_format", false)
        }
        (None, OutputFormat::JsonObject) => (None, "response_format", false),
        (None, OutputFormat::Text) => return Ok(None),
    };
    // Built on the first constrained request (~0.2 s for a 65k vocabulary), then kept.
    let factory = match &model.constraints {
        Some(factory) => factory.clone(),
        None => {
            let factory = Arc::new(ConstraintFactory::new(&model.tokenizer).map_err(internal)?);
            model.constraints = Some(factory.clone());
            factory
        }
    };
    let constraint = match schema {
        Some(schema) => factory.json_schema(&schema),
        None => factory.json_object(),
    };
    constraint
        .map(|c| Some((c, is_tool)))
        .map_err(|e| ApiError::invalid_request(format!("cannot use this schema: {e}"), Some(param)))
}

/// Makes the choices of a request whose prefill has finished; `Ok(None)` if its client has
/// gone.
fn start(
    model: &Model,
    prefilling: Prefilling,
    cache: KvCache,
    logits: Vec<f32>,
) -> Result<Option<Running>, (EventSender, ApiError)> {
    let Prefilling {
        job: Job { request, events },
        prepared,
        reserved,
        guard,
        ..
    } = prefilling;
    let fail = |events: EventSender, e: EngineError| (events, engine_error(e));
    let specials = match model.tokenizer.special_ids() {
        Ok(specials) => specials,
        Err(e) => return Err((events, internal(e))),
    };
    let mut prefilled = Some(cache);
    let mut choices = Vec::with_capacity(request.n);
    for index in 0..request.n {
        // Every choice but the last gets a copy of the prompt's cache; the last takes it.
        let cache = match &prefilled {
            Some(cache) if index + 1 < request.n => match cache.duplicate() {
                Ok(copy) => copy,
                Err(e) => return Err((events, internal(e))),
            },
            _ => prefilled.take().expect("the prefill cache is taken once"),
        };
        let options = SequenceOptions {
            sampling: request.sampling.clone(),
            seed: request.seed.wrapping_add(index as u64),
            stop_token_ids: Vec::new(),
            // the calculator's forced tokens would break a grammar
            use_tools: prepared.constraint.is_none(),
        };
        let sequence =
            match Sequence::new(cache, logits.clone(), &prepared.prompt, specials, options) {
                Ok(sequence) => sequence,
                Err(e) => return Err(fail(events, e)),
            };
        choices.push(Choice {
            sequence: Some(sequence),
            output: ChoiceOutput::new(index, prepared.mode, &request),
            constraint: prepared.constraint.clone(),
            max_tokens: prepared.max_tokens,
        });
    }
    let started = Event::Started {
        prompt_tokens: prepared.prompt.len(),
    };
    if events.send(started).is_err() {
        return Ok(None);
    }
    Ok(Some(Running {
        events,
        tools: request.tools,
        logprobs: request.logprobs,
        choices,
        reserved,
        _running: guard,
    }))
}

/// Samples, records and sends the next token of each running choice of one request.
fn sample_request(running: &mut Running, tokenizer: &Tokenizer) -> Result<(), ApiError> {
    let events = &running.events;
    for choice in &mut running.choices {
        let Some(sequence) = choice.sequence.as_mut() else {
            continue;
        };
        let constraint = &mut choice.constraint;
        let sampled = sequence
            .sample(&mut |logits| match constraint {
                Some(c) => c.mask_logits(logits),
                None => Ok(()),
            })
            .map_err(internal)?;
        let (token, _mask) = sequence.push(sampled, tokenizer).map_err(internal)?;
        let reason = if sequence.is_terminal(token) {
            Some(FinishReason::Stop)
        } else {
            if let Some(c) = constraint {
                c.commit(token).map_err(internal)?;
            }
            let logprobs = match running.logprobs {
                Some(top) => Some(
                    token_logprobs(tokenizer, sequence.logits(), token, top).map_err(internal)?,
                ),
                None => None,
            };
            if choice
                .output
                .push_token(token, logprobs, tokenizer, events)?
            {
                Some(FinishReason::Stop) // a stop sequence
            } else if sequence.generated() >= choice.max_tokens {
                Some(FinishReason::Length)
            } else {
                None
            }
        };
        if let Some(reason) = reason {
            choice.output.finish(reason, &running.tools, events)?;
            choice.sequence = None;
        }
    }
    Ok(())
}

/// A request the engine refuses is the client's error (400); anything else is ours (500).
fn engine_error(error: EngineError) -> ApiError {
    match error {
        EngineError::BadRequest(message) => ApiError::invalid_request(message, None),
        other => internal(other),
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}
