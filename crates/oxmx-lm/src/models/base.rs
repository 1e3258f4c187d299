//! Shared decoder blocks: linear layers, RMSNorm, RoPE variants, attention with GQA and a KV
//! cache, the SwiGLU MLP, and the Llama-style decoder (`model.embed_tokens`, `model.layers.N`,
//! `model.norm`, `lm_head`) that llama, qwen2 and qwen3 share.
//!
//! The numeric kernels go through the small functions at the top of this file (`linear`,
//! `rms_norm`, `apply_rope`, `sdpa`) so the integrator can switch them to `fast::*` and
//! quantized matmuls in one place.

use crate::cache::KvCache;
use crate::config::{ModelConfig, RopeScaling};
use oxmx_core::fast::{self, AttentionMask};
use oxmx_core::{ops, Array, Dtype};
use oxmx_nn::{Embedding, Linear, Module, ModuleState, RMSNorm};

// ---- the kernels: oxmx_core::fast and (through nn::Linear) quantized matmuls ----

/// `x W^T (+ b)`; a quantized `Linear` runs `quantized_matmul`.
pub fn linear(l: &Linear, x: &Array) -> Array {
    oxmx_nn::UnaryModule::forward(l, x)
}

/// RMS normalisation over the last axis (one fused pass per row).
pub fn rms_norm(n: &RMSNorm, x: &Array) -> Array {
    fast::rms_norm(x, Some(&n.weight), n.eps as f32)
}

/// `x: [B, H, L, D]` rotated for positions `offset..offset + L` (half-split layout).
pub fn apply_rope(r: &Rope, x: &Array, offset: usize) -> Array {
    match &r.freqs {
        Some(f) => fast::rope(x, r.dims, false, None, r.scale as f32, offset, Some(f)),
        None => fast::rope(x, r.dims, false, Some(r.base as f32), r.scale as f32, offset, None),
    }
}

/// `softmax(q k^T * scale + mask) v` with GQA: `q: [B, Hq, L, D]`, `k, v: [B, Hkv, S, D]`; the
/// fused kernel reads each KV head once for the query heads that share it.
pub fn sdpa(q: &Array, k: &Array, v: &Array, scale: f64, mask: &AttentionMask) -> Array {
    fast::scaled_dot_product_attention(q, k, v, scale as f32, mask.clone(), None)
}

// ---- RoPE ----

/// RoPE parameters: base frequency or explicit per-pair wavelengths (`freqs = 1 / inv_freq`).
#[derive(Clone, Debug)]
pub struct Rope {
    pub dims: usize,
    pub base: f64,
    pub scale: f64,
    pub freqs: Option<Array>,
}

impl Rope {
    /// `rope_utils.initialize_rope` for default, linear and llama3.
    pub fn new(dims: usize, base: f64, scaling: &RopeScaling) -> Rope {
        match scaling {
            RopeScaling::Default => Rope { dims, base, scale: 1.0, freqs: None },
            RopeScaling::Linear { factor } => Rope { dims, base, scale: 1.0 / factor, freqs: None },
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let freqs: Vec<f32> = (0..dims / 2)
                    .map(|i| {
                        let f = base.powf(2.0 * i as f64 / dims as f64); // wavelength / 2pi
                        let wavelen = 2.0 * std::f64::consts::PI * f;
                        let out = if wavelen > low_wavelen {
                            f * factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            // Smooth interpolation of the inverse frequency between the two regimes.
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            1.0 / ((1.0 - smooth) / (f * factor) + smooth / f)
                        };
                        out as f32
                    })
                    .collect();
                Rope { dims, base, scale: 1.0, freqs: Some(Array::vec(&freqs)) }
            }
        }
    }
}

// ---- blocks ----

/// Options that distinguish the llama-like families.
#[derive(Clone, Debug, Default)]
pub struct DecoderOptions {
    /// Bias on q/k/v projections (qwen2; llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMSNorm on queries and keys before RoPE (qwen3).
    pub qk_norm: bool,
}

#[derive(Module, Clone, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RMSNorm>,
    pub k_norm: Option<RMSNorm>,
    #[module(skip)]
    pub n_heads: usize,
    #[module(skip)]
    pub n_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
    #[module(skip)]
    pub scale: f64,
    #[module(skip)]
    pub rope: Rope,
    pub state: ModuleState,
}

fn zeros_linear(inp: usize, out: usize, bias: bool) -> Linear {
    // Placeholders: every parameter is replaced by the checkpoint at load time.
    Linear::from_weights(ops::zeros(&[out, inp], Dtype::Float32), bias.then(|| ops::zeros(&[out], Dtype::Float32)))
}

fn norm(dims: usize, eps: f64) -> RMSNorm {
    RMSNorm::with_eps(dims, eps)
}

impl Attention {
    pub fn new(c: &ModelConfig, o: &DecoderOptions) -> Attention {
        let (h, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        Attention {
            q_proj: zeros_linear(c.hidden_size, h * d, o.qkv_bias),
            k_proj: zeros_linear(c.hidden_size, kv * d, o.qkv_bias),
            v_proj: zeros_linear(c.hidden_size, kv * d, o.qkv_bias),
            o_proj: zeros_linear(h * d, c.hidden_size, o.o_bias),
            q_norm: o.qk_norm.then(|| norm(d, c.rms_norm_eps)),
            k_norm: o.qk_norm.then(|| norm(d, c.rms_norm_eps)),
            n_heads: h,
            n_kv_heads: kv,
            head_dim: d,
            scale: 1.0 / (d as f64).sqrt(),
            rope: Rope::new(d, c.rope_theta, &c.rope_scaling),
            state: ModuleState::default(),
        }
    }

    /// `x: [B, L, hidden]`.
    pub fn forward(&self, x: &Array, mask: &AttentionMask, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let (b, l) = (x.shape()[0] as isize, x.shape()[1] as isize);
        let heads = |y: Array, n: usize| ops::swapaxes(&ops::reshape(&y, &[b, l, n as isize, self.head_dim as isize]), 1, 2);
        let mut q = heads(linear(&self.q_proj, x), self.n_heads);
        let mut k = heads(linear(&self.k_proj, x), self.n_kv_heads);
        let v = heads(linear(&self.v_proj, x), self.n_kv_heads);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = rms_norm(qn, &q);
            k = rms_norm(kn, &k);
        }
        let offset = cache.as_ref().map_or(0, |c| c.offset());
        let q = apply_rope(&self.rope, &q, offset);
        let k = apply_rope(&self.rope, &k, offset);
        let (k, v) = match cache {
            Some(c) => c.update_and_fetch(&k, &v),
            None => (k, v),
        };
        let o = sdpa(&q, &k, &v, self.scale, mask);
        let o = ops::reshape(&ops::swapaxes(&o, 1, 2), &[b, l, (self.n_heads * self.head_dim) as isize]);
        linear(&self.o_proj, &o)
    }
}

/// `down(silu(gate(x)) * up(x))`.
#[derive(Module, Clone, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub state: ModuleState,
}

impl Mlp {
    pub fn new(dims: usize, hidden: usize, bias: bool) -> Mlp {
        Mlp {
            gate_proj: zeros_linear(dims, hidden, bias),
            up_proj: zeros_linear(dims, hidden, bias),
            down_proj: zeros_linear(hidden, dims, bias),
            state: ModuleState::default(),
        }
    }

    pub fn forward(&self, x: &Array) -> Array {
        let g = linear(&self.gate_proj, x);
        linear(&self.down_proj, &(&oxmx_nn::activations::silu(&g) * &linear(&self.up_proj, x)))
    }
}

#[derive(Module, Clone, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl DecoderLayer {
    pub fn new(c: &ModelConfig, o: &DecoderOptions) -> DecoderLayer {
        DecoderLayer {
            self_attn: Attention::new(c, o),
            mlp: Mlp::new(c.hidden_size, c.intermediate_size, o.mlp_bias),
            input_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            post_attention_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            state: ModuleState::default(),
        }
    }

    pub fn forward(&self, x: &Array, mask: &AttentionMask, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let h = x + &self.self_attn.forward(&rms_norm(&self.input_layernorm, x), mask, cache);
        &h + &self.mlp.forward(&rms_norm(&self.post_attention_layernorm, &h))
    }
}

/// The transformer body: `model.*` in the checkpoint.
#[derive(Module, Clone, Debug)]
pub struct DecoderBody {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RMSNorm,
    pub state: ModuleState,
}

/// A Llama-style causal LM (`LlamaForCausalLM` layout); `lm_head` is `None` when tied.
#[derive(Module, Clone, Debug)]
pub struct DecoderLM {
    pub model: DecoderBody,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
    pub state: ModuleState,
}

impl DecoderLM {
    pub fn new(c: &ModelConfig, o: &DecoderOptions, tied: bool) -> DecoderLM {
        DecoderLM {
            model: DecoderBody {
                embed_tokens: Embedding::from_weight(ops::zeros(&[c.vocab_size, c.hidden_size], Dtype::Float32)),
                layers: (0..c.num_hidden_layers).map(|_| DecoderLayer::new(c, o)).collect(),
                norm: norm(c.hidden_size, c.rms_norm_eps),
                state: ModuleState::default(),
            },
            lm_head: (!tied).then(|| zeros_linear(c.hidden_size, c.vocab_size, false)),
            config: c.clone(),
            state: ModuleState::default(),
        }
    }

    /// `tokens: [B, L]` integers -> logits `[B, L, vocab]`.
    pub fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        if tokens.ndim() != 2 {
            return Array::error(oxmx_core::Error::invalid(format!(
                "[{}] tokens must be [B, L] integers, got shape {:?}",
                self.config.model_type,
                tokens.shape()
            )));
        }
        if let Some(c) = &cache {
            if c.len() != self.model.layers.len() {
                return Array::error(oxmx_core::Error::invalid(format!(
                    "[{}] the cache has {} layers but the model has {}",
                    self.config.model_type,
                    c.len(),
                    self.model.layers.len()
                )));
            }
        }
        let l = tokens.shape()[1];
        // Through the layer, so a quantized embedding dequantizes just the rows it looks up.
        let mut h = oxmx_nn::UnaryModule::forward(&self.model.embed_tokens, tokens);
        // "causal" lets the attention kernel skip masked tiles; a rotating cache gives its own mask.
        let mask = match &cache {
            Some(c) if l > 1 => c[0].make_mask(l).map_or(AttentionMask::Causal, AttentionMask::Array),
            None if l > 1 => AttentionMask::Causal,
            _ => AttentionMask::None,
        };
        match cache {
            Some(c) => {
                for (layer, lc) in self.model.layers.iter().zip(c.iter_mut()) {
                    h = layer.forward(&h, &mask, Some(lc));
                }
            }
            None => {
                for layer in &self.model.layers {
                    h = layer.forward(&h, &mask, None);
                }
            }
        }
        let h = rms_norm(&self.model.norm, &h);
        match &self.lm_head {
            Some(head) => linear(head, &h),
            None => self.model.embed_tokens.as_linear(&h),
        }
    }
}
