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

mod chunk;
mod client;
mod sse;
mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use serde_json::{json, Value};

use client::{check_model, connect, Target, Worker};
use stats::{print_header, print_row, sorted, LevelReport};

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
}
