//! The HTTP side: one worker per connection sends streaming chat requests over hyper's
//! low-level HTTP/1 client (keep-alive, no pool), times the content chunks and sorts failures
//! into kinds; plus the check that the server serves the model before measuring.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::chunk::{error_label, Chunk};
use super::sse::SseParser;

#[cfg(test)]
mod tests;

/// Where and what to send.
pub(super) struct Target {
    pub(super) addr: SocketAddr,
    pub(super) host: HeaderValue,
    /// Path of the chat completions endpoint, e.g. `/v1/chat/completions`.
    pub(super) path: String,
    /// Path of the models list.
    pub(super) models_path: String,
    pub(super) auth: Option<HeaderValue>,
    pub(super) body: Bytes,
    pub(super) timeout: Duration,
}

/// One successful request.
pub(super) struct Sample {
    /// Seconds to the first content chunk (`None`: the answer had no content).
    pub(super) ttft: Option<f64>,
    pub(super) e2e: f64,
    pub(super) completion_tokens: u64,
    /// The server sent no usage: `completion_tokens` counts content chunks.
    pub(super) usage_missing: bool,
}

type Sender = SendRequest<Full<Bytes>>;

/// EMFILE on Linux and macOS.
const EMFILE: i32 = 24;

fn connect_error(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(EMFILE) {
        "connect: too many open files (raise the limit, e.g. `ulimit -n 65536`)".into()
    } else {
        format!("connect: {:?}", e.kind())
    }
}

pub(super) async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| connect_error(&e))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn hyper_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return "connection closed by the server".into();
    }
    if e.is_timeout() {
        return "http timeout".into();
    }
    if e.is_parse() {
        return "bad HTTP response".into();
    }
    // Body errors wrap the io::Error that says what happened (reset, EOF inside a chunk, …).
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::UnexpectedEof => "connection closed by the server".into(),
                kind => format!("connection error ({kind:?})"),
            };
        }
        source = cause.source();
    }
    format!("connection error ({e})")
}

/// A worker: one connection, reused buffers, its results.
pub(super) struct Worker {
    pub(super) sender: Option<Sender>,
    parser: SseParser,
    /// Inter-token gaps (seconds) of its successful requests.
    pub(super) itls: Vec<f64>,
    pub(super) samples: Vec<Sample>,
    pub(super) errors: BTreeMap<String, usize>,
}

impl Worker {
    pub(super) fn new() -> Self {
        Self {
            sender: None,
            parser: SseParser::default(),
            itls: Vec::new(),
            samples: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    pub(super) async fn run_one(&mut self, target: &Target) {
        let itls_before = self.itls.len();
        let outcome = tokio::time::timeout(target.timeout, self.request(target)).await;
        let outcome = outcome.unwrap_or_else(|_| {
            self.sender = None;
            Err(format!("timeout after {:?}", target.timeout))
        });
        match outcome {
            Ok(sample) => self.samples.push(sample),
            Err(kind) => {
                self.itls.truncate(itls_before);
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    fn build_request(
        target: &Target,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().expect("the endpoint path is a valid URI");
        let headers = request.headers_mut();
        headers.insert(HOST, target.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(auth) = &target.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        request
    }

    /// A ready connection: the kept one, else a new one.
    async fn ready_sender(&mut self, target: &Target) -> Result<Sender, String> {
        if let Some(mut sender) = self.sender.take() {
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        connect(target.addr).await
    }

    async fn request(&mut self, target: &Target) -> Result<Sample, String> {
        let request = Self::build_request(target, Method::POST, &target.path, target.body.clone());
        let started = Instant::now();
        let mut sender = self.ready_sender(target).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_error(&e))?;
        let status = response.status();
        let mut body = response.into_body();
        if status != StatusCode::OK {
            // Read the error body (small) so the connection can be reused, and label it.
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            self.sender = Some(sender);
            let label = serde_json::from_slice::<Value>(&bytes)
                .map(|v| error_label(&v))
                .unwrap_or_default();
            return Err(format!("HTTP {} {label}", status.as_u16())
                .trim_end()
                .to_string());
        }
        self.parser.reset();
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        let (mut chunks, mut usage_tokens) = (0u64, None);
        let mut done_at = None;
        while done_at.is_none() {
            let frame = match body.frame().await {
                None => return Err("stream ended without [DONE]".into()),
                Some(Err(e)) => return Err(format!("mid-stream: {}", hyper_error(&e))),
                Some(Ok(frame)) => frame,
            };
            let Some(data) = frame.data_ref() else {
                continue;
            };
            let now = Instant::now();
            self.parser.feed(data);
            while let Some(event) = self.parser.next_event() {
                if event.is_empty() {
                    continue;
                }
                if event == b"[DONE]" {
                    done_at = Some(now);
                    break;
                }
                let chunk: Chunk =
                    serde_json::from_slice(event).map_err(|_| "unparseable chunk".to_string())?;
                if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
                    return Err(format!("error event: {}", error_label(&error)));
                }
                if chunk.choices.0 {
                    chunks += 1;
                    match last {
                        None => first = Some(now),
                        Some(previous) => self.itls.push((now - previous).as_secs_f64()),
                    }
                    last = Some(now);
                }
                if let Some(tokens) = chunk.usage.and_then(|u| u.completion_tokens) {
                    usage_tokens = Some(tokens);
                }
            }
        }
        let done_at = done_at.expect("the loop ends at [DONE]");
        // The body should end right after [DONE]; read it to the end so the connection can be
        // reused (a server that keeps it open loses the connection instead).
        let drained = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        if drained == Ok(true) {
            self.sender = Some(sender);
        }
        Ok(Sample {
            ttft: first.map(|t| (t - started).as_secs_f64()),
            e2e: (done_at - started).as_secs_f64(),
            completion_tokens: usage_tokens.unwrap_or(chunks),
            usage_missing: usage_tokens.is_none(),
        })
    }
}

/// A GET that returns the status and body, for the checks before measuring.
async fn get(target: &Target, path: &str) -> Result<(StatusCode, Bytes), String> {
    let mut sender = connect(target.addr).await?;
    let request = Worker::build_request(target, Method::GET, path, Bytes::new());
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| hyper_error(&e))?
        .to_bytes();
    Ok((status, body))
}

/// Checks that the server answers and serves the model.
pub(super) async fn check_model(target: &Target, url: &str, model: &str) -> Result<()> {
    let (status, body) = get(target, &target.models_path).await.map_err(|e| {
        anyhow::anyhow!("cannot reach {url} ({e}): is the server (`nanochat serve`) running?")
    })?;
    if status == StatusCode::UNAUTHORIZED {
        bail!(
            "{url} answered 401 to GET {}: pass its key with --api-key",
            target.models_path
        );
    }
    if status != StatusCode::OK {
        eprintln!(
            "warning: GET {} answered {status}; going on without checking the model",
            target.models_path
        );
        return Ok(());
    }
    let ids: Vec<String> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("data").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
        .collect();
    if !ids.is_empty() && !ids.iter().any(|id| id == model) {
        bail!(
            "{url} does not serve --model {model:?}; it serves: {}",
            ids.join(", ")
        );
    }
    Ok(())
}
