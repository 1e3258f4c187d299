//! Llama 2/3/3.x, Mistral, SmolLM2 (`model_type: llama`, alias `mistral`): RMSNorm, SwiGLU, GQA,
//! optional `attention_bias` (q/k/v/o) and `mlp_bias`, RoPE default/linear/llama3.

use super::base::{DecoderLM, DecoderOptions};
use crate::config::ModelConfig;
/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> DecoderLM {
    let o = DecoderOptions { qkv_bias: c.attention_bias, o_bias: c.attention_bias, mlp_bias: c.mlp_bias, qk_norm: false };
    DecoderLM::new(c, &o, tied)
}
