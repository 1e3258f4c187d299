//! `oxmx serve`: an OpenAI-compatible HTTP server (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/models`, `/health`) on axum + tokio. One engine thread owns the model and batches the
//! decode steps of concurrent requests ([`engine`]); handlers validate requests, template and
//! tokenize them, and talk to the engine through channels ([`routes`], [`sse`]).
//!
//! Modules, one concern each: `openai` (request fields), `error` (OpenAI error bodies),
//! `routes` (HTTP, auth, CORS, responses), `sse` (streaming), `engine` (the thread and its
//! batching), `batch_cache` (the shared decode cache), `prefix_cache` (prompt reuse across
//! requests), `sequence` (one request's sampling, stops and logprobs), `reply_parse` (reasoning
//! and tool calls), `json_mask` (constrained decoding), `vocab` (token texts).

pub mod batch_cache;
pub mod engine;
pub mod error;
pub mod json_mask;
pub mod openai;
pub mod prefix_cache;
pub mod reply_parse;
pub mod routes;
pub mod sequence;
pub mod sse;
pub mod vocab;

use crate::loader::{load, LoadOptions};
use crate::tokenizer::Tokenizer;
use oxmx_core::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use engine::EngineConfig;
pub use openai::Defaults;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub model_path: PathBuf,
    /// The name `/v1/models` lists and requests must use (default: the file or folder name).
    pub model_id: Option<String>,
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub engine: EngineConfig,
    pub defaults: Defaults,
    pub api_key: Option<String>,
    pub cors: bool,
    /// Extra end-of-sequence token ids (on top of the model's).
    pub extra_eos: Vec<u32>,
}

impl ServerConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            model_path: model_path.into(),
            model_id: None,
            host: "127.0.0.1".into(),
            port: 8080,
            engine: EngineConfig::default(),
            defaults: Defaults::default(),
            api_key: None,
            cors: false,
            extra_eos: vec![],
        }
    }
}

/// A server running on its own threads (its tokio runtime and the engine).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub model_id: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server stops (it runs until shut down).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Stop accepting; the server thread finishes in-flight responses on its own (not joined:
        // a client holding a keep-alive connection must not block the caller).
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// Loads the model, starts the engine and binds the listener; returns once it accepts requests.
pub fn start(cfg: ServerConfig) -> Result<RunningServer> {
    let loaded = load(&cfg.model_path, &LoadOptions::default())?;
    let tok = Arc::new(Tokenizer::from_path(&cfg.model_path)?);
    let mut eos = loaded.eos_token_ids.clone();
    if eos.is_empty() {
        eos.extend_from_slice(tok.eos_token_ids());
    }
    for &e in &cfg.extra_eos {
        if !eos.contains(&e) {
            eos.push(e);
        }
    }
    let model_id = cfg
        .model_id
        .clone()
        .unwrap_or_else(|| cfg.model_path.file_name().map_or_else(|| "default_model".to_string(), |n| n.to_string_lossy().into_owned()));
    let vocab = loaded.config.vocab_size;
    let context = loaded.config.max_position_embeddings;
    let engine_cfg = EngineConfig { eos_token_ids: eos, ..cfg.engine.clone() };
    let handle = engine::spawn(loaded.model, tok.clone(), engine_cfg)?;
    let state = Arc::new(routes::AppState {
        model_id: model_id.clone(),
        tok,
        vocab,
        context,
        defaults: cfg.defaults.clone(),
        engine: handle.tx,
        stats: handle.stats,
        api_key: cfg.api_key.clone(),
        cors: cfg.cors,
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("oxmx-http")
        .build()
        .map_err(|e| Error::io(format!("[serve] cannot start the async runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)))
        .map_err(|e| Error::io(format!("[serve] cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
    let addr = listener.local_addr().map_err(|e| Error::io(format!("[serve] no local address: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(state);
    let thread = std::thread::Builder::new()
        .name("oxmx-serve".into())
        .spawn(move || {
            rt.block_on(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        })
        .map_err(|e| Error::io(format!("[serve] cannot start the server thread: {e}")))?;
    Ok(RunningServer { addr, model_id, shutdown: Some(stop_tx), thread: Some(thread) })
}
