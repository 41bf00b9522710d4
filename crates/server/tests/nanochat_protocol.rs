//! nanochat's own web protocol against the transcripts recorded from the real
//! `scripts/chat_web.py` serving `chatsft_checkpoints/d1` (fixture
//! `outputs/chat_web_transcripts.json`): SSE bodies byte for byte, validation errors, `/health`
//! and `/stats`.
//!
//! Known differences, by design: for malformed JSON FastAPI's `ctx.error` is Python's json
//! message and its `loc` a character index — ours is serde's message and a byte offset (same
//! status, type and shape). `GET /` (nanochat's UI page) is not served yet.

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use nanochat_model::checkpoint::checkpoint_in_dir;
use nanochat_server::model_backend::CheckpointSpec;
use nanochat_server::validate::RequestLimits;
use nanochat_server::{CheckpointModel, ServeConfig};
use serde_json::Value;
use tower::ServiceExt;

fn app() -> axum::Router {
    let dir = nanochat_fixtures::fixture("nanochat-2025/chatsft_checkpoints/d1");
    let config = ServeConfig {
        host: "127.0.0.1".into(),
        port: 0,
        checkpoints: vec![CheckpointModel {
            id: "sft-d1".into(),
            spec: CheckpointSpec {
                tokenizer_dir: Some(nanochat_fixtures::fixture("nanochat-2025/tokenizer")),
                // chat_web generates up to the rotary cache; 512 default tokens need room.
                max_model_len: Some(640),
                max_queue: 16,
                ..CheckpointSpec::new(checkpoint_in_dir(&dir, None).unwrap())
            },
            eager: true,
        }],
        simulated: vec!["gpt-sim-1".into()],
        simulator: Default::default(),
        api_key: None,
        cors_origins: vec![],
        max_request_bytes: 8 << 20,
        limits: RequestLimits::default(),
        faults: Default::default(),
    };
    nanochat_server::app(&config).unwrap().0
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn chat_web_transcripts_are_reproduced() {
    let fixture = nanochat_fixtures::fixture_json("outputs/chat_web_transcripts.json");
    let app = app();
    // nanochat answers once its model is loaded: wait for /ready, as a client would.
    for _ in 0..1000 {
        if call(&app, "GET", "/ready", None).await.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let path = case["path"].as_str().unwrap();
        if path == "/" {
            continue; // nanochat's UI page: our own UI comes with the web UI work
        }
        let body = match (&case["request_json"], &case["request_raw"]) {
            (Value::Null, Value::Null) => None,
            (Value::Null, raw) => Some(raw.as_str().unwrap().to_string()),
            (json, _) => Some(json.to_string()),
        };
        let (status, content_type, text) =
            call(&app, case["method"].as_str().unwrap(), path, body).await;
        assert_eq!(
            status.as_u16() as u64,
            case["status"].as_u64().unwrap(),
            "{name}: {text}"
        );
        assert_eq!(
            content_type,
            case["content_type"].as_str().unwrap(),
            "{name}"
        );
        let expected = case["body"].as_str().unwrap();
        if name == "err_bad_json" {
            let ours: Value = serde_json::from_str(&text).unwrap();
            let theirs: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(
                ours["detail"][0]["type"], theirs["detail"][0]["type"],
                "{name}"
            );
            assert_eq!(
                ours["detail"][0]["msg"], theirs["detail"][0]["msg"],
                "{name}"
            );
        } else {
            assert_eq!(text, expected, "{name}");
        }
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} cases checked");
}

#[tokio::test]
async fn an_openai_body_on_the_same_path_gets_an_openai_answer() {
    let app = app();
    let body = r#"{"model": "sft-d1", "messages": [{"role": "user", "content": "What is 12*34?"}], "temperature": 0, "max_tokens": 3}"#;
    let (status, _, text) = call(&app, "POST", "/chat/completions", Some(body.into())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "<|python_start|>12"
    );
    let (status, _, text) = call(
        &app,
        "POST",
        "/chat/completions",
        Some(r#"{"model": "nope", "messages": []}"#.into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("\"error\""), "{text}");
}
