//! Qwen3 (`model_type: qwen3`): per-head RMSNorm on queries and keys (`q_norm`, `k_norm`) before
//! RoPE, explicit `head_dim`, no biases (unless `attention_bias`).

use super::base::{DecoderLM, DecoderOptions};
use crate::config::ModelConfig;
use oxmx_core::Result;

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM> {
    let o = DecoderOptions { qkv_bias: c.attention_bias, o_bias: c.attention_bias, qk_norm: true, ..Default::default() };
    DecoderLM::new(c, &o, tied)
}
