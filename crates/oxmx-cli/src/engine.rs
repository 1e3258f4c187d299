//! The model side of the commands: load, keep a KV cache, generate ids. Placeholder until the
//! lmmodel branch's loader and generation loop are merged into this branch.

use std::path::Path;

use oxmx_core::{Error, Result};

/// What `generate` needs besides the prompt.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub temp: f64,
    pub top_p: f64,
    pub min_p: f64,
    pub top_k: usize,
    pub seed: Option<u64>,
    pub max_kv_size: Option<usize>,
    pub max_tokens: usize,
    pub eos_token_ids: Vec<u32>,
}

/// mlx_lm's statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub prompt_tps: f64,
    pub generation_tps: f64,
    pub peak_memory: usize,
}

impl Stats {
    pub fn peak_memory_gb(&self) -> f64 {
        self.peak_memory as f64 / 1e9
    }
}

pub struct Engine {
    eos: Vec<u32>,
}

impl Engine {
    pub fn load(path: &Path, _max_kv_size: Option<usize>) -> Result<Engine> {
        let _ = Engine { eos: Vec::new() };
        Err(Error::runtime(format!(
            "cannot run {}: model loading and generation are not in this build yet",
            path.display()
        )))
    }
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }
    pub fn reset_cache(&mut self) {}
    /// Generates after `prompt` (continuing the cache), calling `on_token` for every id.
    pub fn generate(&mut self, _prompt: &[u32], _p: &GenParams, _on_token: &mut dyn FnMut(u32) -> Result<()>) -> Result<Stats> {
        Err(Error::runtime("generation is not in this build yet"))
    }
}
