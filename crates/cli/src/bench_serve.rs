//! `nanochat bench serve`: a load test of an OpenAI-compatible server (`nanochat serve` or any
//! other) through streaming chat completions.
//!
//! For each concurrency level `c`, `c` workers each hold one HTTP/1.1 keep-alive connection
//! (opened before the level's clock starts) and send requests one after another until the
//! level's `--requests` are used up, so exactly `c` streams are in flight at any time. Every
//! request is `stream: true` with `stream_options.include_usage`, and per request we measure:
//! * TTFT: from just before the request is written to the first chunk whose delta has
//!   non-empty `content`;
//! * inter-token latencies: the gaps between consecutive content chunks (several chunks that
//!   arrive in one network read count as arriving together — that is what a client sees);
//! * end-to-end time: until `data: [DONE]`;
//! * completion tokens: from the usage chunk (the number of content chunks when a server
//!   sends no usage).
//!
//! A request fails when the status is not 200, when an `{"error": …}` event arrives, when the
//! connection breaks or the stream ends without `[DONE]`, or after `--timeout`; failures are
//! counted by kind. Everything runs on one tokio runtime with hyper's low-level HTTP/1 client
//! (no connection pool to hide queueing), and per chunk there is no allocation beyond the
//! network buffer: SSE events are assembled in reused buffers and chunks are parsed with
//! borrowing, allocation-free serde visitors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nanochat serve &   # simulated models on :8000\n  \
    nanochat bench serve --concurrency 1,10,100,1000 --requests 2000 --max-tokens 64\n  \
    nanochat bench serve --concurrency 1000 --extra-json '{\"ttft_ms\":0,\"itl_ms\":0}'\n  \
    nanochat bench serve --model d20 --concurrency 1,4 --requests 8 --extra-json '{\"temperature\":0}'")]
pub struct ServeBenchArgs {
    /// Base URL of the server (plain http), with or without the trailing /v1.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Model id to request (as listed by GET /v1/models).
    #[arg(long, default_value = "gpt-sim-1")]
    model: String,
    /// Concurrency levels to measure, in order (comma-separated): streams in flight at once.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    concurrency: Vec<usize>,
    /// Requests per level (default: max(2 × concurrency, 10)).
    #[arg(long)]
    requests: Option<usize>,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// The user message of every request.
    #[arg(
        long,
        default_value = "Write a short story about a robot who learns to paint."
    )]
    prompt: String,
    /// Bearer key to send.
    #[arg(long, env = "NANOCHAT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A JSON object merged into every request body, e.g. '{"temperature":0}' or the
    /// simulator's '{"ttft_ms":0,"itl_ms":0}'.
    #[arg(long)]
    extra_json: Option<String>,
    /// Requests to send one at a time before measuring (not counted).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Seconds a request may take before it counts as failed.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Print one JSON object per level instead of the table.
    #[arg(long)]
    json: bool,
}

/// Where and what to send.
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// Path of the chat completions endpoint, e.g. `/v1/chat/completions`.
    path: String,
    /// Path of the models list.
    models_path: String,
    auth: Option<HeaderValue>,
    body: Bytes,
    timeout: Duration,
}

/// Splits `http://host:port/prefix` into (`host:port`, `/prefix` without a trailing `/v1`).
fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            bail!("--url {url}: https is not supported; measure the server on its plain-http port")
        }
        Some((scheme, _)) => bail!("--url {url}: unsupported scheme {scheme:?}"),
        None => url,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        bail!("--url {url}: no host");
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut prefix = path.trim_end_matches('/');
    prefix = prefix.strip_suffix("/v1").unwrap_or(prefix);
    Ok((authority, prefix.to_string()))
}

/// The request body: the chat request, then `extra` merged over it.
fn request_body(args: &ServeBenchArgs) -> Result<Bytes> {
    let mut body = json!({
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": args.max_tokens,
    });
    if let Some(extra) = &args.extra_json {
        let extra: Value = serde_json::from_str(extra).context("--extra-json is not JSON")?;
        let Value::Object(extra) = extra else {
            bail!("--extra-json must be a JSON object, e.g. '{{\"temperature\":0}}'");
        };
        for (key, value) in extra {
            body[key] = value;
        }
    }
    Ok(Bytes::from(serde_json::to_vec(&body)?))
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

/// Incremental SSE parser (the WHATWG event-stream rules that matter for OpenAI streams): lines
/// end in `\n`, `\r\n` or `\r` (a pair split across reads included), `data:` lines of one event
/// are joined with `\n`, a blank line dispatches the event, `:` lines are comments (keep-alive),
/// other fields are ignored. Frames may be split anywhere across [`feed`](Self::feed) calls.
/// The buffers are reused, so a long stream allocates nothing once they have grown.
#[derive(Default)]
pub struct SseParser {
    /// Bytes received and not yet consumed (from `pos`).
    buf: Vec<u8>,
    pos: usize,
    /// The data of the event being assembled (each line followed by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// The previous line ended with `\r`: a `\n` that comes next belongs to it.
    skip_lf: bool,
    /// The last dispatched event.
    event: Vec<u8>,
}

impl SseParser {
    /// Forgets everything (a new response).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.data.clear();
        self.has_data = false;
        self.skip_lf = false;
    }

    /// Adds received bytes; then call [`next_event`](Self::next_event) until it returns `None`.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The data of the next complete event, if one is complete.
    pub fn next_event(&mut self) -> Option<&[u8]> {
        loop {
            if self.skip_lf {
                if self.pos == self.buf.len() {
                    return None;
                }
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let rest = &self.buf[self.pos..];
            let end = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let line = &rest[..end];
            self.skip_lf = rest[end] == b'\r';
            let start = self.pos;
            self.pos += end + 1;
            if line.is_empty() {
                if !self.has_data {
                    continue;
                }
                std::mem::swap(&mut self.event, &mut self.data);
                self.data.clear();
                self.has_data = false;
                self.event.pop(); // the '\n' after the last data line
                return Some(&self.event);
            }
            let line = &self.buf[start..start + end];
            if line[0] == b':' {
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            if field == b"data" {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chunks, parsed without allocating

/// What a `chat.completion.chunk` (or an error event) tells us.
#[derive(Deserialize)]
struct Chunk {
    /// Whether any choice's delta has non-empty `content`.
    #[serde(default)]
    choices: ContentSeen,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Default)]
struct ContentSeen(bool);

impl<'de> Deserialize<'de> for ContentSeen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choices;
        impl<'de> Visitor<'de> for Choices {
            type Value = ContentSeen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ContentSeen, A::Error> {
                let mut seen = false;
                while let Some(choice) = seq.next_element::<ChoiceDelta>()? {
                    seen |= choice.delta.and_then(|d| d.content).is_some_and(|c| c.0);
                }
                Ok(ContentSeen(seen))
            }
            fn visit_unit<E>(self) -> Result<ContentSeen, E> {
                Ok(ContentSeen(false))
            }
        }
        deserializer.deserialize_any(Choices)
    }
}

#[derive(Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<NonEmpty>,
}

/// A string, reduced to whether it is non-empty (serde_json hands it over without copying).
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> Visitor<'de> for Str {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
        }
        deserializer.deserialize_str(Str)
    }
}

/// A short label for an error event or error body: its `type` or `code`, if it has one.
fn error_label(error: &Value) -> String {
    let inner = error.get("error").unwrap_or(error);
    for key in ["type", "code"] {
        if let Some(v) = inner.get(key).filter(|v| !v.is_null()) {
            return match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    match inner {
        Value::String(s) => s.chars().take(60).collect(),
        _ => "untyped".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The `p`-th percentile (0–100) of sorted values, interpolating linearly between ranks
/// (NumPy's default); `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

// ---------------------------------------------------------------------------------------------
// The client

/// One successful request.
struct Sample {
    /// Seconds to the first content chunk (`None`: the answer had no content).
    ttft: Option<f64>,
    e2e: f64,
    completion_tokens: u64,
    /// The server sent no usage: `completion_tokens` counts content chunks.
    usage_missing: bool,
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

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
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
struct Worker {
    sender: Option<Sender>,
    parser: SseParser,
    /// Inter-token gaps (seconds) of its successful requests.
    itls: Vec<f64>,
    samples: Vec<Sample>,
    errors: BTreeMap<String, usize>,
}

impl Worker {
    fn new() -> Self {
        Self {
            sender: None,
            parser: SseParser::default(),
            itls: Vec::new(),
            samples: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    async fn run_one(&mut self, target: &Target) {
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
async fn check_model(target: &Target, url: &str, model: &str) -> Result<()> {
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

/// What one concurrency level measured.
struct LevelReport {
    concurrency: usize,
    requests: usize,
    ok: usize,
    errors: BTreeMap<String, usize>,
    wall_s: f64,
    /// Sorted, in seconds.
    ttft: Vec<f64>,
    itl: Vec<f64>,
    e2e: Vec<f64>,
    /// Per stream: (completion_tokens − 1) / (e2e − ttft).
    stream_tok_s: Vec<f64>,
    tokens: u64,
    usage_missing: usize,
    no_content: usize,
}

impl LevelReport {
    fn aggregate_tok_s(&self) -> f64 {
        self.tokens as f64 / self.wall_s
    }

    fn to_json(&self) -> Value {
        let ms = |v: &[f64], p: f64| percentile(v, p).map(|x| x * 1e3);
        json!({
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "wall_s": self.wall_s,
            "ttft_ms": {"p50": ms(&self.ttft, 50.0), "p90": ms(&self.ttft, 90.0), "p99": ms(&self.ttft, 99.0), "max": ms(&self.ttft, 100.0)},
            "itl_ms": {"p50": ms(&self.itl, 50.0), "p90": ms(&self.itl, 90.0), "p99": ms(&self.itl, 99.0), "max": ms(&self.itl, 100.0)},
            "e2e_ms": {"p50": ms(&self.e2e, 50.0), "p99": ms(&self.e2e, 99.0)},
            "completion_tokens": self.tokens,
            "aggregate_tok_s": self.aggregate_tok_s(),
            "stream_tok_s_median": percentile(&self.stream_tok_s, 50.0),
            "usage_missing": self.usage_missing,
            "no_content": self.no_content,
        })
    }
}

async fn run_level(target: Arc<Target>, concurrency: usize, requests: usize) -> LevelReport {
    let workers = concurrency.min(requests).max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (target, next, barrier) = (target.clone(), next.clone(), barrier.clone());
        handles.push(tokio::spawn(async move {
            let mut worker = Worker::new();
            // Connect before the clock starts; a failure here is retried (and counted) by
            // the first request.
            worker.sender = connect(target.addr).await.ok();
            barrier.wait().await;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                worker.run_one(&target).await;
            }
            worker
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut finished = Vec::with_capacity(workers);
    for handle in handles {
        finished.push(handle.await.expect("a bench worker panicked"));
    }
    let wall_s = started.elapsed().as_secs_f64();

    let mut errors = BTreeMap::new();
    let (mut ttft, mut itl, mut e2e, mut stream_tok_s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut tokens, mut ok, mut usage_missing, mut no_content) = (0, 0, 0, 0);
    for worker in finished {
        for (kind, n) in worker.errors {
            *errors.entry(kind).or_default() += n;
        }
        itl.extend(worker.itls);
        for s in worker.samples {
            ok += 1;
            tokens += s.completion_tokens;
            usage_missing += usize::from(s.usage_missing);
            e2e.push(s.e2e);
            match s.ttft {
                Some(t) => {
                    ttft.push(t);
                    if s.completion_tokens > 1 && s.e2e > t {
                        stream_tok_s.push((s.completion_tokens - 1) as f64 / (s.e2e - t));
                    }
                }
                None => no_content += 1,
            }
        }
    }
    LevelReport {
        concurrency,
        requests,
        ok,
        errors,
        wall_s,
        ttft: sorted(ttft),
        itl: sorted(itl),
        e2e: sorted(e2e),
        stream_tok_s: sorted(stream_tok_s),
        tokens,
        usage_missing,
        no_content,
    }
}

fn print_header() {
    println!(
        "{:>6} {:>6} {:>6} {:>6} {:>8} | {:>9} {:>9} | {:>8} {:>8} | {:>9} | {:>10} {:>10}",
        "conc",
        "reqs",
        "ok",
        "errors",
        "wall s",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "E2E p50",
        "agg tok/s",
        "tok/s/strm"
    );
}

fn print_row(r: &LevelReport) {
    let ms = |v: &[f64], p: f64| match percentile(v, p) {
        Some(x) => format!("{:.1}", x * 1e3),
        None => "-".into(),
    };
    let errors: usize = r.errors.values().sum();
    println!(
        "{:>6} {:>6} {:>6} {:>6} {:>8.2} | {:>9} {:>9} | {:>8} {:>8} | {:>9} | {:>10.1} {:>10}",
        r.concurrency,
        r.requests,
        r.ok,
        errors,
        r.wall_s,
        ms(&r.ttft, 50.0),
        ms(&r.ttft, 99.0),
        ms(&r.itl, 50.0),
        ms(&r.itl, 99.0),
        ms(&r.e2e, 50.0),
        r.aggregate_tok_s(),
        percentile(&r.stream_tok_s, 50.0).map_or("-".into(), |x| format!("{x:.1}")),
    );
    for (kind, n) in &r.errors {
        println!("{:>6} error ×{n}: {kind}", "");
    }
    if r.usage_missing > 0 {
        println!(
            "{:>6} {} answers had no usage chunk: their tokens are counted as content chunks",
            "", r.usage_missing
        );
    }
    if r.no_content > 0 {
        println!("{:>6} {} answers had no content", "", r.no_content);
    }
}

pub fn run(args: ServeBenchArgs) -> Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs levels ≥ 1, e.g. 1,4,8,16");
    }
    if args.timeout.is_nan() || args.timeout <= 0.0 {
        bail!("--timeout must be > 0 seconds");
    }
    let (authority, prefix) = parse_url(&args.url)?;
    let body = request_body(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let auth = match &args.api_key {
            Some(key) if !key.is_empty() => Some(
                HeaderValue::from_str(&format!("Bearer {key}"))
                    .context("--api-key has characters a header cannot carry")?,
            ),
            _ => None,
        };
        let target = Arc::new(Target {
            addr,
            host: HeaderValue::from_str(&authority).context("--url: bad host")?,
            path: format!("{prefix}/v1/chat/completions"),
            models_path: format!("{prefix}/v1/models"),
            auth,
            body,
            timeout: Duration::from_secs_f64(args.timeout),
        });
        check_model(&target, &args.url, &args.model).await?;
        if args.warmup > 0 {
            let mut worker = Worker::new();
            for _ in 0..args.warmup {
                worker.run_one(&target).await;
            }
            for (kind, n) in &worker.errors {
                eprintln!("warm-up: error ×{n}: {kind}");
            }
        }
        if !args.json {
            println!(
                "{} at {} — {} max_tokens per request; times in ms; tok/s/strm = median over streams of (tokens − 1) / (E2E − TTFT)",
                args.model, args.url, args.max_tokens
            );
            print_header();
        }
        let mut emfile = false;
        for &concurrency in &args.concurrency {
            let requests = args.requests.unwrap_or((2 * concurrency).max(10));
            if requests < concurrency {
                eprintln!("note: {requests} requests at concurrency {concurrency}: only {requests} streams in flight");
            }
            let report = run_level(target.clone(), concurrency, requests).await;
            emfile |= report.errors.keys().any(|k| k.contains("too many open files"));
            if args.json {
                println!("{}", report.to_json());
            } else {
                print_row(&report);
            }
        }
        if emfile {
            eprintln!(
                "Connections failed with EMFILE: this process ran out of file descriptors. Raise the \
                 limit in this shell (`ulimit -n 65536`; the hard limit is in `ulimit -Hn`) and in \
                 the server's shell too."
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser, bytes: &[u8]) -> Vec<String> {
        parser.feed(bytes);
        let mut out = Vec::new();
        while let Some(e) = parser.next_event() {
            out.push(String::from_utf8(e.to_vec()).unwrap());
        }
        out
    }

    const STREAM: &str = "data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata:x\ndata: y\n\nevent: ping\nid: 3\nretry: 10\n\ndata\n\ndata: [DONE]\r\r";

    #[test]
    fn sse_whole_stream() {
        let mut p = SseParser::default();
        assert_eq!(
            events(&mut p, STREAM.as_bytes()),
            ["{\"a\":1}", "{\"b\":2}", "x\ny", "", "[DONE]"]
        );
    }

    #[test]
    fn sse_split_at_every_byte_boundary() {
        let want = events(&mut SseParser::default(), STREAM.as_bytes());
        let bytes = STREAM.as_bytes();
        // Two reads, split at every position.
        for cut in 0..=bytes.len() {
            let mut p = SseParser::default();
            let mut got = events(&mut p, &bytes[..cut]);
            got.extend(events(&mut p, &bytes[cut..]));
            assert_eq!(got, want, "split at {cut}");
        }
        // One byte per read.
        let mut p = SseParser::default();
        let got: Vec<String> = bytes.iter().flat_map(|b| events(&mut p, &[*b])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sse_crlf_split_between_reads_is_one_line_end() {
        let mut p = SseParser::default();
        assert!(events(&mut p, b"data: a\r").is_empty());
        // The \n completes "\r\n"; then the blank line "\r\n" dispatches.
        assert!(events(&mut p, b"\n").is_empty());
        assert_eq!(events(&mut p, b"\r\n"), ["a"]);
        // A lone \r ends a line too.
        assert_eq!(events(&mut p, b"data: b\r\rdata: c\n\n"), ["b", "c"]);
    }

    #[test]
    fn sse_incomplete_event_waits_and_reset_forgets_it() {
        let mut p = SseParser::default();
        assert!(events(&mut p, b"data: {\"partial\":").is_empty());
        assert!(events(&mut p, b" true}\n").is_empty());
        assert_eq!(events(&mut p, b"\n"), ["{\"partial\": true}"]);
        assert!(events(&mut p, b"data: lost\n").is_empty());
        p.reset();
        assert_eq!(events(&mut p, b"\ndata: new\n\n"), ["new"]);
    }

    #[test]
    fn chunks_parse() {
        let chunk = |s: &str| serde_json::from_str::<Chunk>(s).unwrap();
        let role = chunk(
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
        assert!(!role.choices.0 && role.usage.is_none() && role.error.is_none());
        let text = chunk(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi \"there\"\n"},"finish_reason":null}]}"#,
        );
        assert!(text.choices.0);
        let second =
            chunk(r#"{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{"content":"é"}}]}"#);
        assert!(second.choices.0);
        let end = chunk(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
        assert!(!end.choices.0);
        let null_content =
            chunk(r#"{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0}]}}]}"#);
        assert!(!null_content.choices.0);
        let usage = chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":64,"total_tokens":69}}"#,
        );
        assert_eq!(usage.usage.unwrap().completion_tokens, Some(64));
        let error = chunk(r#"{"error":{"message":"boom","type":"server_error","code":null}}"#);
        assert_eq!(error_label(&error.error.unwrap()), "server_error");
        assert_eq!(
            error_label(&json!({"error": {"message": "m", "code": 429}})),
            "429"
        );
        assert_eq!(error_label(&json!({"error": "overloaded"})), "overloaded");
        assert!(serde_json::from_str::<Chunk>("{\"choices\":[").is_err());
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 50.0), Some(50.5));
        assert!((percentile(&v, 99.0).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 25.0), Some(1.75));
        assert_eq!(sorted(vec![3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn urls() {
        let p = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            p("http://127.0.0.1:8000"),
            ("127.0.0.1:8000".into(), "".into())
        );
        assert_eq!(
            p("http://127.0.0.1:8000/v1/"),
            ("127.0.0.1:8000".into(), "".into())
        );
        assert_eq!(
            p("http://localhost/api/v1"),
            ("localhost:80".into(), "/api".into())
        );
        assert_eq!(p("[::1]:9000"), ("[::1]:9000".into(), "".into()));
        assert_eq!(p("http://[::1]/"), ("[::1]:80".into(), "".into()));
        assert!(parse_url("https://api.openai.com/v1").is_err());
    }

    /// A scripted HTTP/1.1 server on a std thread: each request gets the next response, written
    /// in the given pieces (with a pause between them); `close` ends the connection after it.
    struct Scripted {
        pieces: Vec<Vec<u8>>,
        close: bool,
    }

    fn chunked(pieces: &[&str]) -> Vec<Vec<u8>> {
        let mut out = vec![b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()];
        for p in pieces {
            out.push(format!("{:x}\r\n{p}\r\n", p.len()).into_bytes());
        }
        out
    }

    fn scripted_server(mut script: Vec<Scripted>) -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        script.reverse();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                stream.set_nodelay(true).unwrap();
                loop {
                    // Read one request: headers, then content-length bytes of body.
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => request.push(byte[0]),
                            _ => break,
                        }
                    }
                    if request.is_empty() {
                        break;
                    }
                    let head = String::from_utf8_lossy(&request).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    let mut body = vec![0u8; length];
                    stream.read_exact(&mut body).unwrap();
                    let Some(response) = script.pop() else { return };
                    for piece in &response.pieces {
                        stream.write_all(piece).unwrap();
                        stream.flush().unwrap();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if response.close {
                        break;
                    }
                }
            }
        });
        addr
    }

    fn target(addr: SocketAddr) -> Target {
        Target {
            addr,
            host: HeaderValue::from_static("test"),
            path: "/v1/chat/completions".into(),
            models_path: "/v1/models".into(),
            auth: None,
            body: Bytes::from_static(b"{}"),
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn requests_are_measured_and_failures_counted_by_kind() {
        let role = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#;
        let text = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#;
        let usage = r#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}"#;
        let ok = chunked(&[
            &format!("{role}\n\n"),
            // A frame split inside its JSON, and one split between "\r" and "\n".
            &text[..30],
            &format!("{}\n\n{text}\r", &text[30..]),
            &format!("\n\r\n: keep-alive\n\n{usage}\n\ndata: [DONE]\n\n"),
            "",
        ]);
        let error_event = chunked(&[
            &format!("{role}\n\n"),
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
            "",
        ]);
        let body = r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#;
        let too_many = vec![format!("HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()];
        let mut cut = chunked(&[&format!("{role}\n\n{text}\n\n")]);
        cut.push(b"40\r\ndata: {\"cho".to_vec());
        let addr = scripted_server(vec![
            Scripted {
                pieces: ok.clone(),
                close: false,
            },
            Scripted {
                pieces: too_many,
                close: false,
            },
            Scripted {
                pieces: error_event,
                close: true,
            },
            Scripted {
                pieces: ok,
                close: false,
            },
            Scripted {
                pieces: cut,
                close: true,
            },
        ]);
        let target = target(addr);
        let mut worker = Worker::new();
        for _ in 0..5 {
            worker.run_one(&target).await;
        }
        assert_eq!(worker.samples.len(), 2);
        for s in &worker.samples {
            assert_eq!(s.completion_tokens, 7);
            assert!(!s.usage_missing);
            let ttft = s.ttft.expect("content arrived");
            assert!(ttft > 0.0 && ttft <= s.e2e);
        }
        // Two content chunks per successful stream: one gap each.
        assert_eq!(worker.itls.len(), 2);
        let errors: Vec<(&str, usize)> = worker
            .errors
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(
            errors,
            [
                ("HTTP 429 rate_limit_error", 1),
                ("error event: server_error", 1),
                ("mid-stream: connection closed by the server", 1),
            ]
        );
        // The script is used up: the server hangs up without an answer.
        worker.run_one(&target).await;
        assert_eq!(
            worker.errors.get("connection closed by the server"),
            Some(&1)
        );
        // Nobody listens: the connection is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        worker.run_one(&self::target(closed)).await;
        assert_eq!(
            worker.errors.get("connect: ConnectionRefused"),
            Some(&1),
            "{:?}",
            worker.errors
        );
        assert_eq!(worker.samples.len(), 2);
    }
}
