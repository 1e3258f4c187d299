//! Phi-3 / Phi-3.5 / Phi-4-mini (`model_type: phi3`): the llama block with fused projections —
//! `qkv_proj` (queries, then keys, then values along the output axis) and `gate_up_proj` (gate
//! rows, then up rows) — partial rotary features (`partial_rotary_factor`), LongRoPE ("su")
//! scaling, and transformers' `sliding_window` when the config sets one.

use super::base::{attend, linear, norm, rms_norm, split_heads, zeros_linear, AttnSpec, DecoderLM, Layer};
use crate::cache::KvCache;
use crate::config::ModelConfig;
use oxmx_core::{ops, Array, Result};
use oxmx_nn::{Linear, Module, ModuleState, RMSNorm};

#[derive(Module, Clone, Debug)]
pub struct Phi3Attention {
    pub qkv_proj: Linear,
    pub o_proj: Linear,
    #[module(skip)]
    pub spec: AttnSpec,
    pub state: ModuleState,
}

impl Phi3Attention {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let s = &self.spec;
        let (q_end, k_end) = (s.n_heads * s.head_dim, (s.n_heads + s.n_kv_heads) * s.head_dim);
        let qkv = ops::split_at(&linear(&self.qkv_proj, x), &[q_end as isize, k_end as isize], -1);
        let q = split_heads(&qkv[0], s.n_heads, s.head_dim);
        let k = split_heads(&qkv[1], s.n_kv_heads, s.head_dim);
        let v = split_heads(&qkv[2], s.n_kv_heads, s.head_dim);
        linear(&self.o_proj, &attend(s, &q, &k, &v, cache))
    }
}

/// `down(silu(gate) * up)` with `[gate; up] = gate_up_proj(x)`.
#[derive(Module, Clone, Debug)]
pub struct Phi3Mlp {
    pub gate_up_proj: Linear,
    pub down_proj: Linear,
    pub state: ModuleState,
}

impl Phi3Mlp {
    fn forward(&self, x: &Array) -> Array {
        let gu = ops::split_equal(&linear(&self.gate_up_proj, x), 2, -1);
        linear(&self.down_proj, &super::base::swiglu(&gu[0], &gu[1]))
    }
}

#[derive(Module, Clone, Debug)]
pub struct Phi3Layer {
    pub self_attn: Phi3Attention,
    pub mlp: Phi3Mlp,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl Layer for Phi3Layer {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let h = x + &self.self_attn.forward(&rms_norm(&self.input_layernorm, x), cache);
        &h + &self.mlp.forward(&rms_norm(&self.post_attention_layernorm, &h))
    }
}

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM<Phi3Layer>> {
    let spec = AttnSpec { window: c.arch_usize("sliding_window")?, ..AttnSpec::from_config(c)? };
    let (h, kv, d, hidden) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size);
    DecoderLM::with_layers(c, tied, |_| {
        Ok(Phi3Layer {
            self_attn: Phi3Attention {
                qkv_proj: zeros_linear(hidden, (h + 2 * kv) * d, false),
                o_proj: zeros_linear(h * d, hidden, false),
                spec: spec.clone(),
                state: ModuleState::default(),
            },
            mlp: Phi3Mlp {
                gate_up_proj: zeros_linear(hidden, 2 * c.intermediate_size, false),
                down_proj: zeros_linear(c.intermediate_size, hidden, false),
                state: ModuleState::default(),
            },
            input_layernorm: norm(hidden, c.rms_norm_eps),
            post_attention_layernorm: norm(hidden, c.rms_norm_eps),
            state: ModuleState::default(),
        })
    })
}
