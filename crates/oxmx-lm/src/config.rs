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

/// RoPE frequency scaling, as `rope_utils.initialize_rope` keys it.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE (`default`, `mrope`).
    Default,
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3's low/high-frequency interpolation.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
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
    /// The whole config.json, for fields a model reads itself.
    pub raw: Value,
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

/// `rope_scaling` (or `rope_parameters`, transformers >= 4.56, which also carries `rope_theta`).
fn parse_rope(v: Option<&Value>) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(RopeScaling::Default) };
    let ty = v.get("rope_type").or_else(|| v.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    let factor = || num("factor").ok_or_else(|| bad(format!("rope scaling `{ty}` needs a numeric `factor`, got {v}")));
    Ok(match ty {
        "default" | "mrope" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: num("original_max_position_embeddings").unwrap_or(8192.0),
        },
        other => return Err(bad(format!("unsupported rope scaling type `{other}` (supported: default, linear, llama3)"))),
    })
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
        let r: RawConfig = serde_json::from_value(raw.clone()).map_err(|e| bad(format!("{e}")))?;
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
        let rope_src = r.rope_scaling.as_ref().filter(|v| !v.is_null()).or(r.rope_parameters.as_ref());
        let rope_theta = r
            .rope_theta
            .or_else(|| r.rope_parameters.as_ref().and_then(|p| p.get("rope_theta")).and_then(Value::as_f64))
            .unwrap_or(10000.0);
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
            rope_scaling: parse_rope(rope_src)?,
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
            raw,
        })
    }
}
