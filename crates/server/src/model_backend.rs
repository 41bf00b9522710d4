//! A nanochat checkpoint as a [`Backend`]: a thread per model owns the weights and runs the
//! continuous-batching [`Scheduler`]; `submit` only queues (or refuses with 429 when
//! `max_queue` requests already wait).
//!
//! The weights load when the server starts (`eager`) or on the first request. Structured
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

/// Where a checkpoint is and how to load it.
#[derive(Clone, Debug)]
pub struct CheckpointSpec {
    pub files: CheckpointFiles,
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
}

impl CheckpointSpec {
    /// The spec with the server's defaults: 64 waiting requests, 8 sequences at once.
    pub fn new(files: CheckpointFiles) -> Self {
        Self {
            files,
            tokenizer_dir: None,
            dtype: WeightDType::F32,
            max_model_len: None,
            max_queue: 64,
            max_seqs: 8,
            kv_budget_tokens: None,
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
    context: usize,
    max_queue: usize,
    stats: Arc<BackendStats>,
}

impl CheckpointBackend {
    /// Reads the checkpoint's meta (cheap) and starts the worker thread. With `eager`, the
    /// weights load now (counted in `loading` until done); otherwise on the first request.
    pub fn start(
        id: &str,
        spec: CheckpointSpec,
        eager: bool,
        loading: Arc<LoadingCounter>,
    ) -> Result<Self, String> {
        let (_, config) = read_meta(&spec.files.meta).map_err(|e| e.to_string())?;
        let context = spec
            .max_model_len
            .unwrap_or(config.sequence_len)
            .min(config.rotary_len());
        if spec.max_seqs == 0 {
            return Err("--max-seqs must be at least 1".into());
        }
        let limits = BatchLimits {
            max_seqs: spec.max_seqs,
            kv_budget_tokens: spec.kv_budget_tokens.unwrap_or(spec.max_seqs * context),
        };
        if limits.kv_budget_tokens < context {
            return Err(format!(
                "the KV budget ({} positions) must hold at least one full context ({context})",
                limits.kv_budget_tokens
            ));
        }
        let spec_max_queue = spec.max_queue;
        let (jobs, queue) = std_mpsc::channel::<Job>();
        if eager {
            loading.0.fetch_add(1, Ordering::SeqCst);
        }
        let name = id.to_string();
        let stats = Arc::new(BackendStats::default());
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("model {id}"))
            .spawn(move || {
                let mut model = None;
                if eager {
                    model = Some(load(&name, &spec, context));
                    loading.0.fetch_sub(1, Ordering::SeqCst);
                }
                let mut model = LazyModel {
                    model,
                    load: Box::new(move || load(&name, &spec, context)),
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
        Some(self.context)
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

fn load(id: &str, spec: &CheckpointSpec, context: usize) -> Result<Model, String> {
    let started = std::time::Instant::now();
    let loaded =
        load_checkpoint(&spec.files, spec.dtype, &Device::Cpu).map_err(|e| e.to_string())?;
    let tokenizer_dir = spec
        .tokenizer_dir
        .clone()
        .unwrap_or_else(|| tokenizer_dir_for(&spec.files));
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
        spec.files.weights.display()
    );
    Ok(Model {
        loaded,
        tokenizer,
        constraints: None,
        context,
    })
}
