//! Qwen2 / Qwen2.5 (`model_type: qwen2`): the llama block with biases on q/k/v (not o).

use super::base::{DecoderLM, DecoderOptions};
use crate::config::ModelConfig;
/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> DecoderLM {
    let o = DecoderOptions { qkv_bias: true, o_bias: false, mlp_bias: false, qk_norm: false };
    DecoderLM::new(c, &o, tied)
}
