//! A nanochat checkpoint as a [`Backend`]: one worker thread owns the model and answers
//! requests in arrival order (the next step replaces this queue with a batching scheduler).
//!
//! Per request: render the prompt, refuse it with `context_length_exceeded` if prompt +
//! `max_tokens` does not fit (we never clamp silently), then run the engine with `n` rows
//! sharing one prefill. Each row goes through [`ChoiceOutput`]: UTF-8-safe text
//! ([`TextStream`]), stop sequences, log-probabilities, and tool-call detection. Structured
//! outputs and forced tool calls are produced under a JSON-schema [`Constraint`], so they always
//! parse (unless `max_tokens` cuts them, which reports `length`). The worker checks after
//! every step whether the client is still there, and drops the request when it is not.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use candle_core::{DType, Device};
use nanochat_engine::constraint::{Constraint, ConstraintFactory};
use nanochat_engine::{Engine, GenerateOptions, TextStream};
use nanochat_model::checkpoint::{load_checkpoint, read_meta, CheckpointFiles, LoadedModel};
use nanochat_model::save::tokenizer_dir_for;
use nanochat_tokenizer::Tokenizer;

use crate::api_error::ApiError;
use crate::backend::{
    Backend, BackendStats, Event, EventSender, FinishReason, GenerationRequest, OutputFormat,
    Prompt, ToolChoice, ToolSpec,
};
use crate::chat_prompt::{may_be_tool_call, parse_tool_calls, render_chat, tool_call_schema};
use crate::logprobs::token_logprobs;
use crate::stop::StopMatcher;

/// Where a checkpoint is and how to load it.
#[derive(Clone, Debug)]
pub struct CheckpointSpec {
    pub files: CheckpointFiles,
    pub tokenizer_dir: Option<PathBuf>,
    pub dtype: DType,
    /// Context window to enforce; default the model's training `sequence_len`.
    pub max_model_len: Option<usize>,
    /// Requests that may wait for the model; more are refused with 429 and `Retry-After`.
    pub max_queue: usize,
}

/// Counts models still loading, for `/ready`.
#[derive(Debug, Default)]
pub struct LoadingCounter(AtomicUsize);

impl LoadingCounter {
    pub fn pending(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Job {
    request: GenerationRequest,
    events: EventSender,
}

pub struct CheckpointBackend {
    jobs: std_mpsc::Sender<Job>,
    context: usize,
    max_queue: usize,
    stats: Arc<BackendStats>,
}

impl CheckpointBackend {
    /// Reads the checkpoint's meta (cheap) and starts the worker thread. With `eager`, the
    /// weights load now (counted in `loading` until done); otherwise on the first request.
    pub fn start(
        id: &str,
        spec: CheckpointSpec,
        eager: bool,
        loading: Arc<LoadingCounter>,
    ) -> Result<Self, String> {
        let (_, config) = read_meta(&spec.files.meta).map_err(|e| e.to_string())?;
        let context = spec
            .max_model_len
            .unwrap_or(config.sequence_len)
            .min(config.rotary_len());
        let spec_max_queue = spec.max_queue;
        let (jobs, queue) = std_mpsc::channel::<Job>();
        if eager {
            loading.0.fetch_add(1, Ordering::SeqCst);
        }
        let name = id.to_string();
        let stats = Arc::new(BackendStats::default());
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("model {id}"))
            .spawn(move || worker(name, spec, context, eager, loading, queue, worker_stats))
            .map_err(|e| format!("cannot start the worker thread: {e}"))?;
        Ok(Self {
            jobs,
            context,
            max_queue: spec_max_queue,
            stats,
        })
    }
}

impl Backend for CheckpointBackend {
    fn submit(&self, request: GenerationRequest, events: EventSender) {
        if self.stats.waiting.load(Ordering::SeqCst) >= self.max_queue {
            let error = ApiError::rate_limited(
                format!(
                    "The model {} has {} requests waiting; try again shortly.",
                    request.model, self.max_queue
                ),
                1,
            );
            let _ = events.try_send(Event::Failed(error));
            return;
        }
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        if let Err(std_mpsc::SendError(job)) = self.jobs.send(Job { request, events }) {
            let _ = job.events.try_send(Event::Failed(ApiError::internal(
                "the model's worker has stopped",
            )));
        }
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.context)
    }

    fn stats(&self) -> Arc<BackendStats> {
        self.stats.clone()
    }
}

/// The loaded model, its tokenizer and (built on first use) its grammar factory.
struct Worker {
    loaded: LoadedModel,
    tokenizer: Tokenizer,
    constraints: Option<Arc<ConstraintFactory>>,
    context: usize,
}

fn load(id: &str, spec: &CheckpointSpec, context: usize) -> Result<Worker, String> {
    let started = std::time::Instant::now();
    let loaded =
        load_checkpoint(&spec.files, spec.dtype, &Device::Cpu).map_err(|e| e.to_string())?;
    let tokenizer_dir = spec
        .tokenizer_dir
        .clone()
        .unwrap_or_else(|| tokenizer_dir_for(&spec.files));
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir).map_err(|e| e.to_string())?;
    if tokenizer.vocab_size() > loaded.config.vocab_size {
        return Err(format!(
            "the tokenizer in {} has {} tokens but the model only {}",
            tokenizer_dir.display(),
            tokenizer.vocab_size(),
            loaded.config.vocab_size
        ));
    }
    tracing::info!(
        model = id,
        seconds = started.elapsed().as_secs_f64(),
        "loaded {}",
        spec.files.weights.display()
    );
    Ok(Worker {
        loaded,
        tokenizer,
        constraints: None,
        context,
    })
}

fn worker(
    id: String,
    spec: CheckpointSpec,
    context: usize,
    eager: bool,
    loading: Arc<LoadingCounter>,
    queue: std_mpsc::Receiver<Job>,
    stats: Arc<BackendStats>,
) {
    let mut state: Option<Result<Worker, String>> = None;
    if eager {
        state = Some(load(&id, &spec, context));
        loading.0.fetch_sub(1, Ordering::SeqCst);
    }
    while let Ok(job) = queue.recv() {
        stats.waiting.fetch_sub(1, Ordering::SeqCst);
        if job.events.is_closed() {
            stats.cancel(); // the client left while waiting
            continue;
        }
        let _running = stats.start();
        let worker = state.get_or_insert_with(|| load(&id, &spec, context));
        let outcome = match worker {
            Ok(worker) => worker.run(job.request, &job.events, &stats),
            Err(message) => {
                tracing::error!(model = id, "cannot load: {message}");
                Err(ApiError::internal(format!(
                    "model {id} failed to load: {message}"
                )))
            }
        };
        if let Err(error) = outcome {
            let _ = job.events.blocking_send(Event::Failed(error));
        }
    }
}

impl Worker {
    fn prompt_ids(&self, request: &GenerationRequest) -> Result<Vec<u32>, ApiError> {
        let tok = &self.tokenizer;
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
                let vocab = self.loaded.config.vocab_size as u32;
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

    /// The grammar every row must follow, if any, and whether it is a forced tool call.
    fn constraint_for(
        &mut self,
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
        let factory = match &self.constraints {
            Some(factory) => factory.clone(),
            None => {
                let factory = Arc::new(
                    ConstraintFactory::new(&self.tokenizer)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                );
                self.constraints = Some(factory.clone());
                factory
            }
        };
        let constraint = match schema {
            Some(schema) => factory.json_schema(&schema),
            None => factory.json_object(),
        };
        constraint.map(|c| Some((c, is_tool))).map_err(|e| {
            ApiError::invalid_request(format!("cannot use this schema: {e}"), Some(param))
        })
    }

    fn run(
        &mut self,
        request: GenerationRequest,
        events: &EventSender,
        stats: &BackendStats,
    ) -> Result<(), ApiError> {
        let prompt = self.prompt_ids(&request)?;
        let room = self.context.saturating_sub(prompt.len());
        let requested = match request.max_tokens {
            Some(m) if request.clamp_max_tokens && room > 0 => Some(m.min(room)),
            m => m,
        };
        if prompt.len() + requested.unwrap_or(1) > self.context {
            return Err(ApiError::context_length(
                self.context,
                prompt.len(),
                request.max_tokens,
            ));
        }
        let max_tokens = requested.unwrap_or(room);
        // One compiled grammar; each row gets its own state (a clone).
        let (constraint, forced_tool) = match self.constraint_for(&request)? {
            Some((c, tool)) => (Some(c), tool),
            None => (None, false),
        };
        let constrained = constraint.is_some();
        let mut constraints: Vec<Option<Constraint>> = vec![constraint; request.n];
        let mode = if forced_tool {
            OutputMode::ForcedTool
        } else if request.tool_choice == ToolChoice::Auto && !request.tools.is_empty() {
            OutputMode::MaybeTool
        } else {
            OutputMode::Text
        };
        let mut outputs: Vec<ChoiceOutput> = (0..request.n)
            .map(|index| ChoiceOutput::new(index, mode, &request))
            .collect();
        if send(
            events,
            Event::Started {
                prompt_tokens: prompt.len(),
            },
        )
        .is_err()
        {
            stats.cancel();
            return Ok(());
        }
        let engine = Engine::new(&self.loaded.model, &self.tokenizer).map_err(internal)?;
        let options = GenerateOptions {
            num_samples: request.n,
            max_tokens: Some(max_tokens),
            sampling: request.sampling.clone(),
            seed: request.seed,
            stop_token_ids: Vec::new(),
            // the calculator's forced tokens would break a grammar
            use_tools: !constrained,
            broadcast_first_token: false,
        };
        let mut generation = engine
            .generate(&prompt, &options)
            .map_err(|e| ApiError::invalid_request(e.to_string(), None))?;
        loop {
            if events.is_closed() {
                stats.cancel(); // the client went away: stop generating
                return Ok(());
            }
            let column = generation
                .next_column_with(&mut |row, logits| match &mut constraints[row] {
                    Some(c) => c.mask_logits(logits),
                    None => Ok(()),
                })
                .map_err(internal)?;
            let Some(column) = column else { break };
            for (row, &token) in column.tokens.iter().enumerate() {
                let output = &mut outputs[row];
                if output.finished {
                    continue;
                }
                if generation.is_terminal(token) {
                    output.finish(FinishReason::Stop, &request.tools, events)?;
                    continue;
                }
                if let Some(c) = &mut constraints[row] {
                    c.commit(token).map_err(internal)?;
                }
                let logprobs = match request.logprobs {
                    Some(top) => {
                        let logits = generation
                            .last_logits()
                            .get(generation.logits_row(row))
                            .map_err(internal)?;
                        Some(
                            token_logprobs(&self.tokenizer, &logits, token, top)
                                .map_err(internal)?,
                        )
                    }
                    None => None,
                };
                if output.push_token(token, logprobs, &self.tokenizer, events)? {
                    generation.finish_row(row);
                    output.finish(FinishReason::Stop, &request.tools, events)?;
                }
            }
        }
        for output in outputs.iter_mut().filter(|o| !o.finished) {
            output.finish(FinishReason::Length, &request.tools, events)?;
        }
        Ok(())
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(error.to_string())
}

/// Sends from the worker thread; `Err` when the client has gone away.
fn send(events: &EventSender, event: Event) -> Result<(), ()> {
    events.blocking_send(event).map_err(|_| ())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputMode {
    Text,
    /// `tool_choice: auto`: hold text back while it may still be a JSON tool call.
    MaybeTool,
    /// The reply is a tool call (grammar-constrained); nothing is streamed as text.
    ForcedTool,
}

/// One choice's output on its way to events.
struct ChoiceOutput {
    index: usize,
    mode: OutputMode,
    text: TextStream,
    stop: StopMatcher,
    /// Text held back while it may be a tool call.
    held: String,
    pending_logprobs: Vec<crate::backend::TokenLogprob>,
    completion_tokens: usize,
    finished: bool,
}

impl ChoiceOutput {
    fn new(index: usize, mode: OutputMode, request: &GenerationRequest) -> Self {
        // Stop sequences would cut a JSON document in half: they apply to free text only.
        let stops = if mode == OutputMode::ForcedTool || request.output != OutputFormat::Text {
            Vec::new()
        } else {
            request.stop.clone()
        };
        Self {
            index,
            mode,
            text: TextStream::new(),
            stop: StopMatcher::new(&stops),
            held: String::new(),
            pending_logprobs: Vec::new(),
            completion_tokens: 0,
            finished: false,
        }
    }

    /// Takes a generated token; `Ok(true)` when a stop sequence completed.
    fn push_token(
        &mut self,
        token: u32,
        logprobs: Option<crate::backend::TokenLogprob>,
        tokenizer: &Tokenizer,
        events: &EventSender,
    ) -> Result<bool, ApiError> {
        self.completion_tokens += 1;
        self.pending_logprobs.extend(logprobs);
        let piece = self.text.push(tokenizer, token).map_err(internal)?;
        let (text, stopped) = self.stop.push(&piece);
        self.emit(text, events)?;
        Ok(stopped)
    }

    fn emit(&mut self, text: String, events: &EventSender) -> Result<(), ApiError> {
        match self.mode {
            OutputMode::ForcedTool => {
                self.held.push_str(&text);
                return Ok(());
            }
            OutputMode::MaybeTool => {
                self.held.push_str(&text);
                if may_be_tool_call(&self.held) {
                    return Ok(());
                }
                self.mode = OutputMode::Text;
                let held = std::mem::take(&mut self.held);
                return self.emit(held, events);
            }
            OutputMode::Text => {}
        }
        if text.is_empty() {
            return Ok(());
        }
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        // a closed channel is noticed by the generate loop
        let _ = send(
            events,
            Event::Text {
                index: self.index,
                text,
                logprobs,
            },
        );
        Ok(())
    }

    fn finish(
        &mut self,
        mut reason: FinishReason,
        tools: &[ToolSpec],
        events: &EventSender,
    ) -> Result<(), ApiError> {
        self.finished = true;
        let rest = self.stop.finish();
        if self.mode == OutputMode::Text {
            self.emit(rest, events)?;
        } else {
            self.held.push_str(&rest);
            let calls = parse_tool_calls(&self.held, tools);
            match calls {
                Some(calls) if reason == FinishReason::Stop => {
                    let mut rng = rand::rng();
                    for (name, arguments) in calls {
                        let call = crate::backend::ToolCall {
                            id: crate::backend::new_tool_call_id(&mut rng),
                            name,
                            arguments,
                        };
                        let _ = send(
                            events,
                            Event::ToolCall {
                                index: self.index,
                                call,
                            },
                        );
                    }
                    reason = FinishReason::ToolCalls;
                }
                _ => {
                    self.mode = OutputMode::Text;
                    let held = std::mem::take(&mut self.held);
                    self.emit(held, events)?;
                }
            }
        }
        if !self.pending_logprobs.is_empty() {
            let logprobs = std::mem::take(&mut self.pending_logprobs);
            let _ = send(
                events,
                Event::Text {
                    index: self.index,
                    text: String::new(),
                    logprobs,
                },
            );
        }
        let _ = send(
            events,
            Event::Finished {
                index: self.index,
                reason,
                completion_tokens: self.completion_tokens,
            },
        );
        Ok(())
    }
}
