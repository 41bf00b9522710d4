//! `/metrics` counts what happened: tokens, finishes by reason, errors by code, latency
//! histograms, and the running/waiting gauges going back to zero.

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use nanochat_server::simulator::SimulatorSettings;
use nanochat_server::validate::RequestLimits;
use nanochat_server::ServeConfig;
use tower::ServiceExt;

fn app() -> axum::Router {
    let config = ServeConfig {
        host: "127.0.0.1".into(),
        port: 0,
        checkpoints: vec![],
        simulated: vec!["gpt-sim-1".into()],
        simulator: SimulatorSettings {
            ttft_ms: 0.0,
            itl_ms: 0.0,
            itl_jitter_ms: 0.0,
            ..Default::default()
        },
        api_key: None,
        cors_origins: vec![],
        max_request_bytes: 1 << 20,
        limits: RequestLimits::default(),
        faults: Default::default(),
    };
    nanochat_server::app(&config).unwrap().0
}

async fn call(app: &axum::Router, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample line starting with `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn requests_tokens_errors_and_latencies_are_counted() {
    let app = app();
    let ask = |stream: bool, max_tokens: u32| {
        format!(
            r#"{{"model": "gpt-sim-1", "messages": [{{"role": "user", "content": "Hello there"}}], "stream": {stream}, "max_tokens": {max_tokens}, "response_length": "long"}}"#
        )
    };
    assert_eq!(
        call(&app, "POST", "/v1/chat/completions", &ask(false, 5))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = call(&app, "POST", "/v1/chat/completions", &ask(true, 7)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("[DONE]"));
    let unknown = r#"{"model": "nope", "messages": [{"role": "user", "content": "x"}]}"#;
    assert_eq!(
        call(&app, "POST", "/v1/chat/completions", unknown).await.0,
        StatusCode::NOT_FOUND
    );
    let bad = r#"{"model": "gpt-sim-1", "messages": [{"role": "user", "content": "x"}], "temperature": 9}"#;
    assert_eq!(
        call(&app, "POST", "/v1/chat/completions", bad).await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, text) = call(&app, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    let model = r#"{model="gpt-sim-1"}"#;
    assert_eq!(
        sample(&text, &format!("nanochat:generation_tokens_total{model}")),
        12.0
    );
    assert_eq!(
        sample(&text, &format!("nanochat:prompt_tokens_total{model}")),
        4.0,
        "2 × 'Hello there'"
    );
    assert_eq!(
        sample(
            &text,
            r#"nanochat:request_success_total{model="gpt-sim-1",finished_reason="length"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"nanochat:request_errors_total{code="model_not_found"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"nanochat:request_errors_total{code="invalid_value"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("nanochat:time_to_first_token_seconds_count{model}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("nanochat:e2e_request_latency_seconds_count{model}")
        ),
        2.0
    );
    // 5 + 7 tokens, one first token each: 10 gaps between tokens
    assert_eq!(
        sample(
            &text,
            &format!("nanochat:inter_token_latency_seconds_count{model}")
        ),
        10.0
    );
    assert_eq!(
        sample(
            &text,
            r#"nanochat:inter_token_latency_seconds_bucket{model="gpt-sim-1",le="+Inf"}"#
        ),
        10.0
    );
    assert!(text.contains("# TYPE nanochat:time_to_first_token_seconds histogram"));
    // The gauges return to zero once the simulator's tasks have ended (a moment after the
    // last event reached the client).
    let mut idle = false;
    for _ in 0..500 {
        let text = call(&app, "GET", "/metrics", "").await.1;
        let running = sample(&text, &format!("nanochat:num_requests_running{model}"));
        let waiting = sample(&text, &format!("nanochat:num_requests_waiting{model}"));
        if running == 0.0 && waiting == 0.0 {
            idle = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(idle, "requests still counted as running");
}
