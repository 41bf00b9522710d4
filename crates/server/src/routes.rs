//! The HTTP surface: routes, API-key check, body-size limit, CORS, and the request path of a
//! completion — parse → find the model → maybe inject a fault → validate → submit to the
//! backend → wait for its first event (so a refused request still gets its proper HTTP status,
//! even when streaming) → JSON body or SSE stream.
//!
//! `/health` (liveness) and `/ready` (503 while `--model` checkpoints load) stay open without
//! an API key; everything under `/v1` (and the un-prefixed aliases `/chat/completions`,
//! `/completions`, `/models` that some clients use) needs it when one is set.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::api_error::ApiError;
use crate::backend::{random_alphanumeric, Event, GenerationRequest, Prompt};
use crate::faults::FaultInjector;
use crate::metrics::{Metrics, RequestObserver};
use crate::model_backend::LoadingCounter;
use crate::nanochat_api;
use crate::openai_types::{ChatCompletionRequest, CompletionRequest, StreamOptions};
use crate::registry::ModelRegistry;
use crate::respond::{self, ResponseMeta, Shape};
use crate::validate::{self, RequestLimits};

/// Everything a handler needs, shared by all requests.
pub struct AppState {
    pub models: ModelRegistry,
    pub api_key: Option<String>,
    pub limits: RequestLimits,
    pub faults: FaultInjector,
    pub max_request_bytes: usize,
    pub loading: Arc<LoadingCounter>,
    /// The model nanochat's own protocol talks to (see [`nanochat_api`]).
    pub nanochat_model: Option<String>,
    pub metrics: Arc<Metrics>,
}

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>, cors_origins: &[String]) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions_either))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/models/{*id}", get(get_model))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let mut app = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_request_bytes))
        .with_state(state);
    if !cors_origins.is_empty() {
        let origins = if cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(cors_origins.iter().filter_map(|o| o.parse().ok()))
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(Any)
                .allow_headers(Any),
        );
    }
    app
}

async fn require_api_key(
    State(state): Shared,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
        if given != Some(expected.as_str()) {
            return ApiError::invalid_api_key(given.filter(|g| !g.is_empty())).into_response();
        }
    }
    next.run(request).await
}

/// The web chat page: one self-contained file, compiled into the binary.
async fn root() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("web_ui.html"))
}

async fn health(State(state): Shared) -> Json<serde_json::Value> {
    Json(nanochat_api::health(&state))
}

async fn metrics(State(state): Shared) -> Response {
    let text = state.metrics.render(&state.models);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn stats(State(state): Shared) -> Json<serde_json::Value> {
    Json(nanochat_api::stats(&state))
}

async fn ready(State(state): Shared) -> Response {
    match state.loading.pending() {
        0 => Json(json!({"status": "ready"})).into_response(),
        n => {
            ApiError::unavailable(format!("Loading models: {n} still loading."), 5).into_response()
        }
    }
}

async fn list_models(State(state): Shared) -> Json<serde_json::Value> {
    let data: Vec<_> = state.models.entries().iter().map(|e| e.to_json()).collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(State(state): Shared, Path(id): Path<String>) -> Response {
    match state.models.get(&id) {
        Some(entry) => Json(entry.to_json()).into_response(),
        None => ApiError::model_not_found(&id).into_response(),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_route(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

fn body_error(state: &AppState, rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(state.max_request_bytes)
    } else {
        ApiError::invalid_request(
            format!("could not read the request body: {rejection}"),
            None,
        )
    }
}

/// The body as JSON, with the OpenAI envelope for every way that can fail.
fn parse_body<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| body_error(state, rejection))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid_request(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat_completions(State(state): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse_body(&state, body) {
        Ok(body) => openai_chat(&state, body).await,
        Err(error) => refused(&state, error),
    }
}

/// `/chat/completions` without `/v1`: an OpenAI body (it has `model`) or nanochat's own.
async fn chat_completions_either(
    State(state): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(rejection) => return body_error(&state, rejection).into_response(),
    };
    let value = match nanochat_api::parse(&bytes) {
        Ok(value) => value,
        Err(refusal) => return refusal.into_response(),
    };
    if nanochat_api::is_nanochat_body(&value) {
        return nanochat_api::chat(&state, value).await;
    }
    match serde_json::from_value(value) {
        Ok(body) => openai_chat(&state, body).await,
        Err(e) => ApiError::invalid_request(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
        .into_response(),
    }
}

async fn openai_chat(state: &AppState, body: ChatCompletionRequest) -> Response {
    let stream = body.common.stream.unwrap_or(false);
    let include_usage = stream_wants_usage(body.common.stream_options.as_ref());
    match validate::chat_request(body, &state.limits, rand::random()) {
        Ok(request) => answer(state, request, stream, include_usage, Shape::Chat).await,
        Err(error) => refused(state, error),
    }
}

async fn completions(State(state): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let body: CompletionRequest = match parse_body(&state, body) {
        Ok(body) => body,
        Err(error) => return refused(&state, error),
    };
    let stream = body.common.stream.unwrap_or(false);
    let include_usage = stream_wants_usage(body.common.stream_options.as_ref());
    let echo = body.echo.unwrap_or(false);
    let request = match validate::completion_request(body, &state.limits, rand::random()) {
        Ok(request) => request,
        Err(error) => return refused(&state, error),
    };
    let echo = match (&request.prompt, echo) {
        (Prompt::Text(text), true) => Some(text.clone()),
        _ => None,
    };
    answer(
        &state,
        request,
        stream,
        include_usage,
        Shape::Completion { echo },
    )
    .await
}

fn stream_wants_usage(options: Option<&StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

/// A refused request: counted, then answered with its error.
fn refused(state: &AppState, error: ApiError) -> Response {
    state.metrics.error(&error);
    error.into_response()
}

/// Submits a validated request and answers with its events.
async fn answer(
    state: &AppState,
    request: GenerationRequest,
    stream: bool,
    include_usage: bool,
    shape: Shape,
) -> Response {
    submit(state, request, stream, include_usage, shape)
        .await
        .unwrap_or_else(|error| refused(state, error))
}

async fn submit(
    state: &AppState,
    request: GenerationRequest,
    stream: bool,
    include_usage: bool,
    shape: Shape,
) -> Result<Response, ApiError> {
    let entry = state
        .models
        .get(&request.model)
        .ok_or_else(|| ApiError::model_not_found(&request.model))?;
    if let Some(fault) = state.faults.draw(&request.model) {
        return Err(fault);
    }
    tracing::info!(model = %request.model, n = request.n, stream, "completion request");
    let id_prefix = match shape {
        Shape::Chat => "chatcmpl",
        Shape::Completion { .. } => "cmpl",
    };
    let meta = ResponseMeta {
        id: format!("{id_prefix}-{}", random_alphanumeric(&mut rand::rng(), 29)),
        created: unix_now(),
        model: entry.id.clone(),
        fingerprint: entry.fingerprint.clone(),
        n: request.n,
        logprobs: request.logprobs.is_some(),
        include_usage: stream && include_usage,
        shape,
    };
    let mut observer = RequestObserver::new(state.metrics.clone(), &entry.id, Instant::now());
    let (sender, mut events) = mpsc::unbounded_channel();
    entry.backend.submit(request, sender);
    let prompt_tokens = match events.recv().await {
        Some(Event::Started { prompt_tokens }) => {
            observer.on_event(&Event::Started { prompt_tokens });
            prompt_tokens
        }
        Some(Event::Failed(error)) => return Err(error),
        Some(other) => {
            return Err(ApiError::internal(format!(
                "the model answered before starting: {other:?}"
            )))
        }
        None => return Err(ApiError::internal("the model stopped without answering")),
    };
    Ok(if stream {
        respond::stream(meta, prompt_tokens, events, Some(observer))
    } else {
        respond::collect(meta, prompt_tokens, events, Some(observer)).await
    })
}
