//! Language models by `model_type`, one file each, and the registry that maps a config to a
//! constructor (with mlx-lm's aliases, e.g. mistral -> llama).

pub mod base;
pub mod fused;
pub mod gemma3_text;
pub mod llama;
pub mod mixtral;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3_moe;
pub mod rope;
pub mod switch;

use crate::cache::{KvCache, PromptCache};
use crate::config::ModelConfig;
use oxmx_core::{Array, Error, Result};
use oxmx_nn::Module;

/// A causal language model: `forward(tokens [B, L] int32, cache) -> logits [B, L, vocab]`.
pub trait LanguageModel: Module + Send + Sync {
    fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array;
    /// As `forward`, with logits for the last position only (`[B, 1, vocab]`): a prompt's
    /// final chunk runs the head on one row instead of L (the generator's first step).
    fn forward_last(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        base::last_position(&self.forward(tokens, cache))
    }
    fn num_layers(&self) -> usize;
    fn config(&self) -> &ModelConfig;
    /// Checkpoint keys -> this model's keys (drops rotary buffers, a tied `lm_head`, ...).
    fn sanitize(&self, weights: Vec<(String, Array)>) -> Vec<(String, Array)>;
    /// The model's own per-layer caches (mlx-lm's `make_cache`), e.g. window-sized rings for
    /// gemma3's sliding-window layers; `None` leaves the choice to `cache::make_prompt_cache`.
    /// Every model also runs correctly on the generic caches.
    fn make_cache(&self, _max_kv_size: Option<usize>) -> Option<PromptCache> {
        None
    }
    /// Runs projections of the same input as one product where the model has them (see
    /// `fused.rs`); parameters and results are unchanged.
    fn fuse_projections(&mut self) -> Result<()> {
        Ok(())
    }
    /// Tensor parallelism over `group`: each rank keeps its slice of every layer's attention
    /// heads and MLP features (one all-sum after each); embeddings, norms and the head stay
    /// whole. Call after loading, before `fuse_projections`.
    fn shard(&mut self, _group: &oxmx_core::distributed::Group) -> Result<()> {
        Err(Error::invalid("[tensor parallel] this model family cannot be sharded yet (the llama-style families can)"))
    }
}

/// `model_type`s that are another architecture's checkpoints (mlx-lm's `MODEL_REMAPPING`).
pub const ALIASES: &[(&str, &str)] = &[("mistral", "llama"), ("iquestcoder", "llama")];

/// The architectures this crate builds.
pub const SUPPORTED: &[&str] = &["gemma3", "gemma3_text", "llama", "mixtral", "phi3", "qwen2", "qwen3", "qwen3_moe"];

/// The architecture for a `model_type` after aliasing.
pub fn resolve_model_type(model_type: &str) -> &str {
    ALIASES.iter().find(|(from, _)| *from == model_type).map_or(model_type, |(_, to)| to)
}

/// Builds the (unloaded) model for `config`; `tied` says whether the output projection reuses
/// the embedding. Unknown types are an error that lists the supported ones.
pub fn build_model(config: &ModelConfig, tied: bool) -> Result<Box<dyn LanguageModel>> {
    match resolve_model_type(&config.model_type) {
        "llama" => Ok(Box::new(llama::build(config, tied)?)),
        "qwen2" => Ok(Box::new(qwen2::build(config, tied)?)),
        "qwen3" => Ok(Box::new(qwen3::build(config, tied)?)),
        "phi3" => Ok(Box::new(phi3::build(config, tied)?)),
        "mixtral" => Ok(Box::new(mixtral::build(config, tied)?)),
        "qwen3_moe" => Ok(Box::new(qwen3_moe::build(config, tied)?)),
        "gemma3" | "gemma3_text" => gemma3_text::build(config, tied),
        other => {
            let mut names: Vec<String> = SUPPORTED.iter().map(|s| s.to_string()).collect();
            names.extend(ALIASES.iter().map(|(a, b)| format!("{a} (as {b})")));
            Err(Error::invalid(format!("[load] model_type `{other}` is not supported; supported: {}", names.join(", "))))
        }
    }
}

/// Drops keys that are not parameters of a Llama-style model.
pub(crate) fn sanitize_common(weights: Vec<(String, Array)>, tied: bool) -> Vec<(String, Array)> {
    weights.into_iter().filter(|(k, _)| !k.contains("rotary_emb.inv_freq") && !(tied && k == "lm_head.weight")).collect()
}

impl<L: base::Layer> LanguageModel for base::DecoderLM<L> {
    fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        base::DecoderLM::forward(self, tokens, cache)
    }
    fn forward_last(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        base::DecoderLM::logits(self, tokens, cache, true)
    }
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn fuse_projections(&mut self) -> Result<()> {
        self.model.layers.iter_mut().try_for_each(|l| l.fuse_projections())
    }
    fn shard(&mut self, group: &oxmx_core::distributed::Group) -> Result<()> {
        if group.size() == 1 {
            return Ok(());
        }
        self.model.layers.iter_mut().try_for_each(|l| l.shard(group))?;
        // Materialise the slices now, so the full tensors they came from are freed.
        let params = self.parameters();
        oxmx_core::eval(&params.values().collect::<Vec<_>>())
    }
    /// Also stacks per-expert MoE matrices (mixtral, qwen3_moe); a no-op for dense models.
    fn sanitize(&self, weights: Vec<(String, Array)>) -> Vec<(String, Array)> {
        switch::stack_experts(sanitize_common(weights, self.lm_head.is_none()))
    }
}
