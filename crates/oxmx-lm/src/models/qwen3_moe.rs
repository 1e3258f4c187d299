//! Qwen3-MoE (`model_type: qwen3_moe`): the qwen3 attention (q/k RMSNorm) with a sparse mixture of
//! experts on the layers `decoder_sparse_step` selects (minus `mlp_only_layers`, which keep a
//! dense SwiGLU of `intermediate_size`). The router takes the softmax over all experts and keeps
//! the top `num_experts_per_tok`, renormalised only with `norm_topk_prob`.

use super::base::{norm, rms_norm, Attention, DecoderLM, DecoderOptions, Layer, Mlp};
use super::switch::SparseMoe;
use crate::cache::KvCache;
use crate::config::ModelConfig;
use oxmx_core::{Array, Error, Result};
use oxmx_nn::{Module, ModuleState, RMSNorm};

/// Exactly one of `moe` and `dense` is set; both sit under the checkpoint's `mlp.` prefix
/// (`mlp.gate` + `mlp.switch_mlp.*`, or `mlp.{gate,up,down}_proj`).
#[derive(Module, Clone, Debug)]
pub struct Qwen3MoeLayer {
    pub self_attn: Attention,
    #[module(rename = "mlp")]
    pub moe: Option<SparseMoe>,
    #[module(rename = "mlp")]
    pub dense: Option<Mlp>,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl Layer for Qwen3MoeLayer {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let h = x + &self.self_attn.forward(&rms_norm(&self.input_layernorm, x), cache);
        let y = rms_norm(&self.post_attention_layernorm, &h);
        let y = match (&self.moe, &self.dense) {
            (Some(m), _) => m.forward(&y),
            (None, Some(d)) => d.forward(&y),
            (None, None) => return Array::error(Error::invalid("[qwen3_moe] a layer has neither experts nor an MLP")),
        };
        &h + &y
    }
    fn fuse_projections(&mut self) -> Result<()> {
        self.self_attn.fuse_projections()
    }
}

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM<Qwen3MoeLayer>> {
    // Hub configs say `num_experts`; transformers 5 writes `num_local_experts`.
    let experts = match c.arch_usize("num_experts")? {
        Some(e) => e,
        None => c.arch_required("num_local_experts")?,
    };
    let top_k = c.arch_required("num_experts_per_tok")?;
    let moe_hidden = c.arch_required("moe_intermediate_size")?;
    let step = c.arch_usize("decoder_sparse_step")?.unwrap_or(1);
    if step == 0 {
        return Err(Error::invalid("[config] `decoder_sparse_step` must be positive"));
    }
    let dense_only: Vec<usize> = match c.arch.get("mlp_only_layers") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(v) => v
            .as_array()
            .and_then(|xs| xs.iter().map(|x| x.as_u64().map(|n| n as usize)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| Error::invalid(format!("[config] `mlp_only_layers` must be a list of layer indices, got {v}")))?,
    };
    let norm_topk = c.arch.get("norm_topk_prob").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let o = DecoderOptions { qkv_bias: c.attention_bias, o_bias: c.attention_bias, qk_norm: true, ..Default::default() };
    DecoderLM::with_layers(c, tied, |i| {
        let sparse = experts > 0 && !dense_only.contains(&i) && (i + 1) % step == 0;
        Ok(Qwen3MoeLayer {
            self_attn: Attention::new(c, &o)?,
            moe: if sparse { Some(SparseMoe::new(c.hidden_size, moe_hidden, experts, top_k, norm_topk)?) } else { None },
            dense: (!sparse).then(|| Mlp::new(c.hidden_size, c.intermediate_size, false)),
            input_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            post_attention_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            state: ModuleState::default(),
        })
    })
}
