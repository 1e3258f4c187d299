//! Llama 2/3/3.x, Mistral, SmolLM2 (`model_type: llama`, alias `mistral`): RMSNorm, SwiGLU, GQA,
//! optional `attention_bias` (q/k/v/o) and `mlp_bias`, every RoPE variant of `rope.rs`.

use super::base::{DecoderLM, DecoderOptions};
use crate::config::ModelConfig;
use oxmx_core::Result;

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM> {
    let o = DecoderOptions { qkv_bias: c.attention_bias, o_bias: c.attention_bias, mlp_bias: c.mlp_bias, ..Default::default() };
    DecoderLM::new(c, &o, tied)
}
