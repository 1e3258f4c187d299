//! GGUF models (llama.cpp's format): the config from `<arch>.*` metadata, tensor names mapped to
//! Hugging Face's (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`), llama's
//! Q/K rows un-permuted. Blocks with an exact MLX affine form (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) stay
//! quantized (the layer becomes a quantized `Linear`/`Embedding`, group 32); other types (K-quants)
//! are decoded to float32 by `oxmx_core::io`'s block decoders.
//!
//! Rotary permutation: llama.cpp's HF->GGUF converter reorders each head's q_proj/k_proj rows from
//! the half-split RoPE layout to interleaved pairs (`reshape(heads, 2, d/2, in).swapaxes(1, 2)`),
//! with `heads = n_kv_heads` for k_proj. Only the llama architecture is permuted; qwen2/qwen3 are
//! not. The inverse is `reshape(heads, d/2, 2, in).swapaxes(1, 2)` (as transformers' GGUF loader).
//!

use super::{build_and_load, LoadOptions, LoadedModel};
use crate::config::{ModelConfig, QuantParams, QuantizationConfig, RopeScaling};
use oxmx_core::io::gguf::{GgufFile, GgufValue};
use oxmx_core::{ops, Array, Dtype, Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

fn bad(path: &Path, msg: String) -> Error {
    Error::invalid(format!("[load] {}: {msg}", path.display()))
}

fn as_f64(v: &GgufValue) -> Option<f64> {
    match *v {
        GgufValue::F32(x) => Some(x as f64),
        GgufValue::F64(x) => Some(x),
        _ => v.as_u64().map(|x| x as f64),
    }
}

/// GGUF architecture name -> `model_type`.
fn model_type_for(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "llama" => "llama",
        "qwen2" => "qwen2",
        "qwen3" => "qwen3",
        _ => return None,
    })
}

/// The `ModelConfig` described by a GGUF file's metadata.
pub fn config_from_gguf(f: &GgufFile) -> Result<ModelConfig> {
    let p = &f.path;
    let arch = f
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| bad(p, "missing metadata `general.architecture`".into()))?;
    let model_type = model_type_for(arch).ok_or_else(|| {
        bad(p, format!("GGUF architecture `{arch}` is not supported; supported: {}", crate::models::SUPPORTED.join(", ")))
    })?;
    let key = |k: &str| format!("{arch}.{k}");
    let int = |k: &str| f.get(&key(k)).and_then(GgufValue::as_u64).map(|v| v as usize);
    let need = |k: &str| int(k).ok_or_else(|| bad(p, format!("missing metadata `{}`", key(k))));
    let float = |k: &str| f.get(&key(k)).and_then(as_f64);
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    if heads == 0 {
        return Err(bad(p, format!("`{}` is 0", key("attention.head_count"))));
    }
    let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
    let head_dim = int("attention.key_length").unwrap_or(hidden / heads);
    let vocab = match int("vocab_size") {
        Some(v) => v,
        None => match f.get("tokenizer.ggml.tokens") {
            Some(GgufValue::Array(_, xs)) => xs.len(),
            _ => {
                f.tensors.iter().find(|t| t.name == "token_embd.weight").map(|t| t.dims.get(1).copied().unwrap_or(0) as usize).ok_or_else(
                    || bad(p, "cannot tell the vocabulary size (no vocab_size, tokenizer.ggml.tokens or token_embd.weight)".into()),
                )?
            }
        },
    };
    let rope_scaling = match f.get(&key("rope.scaling.type")).and_then(GgufValue::as_str) {
        Some("linear") => RopeScaling::Linear { factor: float("rope.scaling.factor").unwrap_or(1.0) },
        None | Some("none") => RopeScaling::Default,
        Some(other) => return Err(bad(p, format!("unsupported rope scaling `{other}` in `{}`", key("rope.scaling.type")))),
    };
    let tied = !f.tensors.iter().any(|t| t.name == "output.weight");
    let eos: Vec<u32> = f.get("tokenizer.ggml.eos_token_id").and_then(GgufValue::as_u64).map(|v| v as u32).into_iter().collect();
    let mut raw = serde_json::json!({
        "model_type": model_type,
        "hidden_size": hidden,
        "num_hidden_layers": need("block_count")?,
        "intermediate_size": need("feed_forward_length")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "rms_norm_eps": float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
        "rope_theta": float("rope.freq_base").unwrap_or(10000.0),
        "tie_word_embeddings": tied,
        "eos_token_id": eos,
    });
    if let Some(c) = int("context_length") {
        raw["max_position_embeddings"] = c.into();
    }
    if let Some(b) = f.get("tokenizer.ggml.bos_token_id").and_then(GgufValue::as_u64) {
        raw["bos_token_id"] = b.into();
    }
    let mut c = ModelConfig::from_value(raw)?;
    c.rope_scaling = rope_scaling;
    Ok(c)
}

/// `blk.N.<name>.<suffix>` and the top-level tensors -> Hugging Face names; `None` for tensors
/// that have no HF counterpart (e.g. `rope_freqs`).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let top = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (name, suffix) = rest.split_once('.')?;
    let hf = match name {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undoes llama.cpp's rotary row permutation of q_proj/k_proj (`heads` = heads of that projection).
pub fn unpermute_rows(w: &Array, heads: usize) -> Array {
    let shape = w.shape().to_vec();
    if shape.is_empty() || heads == 0 || shape[0] % (2 * heads) != 0 {
        return Array::error(Error::invalid(format!("[load] cannot un-permute rotary rows of shape {shape:?} for {heads} heads")));
    }
    let half = shape[0] / heads / 2;
    let mut s: Vec<isize> = vec![heads as isize, half as isize, 2];
    s.extend(shape[1..].iter().map(|&d| d as isize));
    let back: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    ops::reshape(&ops::swapaxes(&ops::reshape(w, &s), 1, 2), &back)
}

pub fn load_gguf_model(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let f = GgufFile::open(path)?;
    let mut config = config_from_gguf(&f)?;
    let permute = crate::models::resolve_model_type(&config.model_type) == "llama";
    let mut weights = Vec::with_capacity(f.tensors.len());
    let mut quantized = BTreeMap::new();
    for info in &f.tensors {
        let Some(name) = hf_name(&info.name) else { continue };
        // llama.cpp permutes the rotary rows of q/k; packed rows, scales and biases move alike.
        let heads = match () {
            _ if permute && name.ends_with("q_proj.weight") => Some(config.num_attention_heads),
            _ if permute && name.ends_with("k_proj.weight") => Some(config.num_key_value_heads),
            _ => None,
        };
        let fix = |a: Array| match heads {
            Some(h) => unpermute_rows(&a, h),
            None => a,
        };
        if opts.keep_quantized && info.shape().len() == 2 {
            if let (Some(base), Some(aw)) = (name.strip_suffix(".weight"), f.affine(info)?) {
                let float = |a: Array| if a.dtype() == Dtype::Float32 { a } else { a.astype(Dtype::Float32) };
                weights.push((format!("{base}.scales"), fix(float(aw.scales))));
                weights.push((format!("{base}.biases"), fix(float(aw.biases))));
                weights.push((name.clone(), fix(aw.wq)));
                let params = QuantParams { group_size: aw.group_size, bits: aw.bits as usize, mode: "affine".into() };
                quantized.insert(base.to_string(), Some(params));
                continue;
            }
        }
        weights.push((name, fix(f.dequantize(info, Dtype::Float32)?)));
    }
    if !quantized.is_empty() {
        config.quantization = Some(QuantizationConfig { default: None, overrides: quantized });
    }
    let model = build_and_load(&config, weights, opts).map_err(|e| bad(path, e.to_string()))?;
    Ok(LoadedModel { eos_token_ids: config.eos_token_ids.clone(), model, config, path: path.to_path_buf() })
}
