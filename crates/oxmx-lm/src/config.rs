//! `config.json` of a Hugging Face / mlx-community checkpoint: the fields the decoder models read,
//! RoPE scaling (`rope_scaling` or the newer `rope_parameters`), tied embeddings, EOS ids and MLX's
//! `quantization` block (with per-layer overrides, kept for the quantized loader). Unknown keys are
//! ignored (as mlx-lm's `ModelArgs.from_dict`), but the whole JSON stays in `raw`.

use oxmx_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// MLX affine quantization parameters (`{"group_size": 64, "bits": 4, "mode": "affine"}`).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    pub group_size: usize,
    pub bits: usize,
    pub mode: String,
}

/// MLX's `quantization` block: defaults plus per-module-path overrides (`false` = not quantized).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QuantizationConfig {
    pub default: Option<QuantParams>,
    /// Module path (`model.layers.0.mlp.down_proj`) -> override; `None` keeps the layer in float.
    pub overrides: BTreeMap<String, Option<QuantParams>>,
}

/// RoPE frequency scaling, as `rope_utils.initialize_rope` keys it (and transformers'
/// `ROPE_INIT_FUNCTIONS`). Each variant carries every number it needs, defaults resolved at parse
/// time, so building the rotary layer needs nothing else from the config.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE (`default`, `mrope`).
    Default,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Dynamic NTK: past `max_position_embeddings` the base grows with the current length.
    Dynamic { factor: f64, max_position_embeddings: f64 },
    /// Llama 3's low/high-frequency interpolation.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
    /// YaRN: a ramp between interpolated and extrapolated frequencies, and `attention_factor`
    /// (the "mscale") on the rotated features.
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        /// Round the correction range to whole dimensions (transformers' `truncate`, default true).
        truncate: bool,
    },
    /// LongRoPE / Phi-3 "su": per-frequency factors, `short_factor` while the sequence fits in
    /// `original_max_position_embeddings`, `long_factor` beyond; both scaled by `attention_factor`.
    LongRope { short_factor: Vec<f64>, long_factor: Vec<f64>, original_max_position_embeddings: f64, short_mscale: f64, long_mscale: f64 },
}

/// The configuration of a decoder-only language model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: Option<usize>,
    /// `None` when the file does not say (then the loader ties when `lm_head.weight` is absent).
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    pub quantization: Option<QuantizationConfig>,
    /// Fraction of each head's features that RoPE rotates (phi3 `partial_rotary_factor`).
    pub partial_rotary_factor: f64,
    /// The whole config.json.
    pub raw: Value,
    /// The keys the architecture was read from (see [`ModelConfig::arch_f64`]): `raw`, or for a
    /// multimodal wrapper its `text_config` over the top level, with family defaults.
    pub arch: Value,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    intermediate_size: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    original_max_position_embeddings: Option<usize>,
    partial_rotary_factor: Option<f64>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    eos_token_id: Option<Value>,
    bos_token_id: Option<Value>,
    quantization: Option<Value>,
    quantization_config: Option<Value>,
}

fn bad(msg: String) -> Error {
    Error::invalid(format!("[config] {msg}"))
}

/// An `eos_token_id` value: an integer or a list of integers.
pub fn parse_token_ids(v: &Value, key: &str) -> Result<Vec<u32>> {
    let one = |x: &Value| {
        x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(format!("`{key}` must be a token id or a list of them, got {x}")))
    };
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(xs) => xs.iter().map(one).collect(),
        x => Ok(vec![one(x)?]),
    }
}

fn parse_quant_params(v: &Value, key: &str) -> Result<QuantParams> {
    let group_size = v.get("group_size").and_then(Value::as_u64).unwrap_or(64) as usize;
    let bits = v.get("bits").and_then(Value::as_u64).ok_or_else(|| bad(format!("`{key}` needs an integer `bits`, got {v}")))? as usize;
    let mode = v.get("mode").and_then(Value::as_str).unwrap_or("affine").to_string();
    Ok(QuantParams { group_size, bits, mode })
}

/// MLX's `quantization` block: top-level `group_size`/`bits`/`mode`, and object or `false` entries
/// keyed by module path.
pub fn parse_quantization(v: &Value) -> Result<QuantizationConfig> {
    let obj = v.as_object().ok_or_else(|| bad(format!("`quantization` must be an object, got {v}")))?;
    let default = if obj.contains_key("bits") { Some(parse_quant_params(v, "quantization")?) } else { None };
    let mut overrides = BTreeMap::new();
    for (k, x) in obj {
        match x {
            Value::Object(_) => {
                overrides.insert(k.clone(), Some(parse_quant_params(x, &format!("quantization.{k}"))?));
            }
            Value::Bool(false) => {
                overrides.insert(k.clone(), None);
            }
            _ => {}
        }
    }
    Ok(QuantizationConfig { default, overrides })
}

/// Top-level keys a rope block falls back to (transformers' `standardize_rope_params`).
struct RopeCtx {
    max_position_embeddings: Option<f64>,
    /// Phi-3 keeps this at the top level; there it wins over the block's own value.
    original_max_position_embeddings: Option<f64>,
}

/// Whether a `rope_parameters` object is keyed by layer type (`{"full_attention": {..},
/// "sliding_attention": {..}}`, transformers >= 5 for gemma3) rather than one block.
fn is_per_layer_rope(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        !o.contains_key("rope_type") && !o.contains_key("type") && !o.contains_key("rope_theta") && o.values().any(Value::is_object)
    })
}

/// The `rope_type` of a block (`type` in older configs).
fn rope_type(v: &Value) -> &str {
    v.get("rope_type").or_else(|| v.get("type")).and_then(Value::as_str).unwrap_or("default")
}

/// `0.1 ln(scale) * mscale + 1` (YaRN's attention temperature), 1 when not extending.
fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// One rope block (`rope_scaling`, or a `rope_parameters` entry) -> [`RopeScaling`].
fn parse_rope(v: Option<&Value>, ctx: &RopeCtx) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(RopeScaling::Default) };
    let ty = rope_type(v);
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    let need = |k: &str| num(k).ok_or_else(|| bad(format!("rope scaling `{ty}` needs a numeric `{k}`, got {v}")));
    let list = |k: &str| -> Result<Vec<f64>> {
        let xs = v.get(k).and_then(Value::as_array).ok_or_else(|| bad(format!("rope scaling `{ty}` needs a list `{k}`, got {v}")))?;
        xs.iter().map(|x| x.as_f64().ok_or_else(|| bad(format!("rope scaling `{ty}`: `{k}` must hold numbers, got {x}")))).collect()
    };
    // As transformers: a top-level original_max_position_embeddings (Phi-3) wins, then the
    // block's, then max_position_embeddings.
    let original = || {
        ctx.original_max_position_embeddings
            .or(num("original_max_position_embeddings"))
            .or(ctx.max_position_embeddings)
            .ok_or_else(|| bad(format!("rope scaling `{ty}` needs `original_max_position_embeddings` (or `max_position_embeddings`)")))
    };
    Ok(match ty {
        "default" | "mrope" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: need("factor")? },
        "dynamic" => RopeScaling::Dynamic {
            factor: need("factor")?,
            max_position_embeddings: ctx
                .max_position_embeddings
                .ok_or_else(|| bad("rope scaling `dynamic` needs `max_position_embeddings`".into()))?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: num("original_max_position_embeddings").unwrap_or(8192.0),
        },
        "yarn" => {
            let original = original()?;
            let factor = match num("factor") {
                Some(f) => f,
                None => ctx.max_position_embeddings.ok_or_else(|| bad("rope scaling `yarn` needs `factor`".into()))? / original,
            };
            // transformers: the ratio of the two temperatures when both mscales are set, else
            // the plain one; an explicit attention_factor overrides.
            let attention_factor =
                match (num("attention_factor"), num("mscale").filter(|m| *m != 0.0), num("mscale_all_dim").filter(|m| *m != 0.0)) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(ma)) => yarn_mscale(factor, m) / yarn_mscale(factor, ma),
                    _ => yarn_mscale(factor, 1.0),
                };
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: num("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
                beta_slow: num("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
                attention_factor,
                truncate: v.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            }
        }
        "longrope" | "su" => {
            let original = original()?;
            let factor = match num("factor") {
                Some(f) => f,
                None => ctx.max_position_embeddings.unwrap_or(original) / original,
            };
            let attention_factor = match num("attention_factor") {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / original.ln()).sqrt(),
            };
            RopeScaling::LongRope {
                short_factor: list("short_factor")?,
                long_factor: list("long_factor")?,
                original_max_position_embeddings: original,
                short_mscale: num("short_mscale").unwrap_or(attention_factor),
                long_mscale: num("long_mscale").unwrap_or(attention_factor),
            }
        }
        other => {
            return Err(bad(format!(
                "unsupported rope scaling type `{other}` (supported: default, linear, dynamic, llama3, yarn, longrope/su)"
            )))
        }
    })
}

/// Keys of a multimodal wrapper's top level that stay there (generation and storage settings),
/// while everything else comes from its `text_config`.
const WRAPPER_KEYS: &[&str] = &["eos_token_id", "bos_token_id", "quantization", "quantization_config", "tie_word_embeddings"];

/// The architecture's keys: the config itself, or `text_config` laid over the top level (gemma3's
/// `Gemma3ForConditionalGeneration` config), with the family's transformers defaults filled in
/// where the file leaves them out (mlx-community gemma3 configs omit most text keys).
fn architecture_keys(raw: &Value) -> Value {
    let mut arch = raw.clone();
    if let (Some(top), Some(Value::Object(tc))) = (arch.as_object_mut(), raw.get("text_config")) {
        top.remove("text_config");
        for (k, v) in tc {
            if k == "model_type" || (WRAPPER_KEYS.contains(&k.as_str()) && top.contains_key(k)) {
                continue;
            }
            top.insert(k.clone(), v.clone());
        }
    }
    let ty = arch.get("model_type").and_then(Value::as_str).unwrap_or("").to_string();
    if let (Some(o), "gemma3" | "gemma3_text") = (arch.as_object_mut(), ty.as_str()) {
        let defaults = serde_json::json!({
            "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
            "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 131072, "query_pre_attn_scalar": 256, "sliding_window": 4096,
            "rope_local_base_freq": 10000.0, "tie_word_embeddings": true,
        });
        for (k, v) in defaults.as_object().into_iter().flatten() {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !o.contains_key("rope_theta") && !o.get("rope_parameters").is_some_and(|p| !p.is_null()) {
            o.insert("rope_theta".into(), 1_000_000.0.into());
        }
    }
    arch
}

impl ModelConfig {
    /// Parses the text of a `config.json`.
    pub fn from_json_str(s: &str) -> Result<ModelConfig> {
        let raw: Value = serde_json::from_str(s).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        ModelConfig::from_value(raw)
    }

    /// Reads `config.json` from a path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ModelConfig> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        ModelConfig::from_json_str(&s).map_err(|e| bad(format!("{} ({})", e, path.display())))
    }

    pub fn from_value(raw: Value) -> Result<ModelConfig> {
        let arch = architecture_keys(&raw);
        let r: RawConfig = serde_json::from_value(arch.clone()).map_err(|e| bad(format!("{e}")))?;
        let need = |v: Option<usize>, k: &str| v.ok_or_else(|| bad(format!("missing required key `{k}`")));
        let model_type = r.model_type.clone().ok_or_else(|| bad("missing required key `model_type`".into()))?;
        let hidden_size = need(r.hidden_size, "hidden_size")?;
        let num_attention_heads = need(r.num_attention_heads, "num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(bad("`num_attention_heads` must be positive".into()));
        }
        let num_key_value_heads = r.num_key_value_heads.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(bad(format!(
                "`num_attention_heads` ({num_attention_heads}) must be a multiple of `num_key_value_heads` ({num_key_value_heads})"
            )));
        }
        let head_dim = match r.head_dim {
            Some(h) => h,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(bad(format!(
                "`hidden_size` ({hidden_size}) is not a multiple of `num_attention_heads` ({num_attention_heads}) and `head_dim` is absent"
            )))
            }
        };
        // The main (global-attention) rope block: `rope_scaling`, else `rope_parameters` (its
        // `full_attention` entry when keyed by layer type).
        let params = r.rope_parameters.as_ref().filter(|p| !p.is_null());
        let params = match params {
            Some(p) if is_per_layer_rope(p) => p.get("full_attention"),
            p => p,
        };
        let rope_src = r.rope_scaling.as_ref().filter(|v| !v.is_null()).or(params);
        let rope_theta = r.rope_theta.or_else(|| params.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64)).unwrap_or(10000.0);
        let partial_rotary_factor = r
            .partial_rotary_factor
            .or_else(|| rope_src.and_then(|p| p.get("partial_rotary_factor")).and_then(Value::as_f64))
            .unwrap_or(1.0);
        if !(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0) {
            return Err(bad(format!("`partial_rotary_factor` must be in (0, 1], got {partial_rotary_factor}")));
        }
        let ctx = RopeCtx {
            max_position_embeddings: r.max_position_embeddings.map(|m| m as f64),
            original_max_position_embeddings: r.original_max_position_embeddings.map(|m| m as f64),
        };
        let quant_src = r.quantization.as_ref().or(r.quantization_config.as_ref().filter(|q| q.get("bits").is_some()));
        Ok(ModelConfig {
            model_type,
            hidden_size,
            num_hidden_layers: need(r.num_hidden_layers, "num_hidden_layers")?,
            intermediate_size: need(r.intermediate_size, "intermediate_size")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: need(r.vocab_size, "vocab_size")?,
            rms_norm_eps: r.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling: parse_rope(rope_src, &ctx)?,
            max_position_embeddings: r.max_position_embeddings,
            tie_word_embeddings: r.tie_word_embeddings,
            attention_bias: r.attention_bias.unwrap_or(false),
            mlp_bias: r.mlp_bias.unwrap_or(false),
            eos_token_ids: match &r.eos_token_id {
                Some(v) => parse_token_ids(v, "eos_token_id")?,
                None => vec![],
            },
            bos_token_id: r.bos_token_id.as_ref().and_then(|v| v.as_u64()).map(|v| v as u32),
            quantization: quant_src.map(parse_quantization).transpose()?,
            partial_rotary_factor,
            raw,
            arch,
        })
    }

    /// A number from the architecture's keys (`None` when absent or null).
    pub fn arch_f64(&self, key: &str) -> Option<f64> {
        self.arch.get(key).and_then(Value::as_f64)
    }

    /// A non-negative integer from the architecture's keys; an error names a key of another type.
    pub fn arch_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.arch.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| bad(format!("`{key}` must be a non-negative integer, got {v}"))),
        }
    }

    /// Like [`ModelConfig::arch_usize`] for a key the architecture cannot do without.
    pub fn arch_required(&self, key: &str) -> Result<usize> {
        self.arch_usize(key)?.ok_or_else(|| bad(format!("[{}] missing required key `{key}`", self.model_type)))
    }

    /// The rope base and scaling of one layer type (`sliding_attention`, `full_attention`) when
    /// `rope_parameters` is keyed by layer type (transformers >= 5); `None` otherwise.
    pub fn rope_for_layer_type(&self, layer_type: &str) -> Result<Option<(f64, RopeScaling)>> {
        let Some(p) = self.arch.get("rope_parameters").filter(|p| is_per_layer_rope(p)) else { return Ok(None) };
        let Some(block) = p.get(layer_type) else { return Ok(None) };
        let ctx = RopeCtx {
            max_position_embeddings: self.max_position_embeddings.map(|m| m as f64),
            original_max_position_embeddings: self.arch_f64("original_max_position_embeddings"),
        };
        let theta = block.get("rope_theta").and_then(Value::as_f64).unwrap_or(self.rope_theta);
        Ok(Some((theta, parse_rope(Some(block), &ctx)?)))
    }
}
