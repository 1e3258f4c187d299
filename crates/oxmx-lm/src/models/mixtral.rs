//! Mixtral (`model_type: mixtral`): the llama attention (optionally sliding-window) with a sparse
//! mixture of SwiGLU experts in place of the MLP (`block_sparse_moe`: router `gate`, top
//! `num_experts_per_tok` of `num_local_experts`, renormalised weights).

use super::base::{norm, rms_norm, Attention, DecoderLM, DecoderOptions, Layer};
use super::switch::SparseMoe;
use crate::cache::KvCache;
use crate::config::ModelConfig;
use oxmx_core::{Array, Result};
use oxmx_nn::{Module, ModuleState, RMSNorm};

#[derive(Module, Clone, Debug)]
pub struct MixtralLayer {
    pub self_attn: Attention,
    pub block_sparse_moe: SparseMoe,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl Layer for MixtralLayer {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let h = x + &self.self_attn.forward(&rms_norm(&self.input_layernorm, x), cache);
        &h + &self.block_sparse_moe.forward(&rms_norm(&self.post_attention_layernorm, &h))
    }
    fn fuse_projections(&mut self) -> Result<()> {
        self.self_attn.fuse_projections()
    }
}

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM<MixtralLayer>> {
    let experts = c.arch_required("num_local_experts")?;
    let top_k = c.arch_required("num_experts_per_tok")?;
    // transformers applies `sliding_window` when set (Mixtral-8x7B leaves it null).
    let o = DecoderOptions { window: c.arch_usize("sliding_window")?, ..Default::default() };
    DecoderLM::with_layers(c, tied, |_| {
        Ok(MixtralLayer {
            self_attn: Attention::new(c, &o)?,
            block_sparse_moe: SparseMoe::new(c.hidden_size, c.intermediate_size, experts, top_k, true)?,
            input_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            post_attention_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            state: ModuleState::default(),
        })
    })
}
