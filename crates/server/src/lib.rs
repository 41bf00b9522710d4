//! `nanochat serve`: an OpenAI-compatible HTTP API (chat completions, legacy completions,
//! models) over nanochat checkpoints and simulated models, strict enough for the official SDKs.
//!
//! Request path: [`routes`] (HTTP, auth, limits) → [`validate`] (body → [`backend::GenerationRequest`])
//! → a [`backend::Backend`] ([`model_backend`] for checkpoints, [`simulator`] for simulated
//! models) → [`respond`] (events → JSON or SSE).

pub mod api_error;
pub mod backend;
pub mod chat_prompt;
mod choice_output;
pub mod faults;
mod logprobs;
pub mod metrics;
pub mod model_backend;
pub mod nanochat_api;
pub mod openai_types;
pub mod registry;
pub mod respond;
pub mod routes;
pub mod scheduler;
pub mod simulator;
pub mod stop;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::model_backend::{CheckpointBackend, CheckpointSpec, LoadingCounter};
use crate::registry::{ModelEntry, ModelRegistry};
use crate::routes::AppState;
use crate::simulator::{SimulatedBackend, SimulatorSettings};

/// A checkpoint to serve under `id`.
#[derive(Clone, Debug)]
pub struct CheckpointModel {
    pub id: String,
    pub spec: CheckpointSpec,
    /// Load at startup (else on first request).
    pub eager: bool,
}

/// Everything `nanochat serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub checkpoints: Vec<CheckpointModel>,
    pub simulated: Vec<String>,
    pub simulator: SimulatorSettings,
    pub api_key: Option<String>,
    pub cors_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub limits: validate::RequestLimits,
    pub faults: faults::FaultInjector,
}

/// A bound server, not yet running: its address is known (useful with port 0).
pub struct BoundServer {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    pub models: Vec<String>,
}

impl BoundServer {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, finishing the requests in flight.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // Tokens are small writes: without TCP_NODELAY, Nagle's algorithm and the client's
        // delayed ACK hold each one back ~40 ms.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The model nanochat's own protocol answers with: the first `--model`, else a discovered
/// `sft-*` checkpoint, else any checkpoint, else the first simulated model.
fn nanochat_model(config: &ServeConfig, ids: &[String]) -> Option<String> {
    let checkpoints = &config.checkpoints;
    checkpoints
        .iter()
        .find(|c| c.eager)
        .or_else(|| checkpoints.iter().find(|c| c.id.starts_with("sft-")))
        .or(checkpoints.first())
        .map(|c| c.id.clone())
        .or_else(|| ids.first().cloned())
}

/// The HTTP application for `config`: registers the models and starts checkpoint workers.
/// Returns the router and the model ids in listing order.
pub fn app(config: &ServeConfig) -> Result<(axum::Router, Vec<String>), String> {
    let loading = Arc::new(LoadingCounter::default());
    let mut models = ModelRegistry::default();
    for checkpoint in &config.checkpoints {
        let backend = CheckpointBackend::start(
            &checkpoint.id,
            checkpoint.spec.clone(),
            checkpoint.eager,
            loading.clone(),
        )
        .map_err(|e| format!("model {}: {e}", checkpoint.id))?;
        let dtype = format!("{:?}", checkpoint.spec.dtype);
        models.add(ModelEntry::checkpoint(
            &checkpoint.id,
            &checkpoint.spec.location,
            &dtype,
            Arc::new(backend),
        ))?;
    }
    let simulator = Arc::new(SimulatedBackend::new(config.simulator.clone()));
    for id in &config.simulated {
        models.add(ModelEntry::simulated(id, simulator.clone()))?;
    }
    let ids: Vec<String> = models.entries().iter().map(|e| e.id.clone()).collect();
    let nanochat_model = nanochat_model(config, &ids);
    let state = Arc::new(AppState {
        models,
        api_key: config.api_key.clone(),
        limits: config.limits.clone(),
        faults: config.faults.clone(),
        max_request_bytes: config.max_request_bytes,
        loading,
        nanochat_model,
        metrics: Arc::default(),
    });
    Ok((routes::router(state, &config.cors_origins), ids))
}

/// Builds the application and binds the listening socket.
pub async fn bind(config: ServeConfig) -> Result<BoundServer, String> {
    let (app, models) = app(&config)?;
    let address = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    Ok(BoundServer {
        listener,
        app,
        models,
    })
}
