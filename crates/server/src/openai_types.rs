//! Request bodies of the OpenAI API as clients send them (reference: openai-python's
//! `completion_create_params.py`). Deliberately lenient, because strict servers break real
//! clients: unknown fields are ignored (clients send `store`, `metadata`, `user`,
//! `service_tier`, …), `content` is a string, an array of parts or null, `stop` a string or an
//! array, and every optional field may be `null`. Numbers are read wide (`i64`/`f64`) so that
//! an out-of-range value reaches validation and gets a message naming its parameter instead of
//! a parse error. The extensions (`top_k`, `min_p`, `repetition_penalty`, and the simulator's
//! knobs) live here too.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub max_completion_tokens: Option<i64>,
    pub max_tokens: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub response_format: Option<ResponseFormatField>,
    pub tools: Option<Vec<WireTool>>,
    pub tool_choice: Option<ToolChoiceField>,
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub common: CommonFields,
}

/// `POST /v1/completions` (legacy).
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Option<PromptField>,
    pub max_tokens: Option<i64>,
    /// Legacy: the number of top log-probabilities (0–5), not a boolean.
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the returned text.
    pub echo: Option<bool>,
    #[serde(flatten)]
    pub common: CommonFields,
}

/// Fields chat and legacy completions share: sampling, choices, stop, streaming, extensions.
#[derive(Debug, Default, Deserialize)]
pub struct CommonFields {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<i64>,
    pub stop: Option<StopField>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logit_bias: Option<BTreeMap<String, f64>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Sampler extensions (llama.cpp/vLLM names) and the simulator's per-request knobs.
#[derive(Debug, Default, Deserialize)]
pub struct Extensions {
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    /// Simulator: `short` | `medium` | `long`.
    pub response_length: Option<String>,
    /// Simulator: `random` | `echo`.
    pub sim_mode: Option<String>,
    /// Simulator: time to first token, inter-token latency and its jitter (milliseconds).
    pub ttft_ms: Option<f64>,
    pub itl_ms: Option<f64>,
    pub itl_jitter_ms: Option<f64>,
    /// Simulator: sets the inter-token latency to 1000 / tokens_per_second.
    pub tokens_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    /// The Go simulator's latency knobs, accepted for compatibility: a uniform delay per chunk.
    pub delay_min_ms: Option<f64>,
    pub delay_max_ms: Option<f64>,
    pub tokens_per_second: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<ContentField>,
    pub tool_calls: Option<Vec<WireToolCall>>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ContentField {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of an array `content`: `{"type":"text","text":…}`; other types (images, audio,
/// files) are refused by validation with a message saying so.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    /// Assistant messages may carry `{"type":"refusal","refusal":…}` parts.
    pub refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

/// The legacy prompt: a string, strings, token ids, or lists of token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormatField {
    #[serde(rename = "type")]
    pub kind: String,
    /// OpenAI: `{name, schema, strict, description}`; the Go simulator put the schema itself here.
    pub json_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct WireTool {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
pub struct WireFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolChoiceField {
    /// `none` | `auto` | `required`.
    Mode(String),
    /// `{"type":"function","function":{"name":…}}`.
    Named { function: NamedFunction },
}

#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct WireToolCall {
    pub id: Option<String>,
    pub function: WireToolCallFunction,
}

#[derive(Debug, Deserialize)]
pub struct WireToolCallFunction {
    pub name: String,
    /// A JSON document as a string (OpenAI's convention); some clients send an object.
    pub arguments: Value,
}
