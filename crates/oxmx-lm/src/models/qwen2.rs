//! Qwen2 / Qwen2.5 (`model_type: qwen2`): the llama block with biases on q/k/v (not o).

use super::base::{DecoderLM, DecoderOptions};
use crate::config::ModelConfig;
use oxmx_core::Result;

/// The unloaded model (placeholder weights) for `c`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<DecoderLM> {
    let o = DecoderOptions { qkv_bias: true, ..Default::default() };
    DecoderLM::new(c, &o, tied)
}
