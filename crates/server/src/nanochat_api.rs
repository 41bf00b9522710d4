//! nanochat's own web protocol (scripts/chat_web.py, reference §6.1), so nanochat's UI and
//! scripts written for it work against this server:
//! - `POST /chat/completions` with nanochat's body `{messages, temperature?, max_tokens?,
//!   top_k?}` — told apart from an OpenAI body by the absence of `model` — answers
//!   `data: {"token": "…", "gpu": 0}` events (Python `json.dumps` spacing, UTF-8 unescaped) and
//!   `data: {"done": true}`;
//! - its validation, in its order and with its messages, as `400 {"detail": "…"}`; a missing
//!   `messages` field or malformed JSON is FastAPI's `422` with a `detail` list;
//! - `/health` and `/stats` fields (`ready`, `num_gpus`, `available_workers`, workers).
//!
//! The model is the server's nanochat model (`--model` first, else a discovered `sft-*`, else
//! any checkpoint, else a simulated one). Defaults are chat_web's: temperature 0.8, top-k 50,
//! 512 tokens; `max_tokens` is cut to what the context holds instead of refusing, as nanochat
//! would just generate.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use nanochat_engine::SamplingParams;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::backend::{
    ChatMessage, Event, GenerationRequest, OutputFormat, Prompt, Role, SimulationOverrides,
    ToolChoice,
};
use crate::metrics::RequestObserver;
use crate::routes::AppState;

/// A refused request: a status and a JSON body with nanochat's (FastAPI's) `detail`.
pub struct Refusal(StatusCode, Value);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// `400 {"detail": message}`, chat_web's HTTPException.
fn detail(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, json!({"detail": message.into()}))
}

/// FastAPI's 422 for a body it could not read.
fn unprocessable(item: Value) -> Refusal {
    Refusal(StatusCode::UNPROCESSABLE_ENTITY, json!({"detail": [item]}))
}

/// Whether a JSON body is nanochat's (no `model` field) rather than OpenAI's.
pub fn is_nanochat_body(body: &Value) -> bool {
    body.as_object().is_some_and(|o| !o.contains_key("model"))
}

/// Parses a body for the nanochat path; malformed JSON is FastAPI's `json_invalid`.
pub fn parse(bytes: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| {
        let offset = byte_offset(bytes, e.line(), e.column());
        unprocessable(json!({
            "type": "json_invalid", "loc": ["body", offset], "msg": "JSON decode error",
            "input": {}, "ctx": {"error": e.to_string()},
        }))
    })
}

fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// A number field that may be absent or null; `Err` for any other type.
fn number(body: &Value, field: &str) -> Result<Option<f64>, Refusal> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            unprocessable(json!({
                "type": "float_parsing", "loc": ["body", field],
                "msg": "Input should be a valid number", "input": v,
            }))
        }),
    }
}

/// chat_web's checks, in its order, into a generation request for `model`.
fn request(body: &Value, model: &str) -> Result<GenerationRequest, Refusal> {
    let Some(messages) = body.get("messages") else {
        return Err(unprocessable(json!({
            "type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": body,
        })));
    };
    let Some(messages) = messages.as_array() else {
        return Err(unprocessable(json!({
            "type": "list_type", "loc": ["body", "messages"], "msg": "Input should be a valid list", "input": messages,
        })));
    };
    let bad = |m: String| Err(detail(StatusCode::BAD_REQUEST, m));
    if messages.is_empty() {
        return bad("At least one message is required".into());
    }
    if messages.len() > 500 {
        return bad("Too many messages. Maximum 500 messages allowed per request".into());
    }
    let mut total = 0;
    let mut parsed = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let content = message.get("content").and_then(Value::as_str).unwrap_or("");
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if content.is_empty() {
            return bad(format!("Message {i} has empty content"));
        }
        let chars = content.chars().count();
        if chars > 8000 {
            return bad(format!(
                "Message {i} is too long. Maximum 8000 characters allowed per message"
            ));
        }
        total += chars;
        parsed.push((role, content));
    }
    if total > 32000 {
        return bad("Total conversation is too long. Maximum 32000 characters allowed".into());
    }
    let mut chat = Vec::with_capacity(parsed.len());
    for (i, (role, content)) in parsed.into_iter().enumerate() {
        let role = match role {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => {
                return bad(format!(
                    "Message {i} has invalid role. Must be 'user', 'assistant', or 'system'"
                ))
            }
        };
        chat.push(ChatMessage {
            role,
            content: content.to_string(),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        });
    }
    let temperature = number(body, "temperature")?;
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return bad("Temperature must be between 0.0 and 2.0".into());
    }
    let top_k = number(body, "top_k")?;
    if top_k.is_some_and(|k| !(1.0..=200.0).contains(&k)) {
        return bad("top_k must be between 1 and 200".into());
    }
    let max_tokens = number(body, "max_tokens")?;
    if max_tokens.is_some_and(|m| !(1.0..=4096.0).contains(&m)) {
        return bad("max_tokens must be between 1 and 4096".into());
    }
    Ok(GenerationRequest {
        model: model.to_string(),
        prompt: Prompt::Chat(chat),
        max_tokens: Some(max_tokens.map_or(512, |m| m as usize)),
        clamp_max_tokens: true,
        n: 1,
        sampling: SamplingParams::nanochat(
            temperature.map_or(0.8, |t| t as f32),
            Some(top_k.map_or(50, |k| k as usize)),
        ),
        seed: rand::random::<u32>() as u64,
        stop: vec![],
        logprobs: None,
        output: OutputFormat::Text,
        tools: vec![],
        tool_choice: ToolChoice::None,
        parallel_tool_calls: false,
        simulation: SimulationOverrides::default(),
    })
}

/// One SSE event as chat_web writes it: `json.dumps` with `", "` / `": "` separators.
fn token_frame(text: &str) -> Bytes {
    let token = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    Bytes::from(format!("data: {{\"token\": {token}, \"gpu\": 0}}\n\n"))
}

/// `POST /chat/completions` with a nanochat body.
pub async fn chat(state: &AppState, body: Value) -> Response {
    let Some(entry) = state
        .nanochat_model
        .as_deref()
        .and_then(|id| state.models.get(id))
    else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "No model is loaded").into_response();
    };
    let request = match request(&body, &entry.id) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let mut observer = RequestObserver::new(state.metrics.clone(), &entry.id, Instant::now());
    let (sender, mut events) = mpsc::unbounded_channel();
    entry.backend.submit(request, sender);
    match events.recv().await {
        Some(started @ Event::Started { .. }) => observer.on_event(&started),
        Some(Event::Failed(error)) => {
            state.metrics.error(&error);
            return detail(error.status, error.message).into_response();
        }
        _ => {
            return detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model stopped without answering",
            )
            .into_response()
        }
    }
    let frames = stream::unfold(Some((events, observer)), |state| async move {
        let (mut events, mut observer) = state?;
        loop {
            let event = events.recv().await;
            if let Some(event) = &event {
                observer.on_event(event);
            }
            let frame = match event {
                Some(Event::Text { text, .. }) if !text.is_empty() => token_frame(&text),
                Some(Event::Failed(error)) => {
                    let message = serde_json::to_string(&error.message).unwrap_or_default();
                    Bytes::from(format!("data: {{\"error\": {message}}}\n\n"))
                }
                Some(Event::Finished { .. }) | None => {
                    return Some((
                        Ok::<_, Infallible>(Bytes::from_static(b"data: {\"done\": true}\n\n")),
                        None,
                    ));
                }
                Some(_) => continue,
            };
            return Some((Ok(frame), Some((events, observer))));
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whether the nanochat model is free (chat_web's `available_workers`).
fn available(state: &AppState) -> usize {
    let busy = state
        .nanochat_model
        .as_deref()
        .and_then(|id| state.models.get(id))
        .is_some_and(|e| e.backend.stats().running.load(Ordering::SeqCst) > 0);
    usize::from(!busy)
}

/// `/health`: ours (`status`) plus chat_web's fields.
pub fn health(state: &AppState) -> Value {
    json!({
        "status": "ok",
        "ready": state.loading.pending() == 0,
        "num_gpus": 1,
        "available_workers": available(state),
    })
}

/// `/stats` in chat_web's shape: one CPU worker.
pub fn stats(state: &AppState) -> Value {
    let available = available(state);
    json!({
        "total_workers": 1,
        "available_workers": available,
        "busy_workers": 1 - available,
        "workers": [{"gpu_id": 0, "device": "cpu"}],
    })
}
