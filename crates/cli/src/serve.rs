//! `nanochat serve`: the OpenAI-compatible server. This file turns flags into a
//! [`ServeConfig`] — which checkpoints (discovered under $NANOCHAT_BASE_DIR and/or given with
//! --model), which simulated models, limits, auth, faults — and prints where it listens, what
//! it serves and an example request.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use nanochat_model::checkpoint::checkpoint_at_path;
use nanochat_model::WeightDType;
use nanochat_server::faults::{FailureType, FaultInjector};
use nanochat_server::model_backend::CheckpointSpec;
use nanochat_server::registry::discover_checkpoints;
use nanochat_server::simulator::text::ResponseLength;
use nanochat_server::simulator::SimulatorSettings;
use nanochat_server::validate::RequestLimits;
use nanochat_server::{CheckpointModel, ServeConfig};
use nanochat_tokenizer::paths::nanochat_base_dir;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    nanochat serve                                  # simulated models, plus any checkpoints in $NANOCHAT_BASE_DIR\n  \
    nanochat serve --model ~/models/d20 --model-alias nanochat-d20 --api-key sk-local\n  \
    nanochat serve --failure-rate 10 --failure-types rate_limit,server_error\n\n\
    Point any OpenAI client at http://HOST:PORT/v1 (any API key unless --api-key is set).")]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0 to accept connections from other machines).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the URL is printed).
    #[arg(long, short = 'p', default_value_t = 8000)]
    port: u16,
    /// A checkpoint to serve (directory or model_<step>.pt/.safetensors), or hf:owner/repo[@rev]
    /// to pull one from the hub (first start; later ones use the cache, also offline);
    /// repeatable. These load at startup; /ready answers 503 until they have.
    #[arg(long = "model", short = 'm')]
    models: Vec<PathBuf>,
    /// Model id for the --model of the same position (default: the checkpoint directory's name).
    #[arg(long = "model-alias")]
    aliases: Vec<String>,
    /// Do not serve the checkpoints found under $NANOCHAT_BASE_DIR (they are named
    /// <stage>-<tag>, e.g. sft-d20, serve their last step, and load on first use).
    #[arg(long)]
    no_discover: bool,
    /// Weight format in memory for checkpoints: f32, bf16, q8_0 or q4k (quantised at load
    /// unless the checkpoint is stored quantised; `nanochat convert --dtype q8_0` stores it so).
    #[arg(long, short = 'd', default_value = "f32", value_parser = WeightDType::parse)]
    dtype: WeightDType,
    /// Context window enforced for checkpoints (default: each model's training sequence_len;
    /// at most the rotary cache, 10× that).
    #[arg(long)]
    max_model_len: Option<usize>,
    /// Requests that may wait for a checkpoint model beyond those running; more get 429 with
    /// Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Sequences a checkpoint model decodes together (continuous batching; a request with n
    /// choices takes n).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_seqs: usize,
    /// KV-cache positions the running sequences of a model may reserve in all; each reserves
    /// prompt + max_tokens when admitted, and a request that does not fit waits in the queue.
    /// Default: max-seqs × the context window (only --max-seqs limits). Memory per position:
    /// 2 · n_layer · n_kv_head · head_dim · 2 bytes (bf16 cache; d20: 100 KiB), twice that for
    /// f32 weights.
    #[arg(long)]
    kv_budget_tokens: Option<usize>,
    /// Tokens one forward pass carries: one per decoding sequence, the rest (at least one) the
    /// next chunk of a newcomer's prompt, which thus shares their steps (chunked prefill).
    /// Smaller keeps their inter-token latency steadier, larger gets a long prompt's first token
    /// sooner.
    #[arg(long, visible_alias = "prefill-chunk", default_value_t = nanochat_server::model_backend::DEFAULT_MAX_BATCHED_TOKENS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_batched_tokens: usize,
    /// Simulated models to serve (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gpt-sim-1,gpt-4o,gpt-3.5-turbo"
    )]
    simulate: Vec<String>,
    /// Serve no simulated models.
    #[arg(long)]
    no_simulate: bool,
    /// Simulated answers: random (word-bank text) or echo (the last user message).
    #[arg(long, default_value = "random", value_parser = ["random", "echo"])]
    sim_mode: String,
    /// Simulated time to first token, in ms (per request: "ttft_ms").
    #[arg(long, default_value_t = 150.0)]
    sim_ttft_ms: f64,
    /// Simulated inter-token latency, in ms (per request: "itl_ms" or "tokens_per_second").
    #[arg(long, default_value_t = 20.0)]
    sim_itl_ms: f64,
    /// Standard deviation of the inter-token latency, in ms (per request: "itl_jitter_ms").
    #[arg(long, default_value_t = 5.0)]
    sim_jitter_ms: f64,
    /// Simulated answer length: short, medium or long (default: inferred from the request;
    /// per request: "response_length").
    #[arg(long, value_parser = ["short", "medium", "long"])]
    sim_response_length: Option<String>,
    /// Require this Bearer key on /v1/* (/health and /ready stay open).
    #[arg(long, env = "NANOCHAT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Origins allowed to call the API from a browser (comma-separated, or *). Default: none.
    #[arg(long, value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Most messages in one request (nanochat's default).
    #[arg(long, default_value_t = 500)]
    max_messages: usize,
    /// Most characters in one message (nanochat's default).
    #[arg(long, default_value_t = 8000)]
    max_message_chars: usize,
    /// Most characters in all messages together (nanochat's default).
    #[arg(long, default_value_t = 32000)]
    max_total_chars: usize,
    /// Largest n (choices per request).
    #[arg(long, default_value_t = 16)]
    max_n: usize,
    /// Percentage (0–100) of completion requests that fail on purpose, to test clients.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Which failures to inject (comma-separated): rate_limit, invalid_api_key,
    /// context_length, server_error, invalid_request, model_not_found. Default: all.
    #[arg(long, value_delimiter = ',')]
    failure_types: Vec<FailureType>,
}

impl ServeArgs {
    fn config(&self) -> Result<(ServeConfig, Vec<String>)> {
        if !(0.0..=100.0).contains(&self.failure_rate) {
            bail!(
                "--failure-rate is a percentage between 0 and 100, got {}",
                self.failure_rate
            );
        }
        if self.aliases.len() > self.models.len() {
            bail!("{} --model-alias given for {} --model: each alias names the --model at the same position", self.aliases.len(), self.models.len());
        }
        let mut notes = Vec::new();
        let mut checkpoints = Vec::new();
        for (i, path) in self.models.iter().enumerate() {
            if crate::pull::is_hub_model(path) {
                let name = path.to_string_lossy().to_string();
                // Fail fast on a malformed name; the pull itself runs in the model's worker.
                let repo = nanochat_hub::RepoRef::parse(&name)?;
                let id = self
                    .aliases
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| repo.repo.clone());
                notes.push(format!("{id}: {name} (pulling or checking the cache now; /ready answers 503 until it is loaded)"));
                let fetch_name = name.clone();
                let fetch: nanochat_server::model_backend::FetchCheckpoint =
                    std::sync::Arc::new(move || {
                        crate::pull::hub_checkpoint(&fetch_name, None).map_err(|e| format!("{e:#}"))
                    });
                checkpoints.push(CheckpointModel {
                    id,
                    spec: self.spec(CheckpointSpec::remote(&name, fetch)),
                    eager: true,
                });
                continue;
            }
            let files = checkpoint_at_path(path, None)
                .with_context(|| format!("--model {}", path.display()))?;
            let id = match self.aliases.get(i) {
                Some(alias) => alias.clone(),
                None => files
                    .dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("model")
                    .to_string(),
            };
            notes.push(format!(
                "{id}: {} (step {}, loading now)",
                files.dir.display(),
                files.step
            ));
            checkpoints.push(CheckpointModel {
                id,
                spec: self.spec(CheckpointSpec::new(files)),
                eager: true,
            });
        }
        if !self.no_discover {
            let base = nanochat_base_dir();
            let (found, _) = discover_checkpoints(&base);
            notes.push(format!(
                "looked for checkpoints in {}/{{base,mid,chatsft,chatrl}}_checkpoints: {}",
                base.display(),
                if found.is_empty() {
                    "none found".to_string()
                } else {
                    format!("{} found", found.len())
                }
            ));
            for d in found {
                notes.push(format!(
                    "{}: {} (step {}, loads on first use)",
                    d.id,
                    d.files.dir.display(),
                    d.files.step
                ));
                checkpoints.push(CheckpointModel {
                    id: d.id,
                    spec: self.spec(CheckpointSpec::new(d.files)),
                    eager: false,
                });
            }
        }
        let simulated = if self.no_simulate {
            Vec::new()
        } else {
            self.simulate.clone()
        };
        if !simulated.is_empty() {
            notes.push(format!("simulated: {}", simulated.join(", ")));
        }
        let config = ServeConfig {
            host: self.host.clone(),
            port: self.port,
            checkpoints,
            simulated,
            simulator: SimulatorSettings {
                echo: self.sim_mode == "echo",
                ttft_ms: self.sim_ttft_ms.max(0.0),
                itl_ms: self.sim_itl_ms.max(0.0),
                itl_jitter_ms: self.sim_jitter_ms.max(0.0),
                response_length: self
                    .sim_response_length
                    .as_deref()
                    .and_then(ResponseLength::parse),
            },
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            cors_origins: self.cors_origins.clone(),
            max_request_bytes: self.max_request_bytes,
            limits: RequestLimits {
                max_messages: self.max_messages,
                max_message_chars: self.max_message_chars,
                max_total_chars: self.max_total_chars,
                max_n: self.max_n.max(1),
            },
            faults: FaultInjector {
                rate: self.failure_rate,
                types: if self.failure_types.is_empty() {
                    FailureType::ALL.to_vec()
                } else {
                    self.failure_types.clone()
                },
            },
        };
        Ok((config, notes))
    }

    /// `spec` with this command line's loading and batching settings.
    fn spec(&self, spec: CheckpointSpec) -> CheckpointSpec {
        CheckpointSpec {
            location: spec.location,
            tokenizer_dir: None,
            dtype: self.dtype,
            max_model_len: self.max_model_len,
            max_queue: self.max_queue,
            max_seqs: self.max_seqs,
            kv_budget_tokens: self.kv_budget_tokens,
            max_batched_tokens: self.max_batched_tokens,
        }
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NANOCHAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (config, notes) = args.config()?;
    // The example request names a model that answers at once: a --model checkpoint (loaded at
    // startup), else a simulated one, else whatever was discovered.
    let eager = config.checkpoints.iter().filter(|c| c.eager).count();
    let discovered = config.checkpoints.len() - eager;
    let example_model = if eager > 0 || config.simulated.is_empty() {
        0
    } else {
        eager + discovered
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = nanochat_server::bind(config).await.map_err(anyhow::Error::msg)?;
        if server.models.is_empty() {
            bail!("nothing to serve: no --model, no checkpoints found, and --no-simulate");
        }
        let address = server.local_addr()?;
        let url = format!("http://{address}");
        println!("nanochat serve: listening on {url}");
        for note in notes {
            println!("  {note}");
        }
        println!("  OpenAI base URL: {url}/v1");
        let model = &server.models[example_model];
        println!(
            "  try: curl {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"
        );
        server.run(shutdown_signal()).await.context("serving")
    })
}

/// Ctrl-C or SIGTERM (docker stop).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    eprintln!("nanochat serve: shutting down");
}
