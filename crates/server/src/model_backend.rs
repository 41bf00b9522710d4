//! A nanochat checkpoint as a [`Backend`]: a thread per model owns the weights and runs the
//! continuous-batching [`Scheduler`]; `submit` only queues (or refuses with 429 when
//! `max_queue` requests already wait).
//!
//! The weights load when the server starts (`eager`) or on the first request. A checkpoint
//! that must be fetched first (`--model hf:owner/repo`) is fetched by its worker thread, so
//! the server answers (`/ready` with 503) while the download runs. Structured
//! outputs and forced tool calls are generated under a JSON-schema grammar, so they always
//! parse (unless `max_tokens` cuts them, which reports `length`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use candle_core::Device;
use nanochat_model::checkpoint::{load_checkpoint, read_meta, CheckpointFiles};
use nanochat_model::save::tokenizer_dir_for;
use nanochat_model::WeightDType;
use nanochat_tokenizer::Tokenizer;

use crate::api_error::ApiError;
use crate::backend::{Backend, BackendStats, Event, EventSender, GenerationRequest};
use crate::scheduler::{BatchLimits, Job, Model, Scheduler};

/// Fetches a checkpoint's files (e.g. pulls them from a hub) and says where they are.
pub type FetchCheckpoint = Arc<dyn Fn() -> Result<CheckpointFiles, String> + Send + Sync>;

/// Where a checkpoint's files are.
#[derive(Clone)]
pub enum CheckpointLocation {
    /// On disk.
    Local(CheckpointFiles),
    /// To be fetched before loading; `name` says from where (`hf:sdobson/nanochat`).
    Remote {
        name: String,
        fetch: FetchCheckpoint,
    },
}

impl std::fmt::Debug for CheckpointLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(files) => f.debug_tuple("Local").field(files).finish(),
            Self::Remote { name, .. } => f.debug_struct("Remote").field("name", name).finish(),
        }
    }
}

/// Where a checkpoint is and how to load it.
#[derive(Clone, Debug)]
pub struct CheckpointSpec {
    pub location: CheckpointLocation,
    pub tokenizer_dir: Option<PathBuf>,
    pub dtype: WeightDType,
    /// Context window to enforce; default the model's training `sequence_len`.
    pub max_model_len: Option<usize>,
    /// Requests that may wait for the model; more are refused with 429 and `Retry-After`.
    pub max_queue: usize,
    /// Sequences decoded together.
    pub max_seqs: usize,
    /// KV positions running sequences may reserve in all; default `max_seqs × context`.
    pub kv_budget_tokens: Option<usize>,
    /// Tokens one forward pass carries: a token per decoding sequence, the rest filled with the
    /// next chunk of a prompt being prefilled (at least one token of it).
    pub max_batched_tokens: usize,
}

/// Default tokens per forward pass (decode rows + prompt chunk). Measured with 8 d20 bf16
/// streams on 2 cores (`nanochat bench serve`, 64-token answers): see the README's serving
/// table. 16 keeps a step that carries a prompt chunk within one 16-row panel of the bf16-dot
/// kernel; larger gets a long prompt's first token sooner at the cost of the running streams'
/// inter-token latency.
pub const DEFAULT_MAX_BATCHED_TOKENS: usize = 16;

impl CheckpointSpec {
    /// The spec with the server's defaults: 64 waiting requests, 8 sequences at once.
    pub fn new(files: CheckpointFiles) -> Self {
        Self::at(CheckpointLocation::Local(files))
    }

    /// A checkpoint fetched by its worker before it loads (always at startup).
    pub fn remote(name: &str, fetch: FetchCheckpoint) -> Self {
        Self::at(CheckpointLocation::Remote {
            name: name.to_string(),
            fetch,
        })
    }

    fn at(location: CheckpointLocation) -> Self {
        Self {
            location,
            tokenizer_dir: None,
            dtype: WeightDType::F32,
            max_model_len: None,
            max_queue: 64,
            max_seqs: 8,
            kv_budget_tokens: None,
            max_batched_tokens: DEFAULT_MAX_BATCHED_TOKENS,
        }
    }
}

/// Counts models still loading, for `/ready`.
#[derive(Debug, Default)]
pub struct LoadingCounter(AtomicUsize);

impl LoadingCounter {
    pub fn pending(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct CheckpointBackend {
    jobs: std_mpsc::Sender<Job>,
    /// The context window; 0 while a remote checkpoint is still being fetched.
    context: Arc<AtomicUsize>,
    max_queue: usize,
    stats: Arc<BackendStats>,
}

impl CheckpointBackend {
    /// Reads the checkpoint's meta (cheap) and starts the worker thread. With `eager`, the
    /// weights load now (counted in `loading` until done); otherwise on the first request.
    /// A remote checkpoint is fetched, then loaded, by the worker (always eagerly).
    pub fn start(
        id: &str,
        spec: CheckpointSpec,
        eager: bool,
        loading: Arc<LoadingCounter>,
    ) -> Result<Self, String> {
        if spec.max_seqs == 0 {
            return Err("--max-seqs must be at least 1".into());
        }
        // Local checkpoints are checked now, so a bad one stops the server from starting.
        let prepared = match &spec.location {
            CheckpointLocation::Local(files) => Some((files.clone(), prepare(&spec, files)?)),
            CheckpointLocation::Remote { .. } => None,
        };
        let eager = eager || prepared.is_none();
        // The context window, 0 until a remote checkpoint's meta is known.
        let context = Arc::new(AtomicUsize::new(
            prepared.as_ref().map_or(0, |(_, (c, _))| *c),
        ));
        let spec_max_queue = spec.max_queue;
        let (jobs, queue) = std_mpsc::channel::<Job>();
        if eager {
            loading.0.fetch_add(1, Ordering::SeqCst);
        }
        let name = id.to_string();
        let stats = Arc::new(BackendStats::default());
        let worker_stats = stats.clone();
        let worker_context = context.clone();
        std::thread::Builder::new()
            .name(format!("model {id}"))
            .spawn(move || {
                let prepared = match prepared {
                    Some(prepared) => Ok(prepared),
                    None => fetch_and_prepare(&name, &spec),
                };
                let (files, (ctx, limits)) = match prepared {
                    Ok(prepared) => prepared,
                    Err(message) => {
                        // Every request is answered with why the model is not there.
                        tracing::error!(model = name, "{message}");
                        loading.0.fetch_sub(1, Ordering::SeqCst);
                        let mut failed = LazyModel {
                            model: Some(Err(message.clone())),
                            load: Box::new(move || Err(message.clone())),
                        };
                        let limits = BatchLimits {
                            max_seqs: 1,
                            kv_budget_tokens: 1,
                            max_batched_tokens: 1,
                        };
                        Scheduler::new(limits, worker_stats).run(queue, &mut failed);
                        return;
                    }
                };
                worker_context.store(ctx, Ordering::SeqCst);
                let mut model = None;
                if eager {
                    model = Some(load(&name, &spec, &files, ctx));
                    loading.0.fetch_sub(1, Ordering::SeqCst);
                }
                let mut model = LazyModel {
                    model,
                    load: Box::new(move || load(&name, &spec, &files, ctx)),
                };
                Scheduler::new(limits, worker_stats).run(queue, &mut model);
            })
            .map_err(|e| format!("cannot start the worker thread: {e}"))?;
        Ok(Self {
            jobs,
            context,
            max_queue: spec_max_queue,
            stats,
        })
    }
}

/// The context window and batch limits of the checkpoint at `files`, from its meta.
fn prepare(spec: &CheckpointSpec, files: &CheckpointFiles) -> Result<(usize, BatchLimits), String> {
    let (_, config) = read_meta(&files.meta).map_err(|e| e.to_string())?;
    let context = spec
        .max_model_len
        .unwrap_or(config.sequence_len)
        .min(config.rotary_len());
    let limits = BatchLimits {
        max_seqs: spec.max_seqs,
        kv_budget_tokens: spec.kv_budget_tokens.unwrap_or(spec.max_seqs * context),
        max_batched_tokens: spec.max_batched_tokens.max(1),
    };
    if limits.kv_budget_tokens < context {
        return Err(format!(
            "the KV budget ({} positions) must hold at least one full context ({context})",
            limits.kv_budget_tokens
        ));
    }
    Ok((context, limits))
}

/// Fetches a remote checkpoint, then prepares it.
fn fetch_and_prepare(
    id: &str,
    spec: &CheckpointSpec,
) -> Result<(CheckpointFiles, (usize, BatchLimits)), String> {
    let CheckpointLocation::Remote { name, fetch } = &spec.location else {
        return Err("not a remote checkpoint".into());
    };
    tracing::info!(model = id, "fetching {name}");
    let files = fetch().map_err(|e| format!("cannot get {name}: {e}"))?;
    let prepared = prepare(spec, &files)?;
    Ok((files, prepared))
}

impl Backend for CheckpointBackend {
    fn submit(&self, request: GenerationRequest, events: EventSender) {
        if self.stats.waiting.load(Ordering::SeqCst) >= self.max_queue {
            let error = ApiError::rate_limited(
                format!(
                    "The model {} has {} requests waiting; try again shortly.",
                    request.model, self.max_queue
                ),
                1,
            );
            let _ = events.send(Event::Failed(error));
            return;
        }
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        if let Err(std_mpsc::SendError(job)) = self.jobs.send(Job { request, events }) {
            let _ = job.events.send(Event::Failed(ApiError::internal(
                "the model's worker has stopped",
            )));
        }
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.context.load(Ordering::SeqCst)).filter(|&c| c > 0)
    }

    fn stats(&self) -> Arc<BackendStats> {
        self.stats.clone()
    }
}

/// The model, loaded on first use; a failed load is kept (and reported to every request).
pub(crate) struct LazyModel {
    model: Option<Result<Model, String>>,
    load: Box<dyn Fn() -> Result<Model, String> + Send>,
}

impl LazyModel {
    pub fn get(&mut self) -> Result<&mut Model, String> {
        self.model
            .get_or_insert_with(|| (self.load)())
            .as_mut()
            .map_err(|message| message.clone())
    }
}

fn load(
    id: &str,
    spec: &CheckpointSpec,
    files: &CheckpointFiles,
    context: usize,
) -> Result<Model, String> {
    let started = std::time::Instant::now();
    let loaded = load_checkpoint(files, spec.dtype, &Device::Cpu).map_err(|e| e.to_string())?;
    let tokenizer_dir = spec
        .tokenizer_dir
        .clone()
        .unwrap_or_else(|| tokenizer_dir_for(files));
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir).map_err(|e| e.to_string())?;
    if tokenizer.vocab_size() > loaded.config.vocab_size {
        return Err(format!(
            "the tokenizer in {} has {} tokens but the model only {}",
            tokenizer_dir.display(),
            tokenizer.vocab_size(),
            loaded.config.vocab_size
        ));
    }
    tracing::info!(
        model = id,
        seconds = started.elapsed().as_secs_f64(),
        "loaded {}",
        files.weights.display()
    );
    Ok(Model {
        loaded,
        tokenizer,
        constraints: None,
        context,
    })
}
