//! Backend events → the response a client reads: one JSON body (`chat.completion`,
//! `text_completion`) or an SSE stream of chunks (serving-anchors §4.2/§4.3):
//! - the first chunk of each choice carries `role: "assistant"` (and only the first);
//! - tool calls stream as a fragment with `index`, `id`, `type`, `name` and empty arguments,
//!   then a fragment with `index` and the arguments — `index` is on every fragment;
//! - each choice ends with its own chunk holding an empty delta and `finish_reason`;
//! - with `stream_options.include_usage`, every chunk has `usage: null` and one last chunk has
//!   `choices: []` and the usage; without it no chunk has a `usage` key;
//! - then `data: [DONE]`. A failure after the stream started is a `data: {"error": …}` event
//!   (the SDKs raise on it) and no `[DONE]`.
//!
//! Keep-alive comments go out every 15 s so proxies do not time out; `X-Accel-Buffering: no`
//! stops nginx from buffering the stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::api_error::ApiError;
use crate::backend::{Event, FinishReason, TokenLogprob, ToolCall};
use crate::metrics::RequestObserver;

/// Which API the response is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Chat,
    /// Legacy completions; `echo` is the prompt text to put before each choice's text.
    Completion {
        echo: Option<String>,
    },
}

/// What every chunk or body repeats.
#[derive(Clone, Debug)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub fingerprint: String,
    pub n: usize,
    pub logprobs: bool,
    pub include_usage: bool,
    pub shape: Shape,
}

/// One choice, accumulated for a non-streaming body.
#[derive(Default)]
struct Choice {
    text: String,
    tool_calls: Vec<ToolCall>,
    logprobs: Vec<TokenLogprob>,
    finish: Option<FinishReason>,
    completion_tokens: usize,
}

/// Reads events to the end and builds the non-streaming body.
pub async fn collect(
    meta: ResponseMeta,
    prompt_tokens: usize,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut observer: Option<RequestObserver>,
) -> Response {
    let mut choices: Vec<Choice> = (0..meta.n).map(|_| Choice::default()).collect();
    while choices.iter().any(|c| c.finish.is_none()) {
        let Some(event) = events.recv().await else {
            return ApiError::internal("the model stopped before finishing the answer")
                .into_response();
        };
        if let Some(observer) = &mut observer {
            observer.on_event(&event);
        }
        match event {
            Event::Started { .. } => {}
            Event::Text {
                index,
                text,
                logprobs,
            } => {
                if let Some(c) = choices.get_mut(index) {
                    c.text.push_str(&text);
                    c.logprobs.extend(logprobs);
                }
            }
            Event::ToolCall { index, call } => {
                if let Some(c) = choices.get_mut(index) {
                    c.tool_calls.push(call);
                }
            }
            Event::Finished {
                index,
                reason,
                completion_tokens,
            } => {
                if let Some(c) = choices.get_mut(index) {
                    c.finish = Some(reason);
                    c.completion_tokens = completion_tokens;
                }
            }
            Event::Failed(error) => return error.into_response(),
        }
    }
    let completion_tokens = choices.iter().map(|c| c.completion_tokens).sum();
    let body_choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let finish = c.finish.map(FinishReason::as_str);
            match &meta.shape {
                Shape::Chat => {
                    let mut message = json!({
                        "role": "assistant",
                        "content": if c.text.is_empty() && !c.tool_calls.is_empty() { Value::Null } else { Value::String(c.text) },
                        "refusal": null,
                    });
                    if !c.tool_calls.is_empty() {
                        message["tool_calls"] = c.tool_calls.iter().map(tool_call_json).collect();
                    }
                    json!({"index": index, "message": message, "logprobs": chat_logprobs(&meta, &c.logprobs), "finish_reason": finish})
                }
                Shape::Completion { echo } => {
                    let prefix = echo.clone().unwrap_or_default();
                    let logprobs = legacy_logprobs(&meta, &c.logprobs, prefix.len());
                    json!({"index": index, "text": prefix + &c.text, "logprobs": logprobs, "finish_reason": finish})
                }
            }
        })
        .collect();
    let object = match meta.shape {
        Shape::Chat => "chat.completion",
        Shape::Completion { .. } => "text_completion",
    };
    axum::Json(json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": body_choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }))
    .into_response()
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

fn tool_call_json(call: &ToolCall) -> Value {
    json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
}

fn chat_logprobs(meta: &ResponseMeta, logprobs: &[TokenLogprob]) -> Value {
    if !meta.logprobs {
        return Value::Null;
    }
    let content: Vec<Value> = logprobs
        .iter()
        .map(|lp| {
            let top: Vec<Value> = lp.top.iter().map(|t| json!({"token": t.token, "logprob": t.logprob, "bytes": t.bytes})).collect();
            json!({"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes, "top_logprobs": top})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// The legacy shape: parallel arrays, offsets into the returned text.
fn legacy_logprobs(meta: &ResponseMeta, logprobs: &[TokenLogprob], start_offset: usize) -> Value {
    if !meta.logprobs {
        return Value::Null;
    }
    let mut offset = start_offset;
    let mut offsets = Vec::new();
    for lp in logprobs {
        offsets.push(offset);
        offset += lp.token.len();
    }
    let top: Vec<Value> = logprobs
        .iter()
        .map(|lp| {
            Value::Object(
                lp.top
                    .iter()
                    .map(|t| (t.token.clone(), json!(t.logprob)))
                    .collect::<Map<_, _>>(),
            )
        })
        .collect();
    json!({
        "tokens": logprobs.iter().map(|lp| lp.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": logprobs.iter().map(|lp| lp.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// The streaming state: events in, SSE frames out.
struct Streamer {
    meta: ResponseMeta,
    events: mpsc::UnboundedReceiver<Event>,
    frames: VecDeque<SseEvent>,
    prompt_tokens: usize,
    completion_tokens: usize,
    /// Per choice: tool calls sent so far (the fragments' `index`), and finished.
    tool_calls: Vec<usize>,
    finished: Vec<bool>,
    /// Nothing more will be sent after the queued frames.
    ended: bool,
    observer: Option<RequestObserver>,
}

impl Streamer {
    fn chunk(&self, choices: Vec<Value>) -> SseEvent {
        let object = match self.meta.shape {
            Shape::Chat => "chat.completion.chunk",
            Shape::Completion { .. } => "text_completion",
        };
        let mut chunk = json!({
            "id": self.meta.id,
            "object": object,
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": self.meta.fingerprint,
            "choices": choices,
        });
        if self.meta.include_usage {
            chunk["usage"] = Value::Null;
        }
        SseEvent::default().data(chunk.to_string())
    }

    fn chat_choice(
        &self,
        index: usize,
        delta: Value,
        logprobs: &[TokenLogprob],
        finish: Option<FinishReason>,
    ) -> Value {
        let logprobs = if logprobs.is_empty() {
            Value::Null
        } else {
            chat_logprobs(&self.meta, logprobs)
        };
        json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish.map(FinishReason::as_str)})
    }

    fn completion_choice(
        &self,
        index: usize,
        text: String,
        logprobs: &[TokenLogprob],
        finish: Option<FinishReason>,
    ) -> Value {
        let logprobs = if logprobs.is_empty() {
            Value::Null
        } else {
            legacy_logprobs(&self.meta, logprobs, 0)
        };
        json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish.map(FinishReason::as_str)})
    }

    fn on_event(&mut self, event: Event) {
        if let Some(observer) = &mut self.observer {
            observer.on_event(&event);
        }
        let frame = match event {
            Event::Started { .. } => return,
            Event::Text {
                index,
                text,
                logprobs,
            } => match self.meta.shape {
                Shape::Chat => self.chunk(vec![self.chat_choice(
                    index,
                    json!({"content": text}),
                    &logprobs,
                    None,
                )]),
                Shape::Completion { .. } => {
                    self.chunk(vec![self.completion_choice(index, text, &logprobs, None)])
                }
            },
            Event::ToolCall { index, call } => {
                let Some(k) = self.tool_calls.get_mut(index) else {
                    return;
                };
                let k_now = *k;
                *k += 1;
                let head = json!({"tool_calls": [{"index": k_now, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]});
                let args = json!({"tool_calls": [{"index": k_now, "function": {"arguments": call.arguments}}]});
                let head = self.chunk(vec![self.chat_choice(index, head, &[], None)]);
                self.frames.push_back(head);
                self.chunk(vec![self.chat_choice(index, args, &[], None)])
            }
            Event::Finished {
                index,
                reason,
                completion_tokens,
            } => {
                if let Some(f) = self.finished.get_mut(index) {
                    *f = true;
                }
                self.completion_tokens += completion_tokens;
                match self.meta.shape {
                    Shape::Chat => {
                        self.chunk(vec![self.chat_choice(index, json!({}), &[], Some(reason))])
                    }
                    Shape::Completion { .. } => self.chunk(vec![self.completion_choice(
                        index,
                        String::new(),
                        &[],
                        Some(reason),
                    )]),
                }
            }
            Event::Failed(error) => {
                self.frames
                    .push_back(SseEvent::default().data(error.body().to_string()));
                self.ended = true;
                return;
            }
        };
        self.frames.push_back(frame);
        if self.finished.iter().all(|&f| f) {
            self.close();
        }
    }

    /// The usage chunk (when asked) and `[DONE]`.
    fn close(&mut self) {
        if self.meta.include_usage {
            let mut chunk = json!({
                "id": self.meta.id,
                "object": if self.meta.shape == Shape::Chat { "chat.completion.chunk" } else { "text_completion" },
                "created": self.meta.created,
                "model": self.meta.model,
                "system_fingerprint": self.meta.fingerprint,
                "choices": [],
            });
            chunk["usage"] = usage(self.prompt_tokens, self.completion_tokens);
            self.frames
                .push_back(SseEvent::default().data(chunk.to_string()));
        }
        self.frames.push_back(SseEvent::default().data("[DONE]"));
        self.ended = true;
    }
}

/// The SSE response. Dropping it (the client left) drops `events`, which stops the backend.
pub fn stream(
    meta: ResponseMeta,
    prompt_tokens: usize,
    events: mpsc::UnboundedReceiver<Event>,
    observer: Option<RequestObserver>,
) -> Response {
    let n = meta.n;
    let mut streamer = Streamer {
        meta,
        events,
        frames: VecDeque::new(),
        prompt_tokens,
        completion_tokens: 0,
        tool_calls: vec![0; n],
        finished: vec![false; n],
        ended: false,
        observer,
    };
    if streamer.meta.shape == Shape::Chat {
        for index in 0..n {
            let first = streamer.chunk(vec![streamer.chat_choice(
                index,
                json!({"role": "assistant", "content": ""}),
                &[],
                None,
            )]);
            streamer.frames.push_back(first);
        }
    } else if let Shape::Completion { echo: Some(prompt) } = streamer.meta.shape.clone() {
        for index in 0..n {
            let echoed = streamer.chunk(vec![streamer.completion_choice(
                index,
                prompt.clone(),
                &[],
                None,
            )]);
            streamer.frames.push_back(echoed);
        }
    }
    let frames = stream::unfold(streamer, |mut s| async move {
        loop {
            if let Some(frame) = s.frames.pop_front() {
                return Some((Ok::<_, Infallible>(frame), s));
            }
            if s.ended {
                return None;
            }
            match s.events.recv().await {
                Some(event) => s.on_event(event),
                None => {
                    let error = ApiError::internal("the model stopped before finishing the answer");
                    s.on_event(Event::Failed(error));
                }
            }
        }
    });
    let mut response = Sse::new(frames)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
