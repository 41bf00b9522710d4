//! The seam between the HTTP layer and whatever produces tokens. A handler validates a request
//! into a [`GenerationRequest`], hands it to the model's [`Backend`] with the sending half of a
//! channel, and turns the [`Event`]s that come back into a JSON body or an SSE stream. Real
//! checkpoints ([`crate::model_backend`]) and simulated models ([`crate::simulator`]) are both
//! backends, so validation, streaming, usage, errors and auth are one code path.
//!
//! Cancellation is the channel: when the client goes away the handler (or the SSE stream) is
//! dropped, the receiver with it, and a backend stops as soon as it sees `events.is_closed()`
//! or a failed send. A batching scheduler (next step) slots in as another `Backend`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use nanochat_engine::SamplingParams;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api_error::ApiError;

/// What the client asked for, validated and normalised (OpenAI and legacy bodies alike).
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub model: String,
    pub prompt: Prompt,
    /// `None`: until the model stops or the context is full.
    pub max_tokens: Option<usize>,
    /// Cut `max_tokens` to what the context holds instead of refusing the request (nanochat's
    /// protocol; the OpenAI API refuses with `context_length_exceeded`).
    pub clamp_max_tokens: bool,
    /// Number of choices.
    pub n: usize,
    pub sampling: SamplingParams,
    /// The seed actually used (drawn at random when the client gave none).
    pub seed: u64,
    /// Up to 4 stop strings; the returned text excludes them.
    pub stop: Vec<String>,
    /// `Some(k)`: report log-probabilities with the top `k` alternatives.
    pub logprobs: Option<usize>,
    pub output: OutputFormat,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub simulation: SimulationOverrides,
}

#[derive(Clone, Debug)]
pub enum Prompt {
    /// A chat: messages with roles (system/developer already kept apart for the renderer).
    Chat(Vec<ChatMessage>),
    /// A raw text prompt (legacy completions).
    Text(String),
    /// Raw token ids (legacy completions).
    Tokens(Vec<u32>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Clone, Debug)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Assistant messages: the calls it made.
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: which call this answers, and the tool's name when given.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutputFormat {
    Text,
    JsonObject,
    JsonSchema(Value),
}

#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (`{"type":"object"}` when the client gave none).
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// `call_` + 24 characters.
    pub id: String,
    pub name: String,
    /// A JSON document, as OpenAI sends it (a string).
    pub arguments: String,
}

/// Per-request overrides of the simulator's behaviour (ignored by real models).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimulationOverrides {
    pub echo: Option<bool>,
    pub response_length: Option<String>,
    pub ttft_ms: Option<f64>,
    pub itl_ms: Option<f64>,
    pub itl_jitter_ms: Option<f64>,
}

/// One token's log-probability, with the best alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// What a backend reports, in order: `Started` once, then per choice any number of `Text` and
/// `ToolCall`, then its `Finished`. `Failed` may come instead of `Started` (the request is
/// refused: the client gets an HTTP error) or later (a stream ends with an error event).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Started {
        prompt_tokens: usize,
    },
    /// Text for choice `index`; never splits a character.
    Text {
        index: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    ToolCall {
        index: usize,
        call: ToolCall,
    },
    Finished {
        index: usize,
        reason: FinishReason,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// Sends events; `false` once the client has gone away (the backend should stop).
pub type EventSender = mpsc::UnboundedSender<Event>;

/// Counters a backend keeps, exported by `/metrics`.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests being generated now.
    pub running: AtomicUsize,
    /// Requests queued, not started yet.
    pub waiting: AtomicUsize,
    /// Requests dropped because the client went away.
    pub cancelled: AtomicU64,
    /// KV positions reserved by running sequences, and the most they may reserve (0 = a
    /// backend without a KV cache).
    pub kv_reserved_tokens: AtomicUsize,
    pub kv_budget_tokens: AtomicUsize,
}

impl BackendStats {
    /// Counts a request as running until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard(self.clone())
    }

    pub fn cancel(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

pub struct RunningGuard(Arc<BackendStats>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A model that can answer requests.
pub trait Backend: Send + Sync {
    /// Starts work on `request` and returns at once; events arrive on `events`.
    fn submit(&self, request: GenerationRequest, events: EventSender);

    fn stats(&self) -> Arc<BackendStats>;

    /// The context window in tokens, when known before loading (for `/v1/models`).
    fn context_length(&self) -> Option<usize> {
        None
    }
}

pub type SharedBackend = Arc<dyn Backend>;

/// `call_` + 24 random alphanumerics.
pub fn new_tool_call_id(rng: &mut impl rand::Rng) -> String {
    format!("call_{}", random_alphanumeric(rng, 24))
}

pub fn random_alphanumeric(rng: &mut impl rand::Rng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}
