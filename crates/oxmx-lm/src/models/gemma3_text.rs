//! Gemma 3 text models (`model_type: gemma3_text`, and `gemma3` — the multimodal checkpoint, whose
//! language model lives under `language_model.` and whose text keys sit in `text_config`).
//!
//! What sets Gemma 3 apart from the llama block:
//! - embeddings multiplied by `sqrt(hidden_size)`, rounded to the embedding's dtype first;
//! - RMSNorm weights stored as offsets from 1 (`x_hat * (1 + w)`, computed in float32);
//! - per-head q/k norms; attention scale `query_pre_attn_scalar^-1/2`, not `head_dim^-1/2`;
//! - four norms per layer (before and after attention and MLP, the "sandwich");
//! - local layers (`sliding_attention`) with a `sliding_window` and their own rope base
//!   (`rope_local_base_freq`), global layers with `rope_theta` and the config's rope scaling;
//!   `layer_types`, else every `sliding_window_pattern`-th layer is global;
//! - a `gelu_pytorch_tanh` gated MLP and optional final logit soft-capping
//!   (`attn_logit_softcapping` is ignored, as transformers' and mlx-lm's Gemma 3 attention never
//!   apply it);
//! - the output projection always tied to the embedding.

use super::base::{attend, check_forward, linear, norm, run_layers, split_heads, zeros_embedding, zeros_linear, AttnSpec, Layer, Mlp};
use super::rope::Rope;
use super::LanguageModel;
use crate::cache::{KVCache, KvCache, PromptCache, RotatingKVCache};
use crate::config::{ModelConfig, RopeScaling};
use oxmx_core::{fast, ops, Array, Dtype, Error, Result};
use oxmx_nn::{Embedding, Linear, Module, ModuleState, RMSNorm};
use serde_json::Value;

/// `x_hat * (1 + w)` in float32, back in `x`'s dtype (transformers' `Gemma3RMSNorm`).
fn gemma_norm(n: &RMSNorm, x: &Array) -> Array {
    let w = &n.weight.astype(Dtype::Float32) + 1.0;
    fast::rms_norm(x, Some(&w), n.eps as f32).astype(x.dtype())
}

#[derive(Module, Clone, Debug)]
pub struct Gemma3Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: RMSNorm,
    pub k_norm: RMSNorm,
    #[module(skip)]
    pub spec: AttnSpec,
    pub state: ModuleState,
}

impl Gemma3Attention {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let s = &self.spec;
        let q = gemma_norm(&self.q_norm, &split_heads(&linear(&self.q_proj, x), s.n_heads, s.head_dim));
        let k = gemma_norm(&self.k_norm, &split_heads(&linear(&self.k_proj, x), s.n_kv_heads, s.head_dim));
        let v = split_heads(&linear(&self.v_proj, x), s.n_kv_heads, s.head_dim);
        linear(&self.o_proj, &attend(s, &q, &k, &v, cache))
    }
}

#[derive(Module, Clone, Debug)]
pub struct Gemma3Layer {
    pub self_attn: Gemma3Attention,
    pub mlp: Mlp,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub pre_feedforward_layernorm: RMSNorm,
    pub post_feedforward_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl Layer for Gemma3Layer {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let r = self.self_attn.forward(&gemma_norm(&self.input_layernorm, x), cache);
        let h = x + &gemma_norm(&self.post_attention_layernorm, &r);
        let m = &self.mlp;
        let y = gemma_norm(&self.pre_feedforward_layernorm, &h);
        let g = oxmx_nn::activations::gelu_approx(&linear(&m.gate_proj, &y));
        let r = linear(&m.down_proj, &(&g * &linear(&m.up_proj, &y)));
        &h + &gemma_norm(&self.post_feedforward_layernorm, &r)
    }
}

#[derive(Module, Clone, Debug)]
pub struct Gemma3Body {
    pub embed_tokens: Embedding,
    pub layers: Vec<Gemma3Layer>,
    pub norm: RMSNorm,
    pub state: ModuleState,
}

/// `Gemma3ForCausalLM`: `model.*` (and `lm_head` only when a checkpoint unties it).
#[derive(Module, Clone, Debug)]
pub struct Gemma3TextLM {
    pub model: Gemma3Body,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
    /// Per layer: the sliding window of a local layer, `None` for a global one.
    #[module(skip)]
    pub windows: Vec<Option<usize>>,
    #[module(skip)]
    pub final_softcap: Option<f64>,
    pub state: ModuleState,
}

/// The multimodal checkpoint's language model (`language_model.model.*`, mlx-lm's layout); the
/// vision tower and projector are dropped by `sanitize`.
#[derive(Module, Clone, Debug)]
pub struct Gemma3LM {
    pub language_model: Gemma3TextLM,
    pub state: ModuleState,
}

/// Which layers are local: `layer_types` when given, else every `sliding_window_pattern`-th
/// layer (1-based) is global.
fn sliding_layers(c: &ModelConfig) -> Result<Vec<bool>> {
    let n = c.num_hidden_layers;
    match c.arch.get("layer_types") {
        Some(Value::Array(types)) => {
            if types.len() != n {
                return Err(Error::invalid(format!("[config] `layer_types` has {} entries for {n} layers", types.len())));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => {
                        Err(Error::invalid(format!("[config] `layer_types` entries must be sliding_attention or full_attention, got {t}")))
                    }
                })
                .collect()
        }
        _ => {
            let pattern = match c.arch_usize("sliding_window_pattern")? {
                Some(p) => p,
                None => c.arch_usize("_sliding_window_pattern")?.unwrap_or(6),
            };
            if pattern == 0 {
                return Err(Error::invalid("[config] `sliding_window_pattern` must be positive"));
            }
            Ok((0..n).map(|i| (i + 1) % pattern != 0).collect())
        }
    }
}

fn optional_f64(c: &ModelConfig, key: &str) -> Result<Option<f64>> {
    match c.arch.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::invalid(format!("[config] `{key}` must be a number or null, got {v}"))),
    }
}

impl Gemma3TextLM {
    pub fn new(c: &ModelConfig, tied: bool) -> Result<Gemma3TextLM> {
        if c.arch.get("use_bidirectional_attention").and_then(Value::as_bool) == Some(true) {
            return Err(Error::invalid("[config] `use_bidirectional_attention` (EmbeddingGemma) is not supported"));
        }
        if let Some(act) = c.arch.get("hidden_activation").and_then(Value::as_str) {
            if act != "gelu_pytorch_tanh" && act != "gelu_tanh" {
                return Err(Error::invalid(format!(
                    "[config] `hidden_activation` `{act}` is not supported for gemma3 (gelu_pytorch_tanh)"
                )));
            }
        }
        let window = c.arch_required("sliding_window")?;
        let scalar = optional_f64(c, "query_pre_attn_scalar")?.unwrap_or(c.head_dim as f64);
        // Local layers: their own rope block (transformers >= 5) or `rope_local_base_freq`, unscaled.
        let (local_theta, local_scaling) = match c.rope_for_layer_type("sliding_attention")? {
            Some(r) => r,
            None => (c.arch_f64("rope_local_base_freq").unwrap_or(10_000.0), RopeScaling::Default),
        };
        let global = AttnSpec { scale: scalar.powf(-0.5), ..AttnSpec::from_config(c)? };
        let local = AttnSpec { rope: Rope::new(global.rope.dims, local_theta, &local_scaling)?, window: Some(window), ..global.clone() };
        let sliding = sliding_layers(c)?;
        let (h, kv, d, hidden, eps) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size, c.rms_norm_eps);
        let layers = sliding
            .iter()
            .map(|&is_local| Gemma3Layer {
                self_attn: Gemma3Attention {
                    q_proj: zeros_linear(hidden, h * d, c.attention_bias),
                    k_proj: zeros_linear(hidden, kv * d, c.attention_bias),
                    v_proj: zeros_linear(hidden, kv * d, c.attention_bias),
                    o_proj: zeros_linear(h * d, hidden, c.attention_bias),
                    q_norm: norm(d, eps),
                    k_norm: norm(d, eps),
                    spec: if is_local { local.clone() } else { global.clone() },
                    state: ModuleState::default(),
                },
                mlp: Mlp::new(hidden, c.intermediate_size, false),
                input_layernorm: norm(hidden, eps),
                post_attention_layernorm: norm(hidden, eps),
                pre_feedforward_layernorm: norm(hidden, eps),
                post_feedforward_layernorm: norm(hidden, eps),
                state: ModuleState::default(),
            })
            .collect();
        Ok(Gemma3TextLM {
            model: Gemma3Body { embed_tokens: zeros_embedding(c), layers, norm: norm(hidden, eps), state: ModuleState::default() },
            lm_head: (!tied).then(|| zeros_linear(hidden, c.vocab_size, false)),
            config: c.clone(),
            windows: sliding.iter().map(|&s| s.then_some(window)).collect(),
            final_softcap: optional_f64(c, "final_logit_softcapping")?,
            state: ModuleState::default(),
        })
    }

    pub fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        self.logits(tokens, cache, false)
    }

    /// `forward`, or with `last_only` the logits of the last position (`[B, 1, vocab]`).
    pub fn logits(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>, last_only: bool) -> Array {
        if let Err(e) = check_forward(&self.config.model_type, tokens, &cache, self.model.layers.len()) {
            return Array::error(e);
        }
        let emb = &self.model.embed_tokens;
        let h = oxmx_nn::UnaryModule::forward(emb, tokens);
        // sqrt(hidden) rounded to the embedding's dtype (a quantized table: its scales' dtype),
        // as transformers' `embed_scale.to(weight.dtype)`.
        let table_dtype = if emb.quant.is_some() { emb.scales.as_ref().map_or(h.dtype(), |s| s.dtype()) } else { emb.weight.dtype() };
        let scale = Array::scalar((self.config.hidden_size as f32).sqrt()).astype(table_dtype).astype(h.dtype());
        let h = &h * &scale;
        let h = run_layers(&self.model.layers, h, cache, |layer, h, c| layer.forward(h, c));
        let h = if last_only { super::base::last_position(&h) } else { h };
        let h = gemma_norm(&self.model.norm, &h);
        let logits = match &self.lm_head {
            Some(head) => linear(head, &h),
            None => emb.as_linear(&h),
        };
        match self.final_softcap {
            Some(cap) => ops::tanh(&(logits / cap)) * cap,
            None => logits,
        }
    }

    /// mlx-lm's cache layout: a window-sized ring (no kept prefix) for local layers, the standard
    /// cache (or the `max_kv_size` ring) for global ones.
    pub fn make_cache(&self, max_kv_size: Option<usize>) -> PromptCache {
        self.windows
            .iter()
            .map(|w| -> Box<dyn KvCache> {
                match (w, max_kv_size) {
                    (Some(w), Some(m)) => Box::new(RotatingKVCache::new((*w).min(m), 0)),
                    (Some(w), None) => Box::new(RotatingKVCache::new(*w, 0)),
                    (None, Some(m)) => Box::new(RotatingKVCache::new(m, 4)),
                    (None, None) => Box::new(KVCache::new()),
                }
            })
            .collect()
    }
}

/// The (unloaded) text model; `gemma3` configs are read from their `text_config` by `config.rs`.
pub fn build(c: &ModelConfig, tied: bool) -> Result<Box<dyn LanguageModel>> {
    let text = Gemma3TextLM::new(c, tied)?;
    if c.model_type == "gemma3" {
        Ok(Box::new(Gemma3LM { language_model: text, state: ModuleState::default() }))
    } else {
        Ok(Box::new(text))
    }
}

/// Keys of the text model: drops rotary buffers and a tied head.
fn sanitize_text(weights: Vec<(String, Array)>, tied: bool) -> Vec<(String, Array)> {
    super::sanitize_common(weights, tied)
}

impl LanguageModel for Gemma3TextLM {
    fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        Gemma3TextLM::forward(self, tokens, cache)
    }
    fn forward_last(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        self.logits(tokens, cache, true)
    }
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn sanitize(&self, weights: Vec<(String, Array)>) -> Vec<(String, Array)> {
        sanitize_text(weights, self.lm_head.is_none())
    }
    fn make_cache(&self, max_kv_size: Option<usize>) -> Option<PromptCache> {
        Some(Gemma3TextLM::make_cache(self, max_kv_size))
    }
}

impl LanguageModel for Gemma3LM {
    fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        self.language_model.forward(tokens, cache)
    }
    fn forward_last(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        self.language_model.logits(tokens, cache, true)
    }
    fn num_layers(&self) -> usize {
        self.language_model.model.layers.len()
    }
    fn config(&self) -> &ModelConfig {
        &self.language_model.config
    }
    /// Hugging Face's `model.language_model.*` / `lm_head.*` (transformers >= 4.52) and older
    /// `language_model.model.*` both become `language_model.model.*`; the vision tower and the
    /// multimodal projector are dropped.
    fn sanitize(&self, weights: Vec<(String, Array)>) -> Vec<(String, Array)> {
        let text: Vec<(String, Array)> = weights
            .into_iter()
            .filter_map(|(k, a)| {
                let k = if let Some(rest) = k.strip_prefix("model.language_model.") {
                    format!("model.{rest}")
                } else if let Some(rest) = k.strip_prefix("language_model.") {
                    rest.to_string()
                } else if k.starts_with("lm_head.") {
                    k
                } else {
                    return None; // vision_tower.*, multi_modal_projector.*, model.vision_tower.*, ...
                };
                Some((k, a))
            })
            .collect();
        sanitize_text(text, self.language_model.lm_head.is_none()).into_iter().map(|(k, a)| (format!("language_model.{k}"), a)).collect()
    }
    fn make_cache(&self, max_kv_size: Option<usize>) -> Option<PromptCache> {
        Some(self.language_model.make_cache(max_kv_size))
    }
}
