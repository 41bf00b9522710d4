//! `GET /metrics` in Prometheus' text format, names in vLLM's style with a `nanochat:` prefix:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `nanochat:num_requests_running` | gauge | model |
//! | `nanochat:num_requests_waiting` | gauge | model |
//! | `nanochat:kv_cache_reserved_tokens` | gauge | model |
//! | `nanochat:kv_cache_budget_tokens` | gauge | model (0 for simulated models) |
//! | `nanochat:prompt_tokens_total` | counter | model |
//! | `nanochat:generation_tokens_total` | counter | model |
//! | `nanochat:request_success_total` | counter | model, finished_reason |
//! | `nanochat:requests_cancelled_total` | counter | model |
//! | `nanochat:request_errors_total` | counter | code (OpenAI `code`, else `type`) |
//! | `nanochat:time_to_first_token_seconds` | histogram | model |
//! | `nanochat:inter_token_latency_seconds` | histogram | model |
//! | `nanochat:e2e_request_latency_seconds` | histogram | model |
//!
//! Latencies are measured where the client sees them: from the request's arrival at the
//! handler to each event leaving for the response (one [`RequestObserver`] per request).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::api_error::ApiError;
use crate::backend::Event;
use crate::registry::ModelRegistry;

const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Observations ≤ each bucket's bound (not cumulative; summed when rendered).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, model: &str) {
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", self.count);
    }
}

#[derive(Clone, Debug, Default)]
struct ModelCounters {
    prompt_tokens: u64,
    generation_tokens: u64,
    /// By finish reason.
    success: BTreeMap<&'static str, u64>,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

#[derive(Debug, Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, ModelCounters>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    fn with_model(&self, model: &str, f: impl FnOnce(&mut ModelCounters)) {
        if let Ok(mut models) = self.models.lock() {
            f(models.entry(model.to_string()).or_default());
        }
    }

    /// Counts a refused or failed request.
    pub fn error(&self, error: &ApiError) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors
                .entry(error.code.unwrap_or(error.kind).to_string())
                .or_default() += 1;
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, registry: &ModelRegistry) -> String {
        let mut out = String::new();
        let models = self.models.lock().map(|m| m.clone()).unwrap_or_default();
        let gauge = |out: &mut String,
                     name: &str,
                     help: &str,
                     value: &dyn Fn(&crate::registry::ModelEntry) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for entry in registry.entries() {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\"}} {}",
                    escape(&entry.id),
                    value(entry)
                );
            }
        };
        use std::sync::atomic::Ordering::SeqCst;
        gauge(
            &mut out,
            "nanochat:num_requests_running",
            "Requests being generated.",
            &|e| e.backend.stats().running.load(SeqCst) as u64,
        );
        gauge(
            &mut out,
            "nanochat:num_requests_waiting",
            "Requests queued for a model.",
            &|e| e.backend.stats().waiting.load(SeqCst) as u64,
        );
        gauge(
            &mut out,
            "nanochat:kv_cache_reserved_tokens",
            "KV-cache positions reserved by running sequences.",
            &|e| e.backend.stats().kv_reserved_tokens.load(SeqCst) as u64,
        );
        gauge(
            &mut out,
            "nanochat:kv_cache_budget_tokens",
            "KV-cache positions running sequences may reserve in all (--kv-budget-tokens).",
            &|e| e.backend.stats().kv_budget_tokens.load(SeqCst) as u64,
        );
        let _ = writeln!(out, "# HELP nanochat:requests_cancelled_total Requests dropped because the client went away.\n# TYPE nanochat:requests_cancelled_total counter");
        for entry in registry.entries() {
            let _ = writeln!(
                out,
                "nanochat:requests_cancelled_total{{model=\"{}\"}} {}",
                escape(&entry.id),
                entry.backend.stats().cancelled.load(SeqCst)
            );
        }
        let counter =
            |out: &mut String, name: &str, help: &str, value: &dyn Fn(&ModelCounters) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (model, counters) in &models {
                    let _ = writeln!(
                        out,
                        "{name}{{model=\"{}\"}} {}",
                        escape(model),
                        value(counters)
                    );
                }
            };
        counter(
            &mut out,
            "nanochat:prompt_tokens_total",
            "Prompt tokens processed.",
            &|c| c.prompt_tokens,
        );
        counter(
            &mut out,
            "nanochat:generation_tokens_total",
            "Tokens generated.",
            &|c| c.generation_tokens,
        );
        let _ = writeln!(out, "# HELP nanochat:request_success_total Choices finished, by finish reason.\n# TYPE nanochat:request_success_total counter");
        for (model, counters) in &models {
            for (reason, n) in &counters.success {
                let _ = writeln!(out, "nanochat:request_success_total{{model=\"{}\",finished_reason=\"{reason}\"}} {n}", escape(model));
            }
        }
        let _ = writeln!(out, "# HELP nanochat:request_errors_total Requests refused or failed, by error code.\n# TYPE nanochat:request_errors_total counter");
        for (code, n) in self.errors.lock().map(|e| e.clone()).unwrap_or_default() {
            let _ = writeln!(
                out,
                "nanochat:request_errors_total{{code=\"{}\"}} {n}",
                escape(&code)
            );
        }
        for (name, help, pick) in [
            (
                "nanochat:time_to_first_token_seconds",
                "Time from request to the first token.",
                (|c: &ModelCounters| &c.ttft) as fn(&ModelCounters) -> &Histogram,
            ),
            (
                "nanochat:inter_token_latency_seconds",
                "Time between streamed tokens.",
                |c: &ModelCounters| &c.itl,
            ),
            (
                "nanochat:e2e_request_latency_seconds",
                "Time from request to the last token.",
                |c: &ModelCounters| &c.e2e,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (model, counters) in &models {
                pick(counters).render(&mut out, name, &escape(model));
            }
        }
        out
    }
}

/// A label value as Prometheus wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Watches one request's events on their way to the client.
pub struct RequestObserver {
    metrics: Arc<Metrics>,
    model: String,
    started: Instant,
    last_token: Option<Instant>,
}

impl RequestObserver {
    pub fn new(metrics: Arc<Metrics>, model: &str, started: Instant) -> Self {
        Self {
            metrics,
            model: model.to_string(),
            started,
            last_token: None,
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        let now = Instant::now();
        match event {
            Event::Started { prompt_tokens } => self
                .metrics
                .with_model(&self.model, |c| c.prompt_tokens += *prompt_tokens as u64),
            Event::Text { .. } | Event::ToolCall { .. } => {
                let (started, last) = (self.started, self.last_token.replace(now));
                self.metrics.with_model(&self.model, |c| match last {
                    None => c.ttft.observe((now - started).as_secs_f64()),
                    Some(last) => c.itl.observe((now - last).as_secs_f64()),
                });
            }
            Event::Finished {
                reason,
                completion_tokens,
                ..
            } => {
                let started = self.started;
                self.metrics.with_model(&self.model, |c| {
                    c.generation_tokens += *completion_tokens as u64;
                    *c.success.entry(reason.as_str()).or_default() += 1;
                    c.e2e.observe((now - started).as_secs_f64());
                });
            }
            Event::Failed(error) => self.metrics.error(error),
        }
    }
}
