//! The request path below HTTP: cancellation when the client goes away (simulated and real
//! models), and the SSE stream's shape for the cases a real client rarely triggers (a failure
//! mid-stream, tool-call fragments, usage only when asked).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::to_bytes;
use nanochat_engine::SamplingParams;
use nanochat_server::api_error::ApiError;
use nanochat_server::backend::{Backend, Event, FinishReason, GenerationRequest, ToolCall};
use nanochat_server::model_backend::CheckpointBackend;
use nanochat_server::respond::{self, ResponseMeta, Shape};
use nanochat_server::simulator::{SimulatedBackend, SimulatorSettings};
use serde_json::Value;
use tokio::sync::mpsc;

mod support;

/// A long-story request sampled at temperature 1.
fn request(model: &str, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        sampling: SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        },
        seed: 1,
        ..support::chat_request(model, "Tell me a long story.", max_tokens)
    }
}

/// Waits (up to 10 s) until `condition` holds.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn simulated_generation_stops_when_the_client_leaves() {
    // 50 ms between pieces and a long answer: finishing would take many seconds.
    let settings = SimulatorSettings {
        ttft_ms: 0.0,
        itl_ms: 50.0,
        itl_jitter_ms: 0.0,
        ..Default::default()
    };
    let backend = SimulatedBackend::new(settings);
    let mut req = request("sim", 10_000);
    req.simulation.response_length = Some("long".into());
    let (tx, mut rx) = mpsc::unbounded_channel();
    backend.submit(req, tx);
    assert!(matches!(rx.recv().await, Some(Event::Started { .. })));
    assert!(matches!(rx.recv().await, Some(Event::Text { .. })));
    drop(rx);
    let stats = backend.stats();
    assert!(
        eventually(|| stats.cancelled.load(Ordering::SeqCst) == 1
            && stats.running.load(Ordering::SeqCst) == 0)
        .await,
        "the simulated request kept running after its client left"
    );
}

/// The fixture model `sft-d2`, one sequence at a time.
fn checkpoint_backend(max_queue: usize) -> CheckpointBackend {
    support::sft_d2_backend(|spec| {
        spec.max_queue = max_queue;
        spec.max_seqs = 1;
    })
}

#[tokio::test]
async fn model_generation_stops_when_the_client_leaves() {
    let backend = checkpoint_backend(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    backend.submit(request("sft-d2", 600), tx);
    assert!(matches!(rx.recv().await, Some(Event::Started { .. })));
    drop(rx);
    let stats = backend.stats();
    assert!(
        eventually(|| stats.cancelled.load(Ordering::SeqCst) == 1
            && stats.running.load(Ordering::SeqCst) == 0)
        .await,
        "the model kept generating after its client left"
    );
    assert!(
        eventually(|| stats.kv_reserved_tokens.load(Ordering::SeqCst) == 0).await,
        "the cancelled sequence's KV reservation was not given back"
    );
    // The worker is free again: a new request is answered to the end.
    let (tx, mut rx) = mpsc::unbounded_channel();
    backend.submit(request("sft-d2", 5), tx);
    let mut finished = None;
    while let Some(event) = rx.recv().await {
        if let Event::Finished {
            completion_tokens, ..
        } = event
        {
            finished = Some(completion_tokens);
        }
    }
    assert!(finished.is_some_and(|n| n <= 5));
}

fn meta(include_usage: bool) -> ResponseMeta {
    ResponseMeta {
        id: "chatcmpl-test".into(),
        created: 1,
        model: "m".into(),
        fingerprint: "fp_0123456789".into(),
        n: 1,
        logprobs: false,
        include_usage,
        shape: Shape::Chat,
    }
}

/// Runs `events` through the SSE response and returns the `data:` payloads.
async fn sse_payloads(include_usage: bool, events: Vec<Event>) -> Vec<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    for event in events {
        tx.send(event).unwrap();
    }
    drop(tx);
    let response = respond::stream(meta(include_usage), 3, rx, None);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event_without_done() {
    let payloads = sse_payloads(
        false,
        vec![
            Event::Text {
                index: 0,
                text: "Hel".into(),
                logprobs: vec![],
            },
            Event::Failed(ApiError::internal("the model crashed")),
        ],
    )
    .await;
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "the model crashed");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!payloads.contains(&"[DONE]".to_string()));
}

#[tokio::test]
async fn chunks_carry_role_once_tool_indexes_and_usage_only_when_asked() {
    let call = |name: &str| ToolCall {
        id: format!("call_{name}"),
        name: name.into(),
        arguments: "{\"a\":1}".into(),
    };
    let events = vec![
        Event::ToolCall {
            index: 0,
            call: call("f"),
        },
        Event::ToolCall {
            index: 0,
            call: call("g"),
        },
        Event::Finished {
            index: 0,
            reason: FinishReason::ToolCalls,
            completion_tokens: 4,
        },
    ];
    let payloads = sse_payloads(true, events.clone()).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"].get("role").is_some())
        .count();
    assert_eq!(roles, 1);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let fragments: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    let indexes: Vec<u64> = fragments
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 0, 1, 1]);
    assert_eq!(fragments[0]["id"], "call_f");
    assert_eq!(fragments[1]["function"]["arguments"], "{\"a\":1}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["total_tokens"], 7);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null()));
    let without: Vec<Value> = sse_payloads(false, events)
        .await
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(without.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let backend = checkpoint_backend(1);
    // A is being generated (its reader is slow), B waits, C finds the queue full.
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    backend.submit(request("sft-d2", 600), a_tx);
    assert!(matches!(a_rx.recv().await, Some(Event::Started { .. })));
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    backend.submit(request("sft-d2", 3), b_tx);
    let (c_tx, mut c_rx) = mpsc::unbounded_channel();
    backend.submit(request("sft-d2", 3), c_tx);
    match c_rx.recv().await {
        Some(Event::Failed(error)) => {
            assert_eq!((error.status.as_u16(), error.retry_after), (429, Some(1)));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    drop(a_rx);
    assert!(
        matches!(b_rx.recv().await, Some(Event::Started { .. })),
        "B is served once A is gone"
    );
}
