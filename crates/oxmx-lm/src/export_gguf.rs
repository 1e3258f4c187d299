//! GGUF export of a llama-family MLX folder (mlx_lm.fuse's `--export-gguf`): float16 weights
//! under llama.cpp's tensor names, the q/k rows in llama.cpp's rotary order, the model's
//! hyper-parameters and its tokenizer as GGUF metadata, so that llama.cpp (and `oxmx`) run the
//! file.
//!
//! The tokenizer metadata is copied from the GGUF the model came from when there is one (exactly
//! what llama.cpp had); otherwise it is built from `tokenizer.json` (a byte-level BPE, written as
//! llama.cpp's `gpt2` tokenizer with the `default` pre-tokenizer) and `tokenizer_config.json`.
//! Matrices are written as float16, vectors (norms) as float32, as llama.cpp's own converter
//! does. The file is assembled in memory (`io::save_gguf`): fine for the small and mid-size
//! models fine-tuning targets, ~2 bytes per parameter of RAM.

use crate::config::ModelConfig;
use crate::loader::folder::{read_config, weight_files};
use oxmx_core::io::{save_gguf, GgufFile, GgufType, GgufValue};
use oxmx_core::{io, ops, Array, Dtype, Error, Result};
use serde_json::Value;
use std::path::Path;

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(format!("[export_gguf] {}", msg.into()))
}

/// Hugging Face names -> llama.cpp names (`None`: not part of a llama GGUF).
fn gguf_name(hf: &str) -> Option<String> {
    let top = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let name = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}.{suffix}"))
}

/// llama.cpp's rotary row order for q_proj/k_proj (`heads` of that projection): within each
/// head, the two halves of the rotated dimensions interleave. The inverse of the loader's
/// `unpermute_rows`.
fn permute_rows(w: &Array, heads: usize) -> Result<Array> {
    let shape = w.shape().to_vec();
    if shape.len() != 2 || heads == 0 || shape[0] % (2 * heads) != 0 {
        return Err(bad(format!("cannot permute rotary rows of shape {shape:?} for {heads} heads")));
    }
    let half = (shape[0] / heads / 2) as isize;
    let split = [heads as isize, 2, half, shape[1] as isize];
    Ok(ops::reshape(&ops::swapaxes(&ops::reshape(w, &split), 1, 2), &[shape[0] as isize, shape[1] as isize]))
}

fn u32v(v: usize) -> GgufValue {
    GgufValue::U32(v as u32)
}

fn strings(items: impl IntoIterator<Item = String>) -> GgufValue {
    GgufValue::Array(GgufType::String, items.into_iter().map(GgufValue::String).collect())
}

/// The `llama.*` hyper-parameters and `general.*` keys.
fn model_metadata(cfg: &ModelConfig, name: &str) -> Vec<(String, GgufValue)> {
    let raw = &cfg.raw;
    let int = |k: &str| raw.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let head_dim = cfg.head_dim;
    let mut m = vec![
        ("general.architecture".to_string(), GgufValue::String("llama".into())),
        ("general.name".to_string(), GgufValue::String(name.to_string())),
        // llama_ftype MOSTLY_F16: matrices float16, vectors float32.
        ("general.file_type".to_string(), u32v(1)),
        ("llama.block_count".to_string(), u32v(cfg.num_hidden_layers)),
        ("llama.context_length".to_string(), u32v(int("max_position_embeddings").unwrap_or(4096))),
        ("llama.embedding_length".to_string(), u32v(cfg.hidden_size)),
        ("llama.feed_forward_length".to_string(), u32v(cfg.intermediate_size)),
        ("llama.attention.head_count".to_string(), u32v(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv".to_string(), u32v(cfg.num_key_value_heads)),
        ("llama.attention.layer_norm_rms_epsilon".to_string(), GgufValue::F32(cfg.rms_norm_eps as f32)),
        ("llama.rope.freq_base".to_string(), GgufValue::F32(cfg.rope_theta as f32)),
        ("llama.rope.dimension_count".to_string(), u32v(head_dim)),
        ("llama.vocab_size".to_string(), u32v(cfg.vocab_size)),
    ];
    if head_dim * cfg.num_attention_heads != cfg.hidden_size {
        m.push(("llama.attention.key_length".to_string(), u32v(head_dim)));
        m.push(("llama.attention.value_length".to_string(), u32v(head_dim)));
    }
    m
}

/// Tokenizer metadata copied from the GGUF the model came from.
fn tokenizer_from_gguf(path: &Path) -> Result<Vec<(String, GgufValue)>> {
    let f = GgufFile::open(path)?;
    Ok(f.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{} is not valid JSON: {e}", path.display())))
}

/// Tokenizer metadata built from `tokenizer.json` (byte-level BPE) and `tokenizer_config.json`.
fn tokenizer_from_json(folder: &Path, cfg: &ModelConfig) -> Result<Vec<(String, GgufValue)>> {
    let tj = read_json(&folder.join("tokenizer.json"))?;
    let model = &tj["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(bad(format!("only BPE tokenizers export to GGUF; tokenizer.json has model type {}", model["type"])));
    }
    let vocab = model["vocab"].as_object().ok_or_else(|| bad("tokenizer.json has no model.vocab"))?;
    let mut ids: Vec<(usize, String, i32)> = vocab.iter().filter_map(|(t, id)| id.as_u64().map(|i| (i as usize, t.clone(), 1))).collect();
    // Added tokens: control (3) when special, user-defined (4) otherwise.
    for t in tj["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) {
            let kind = if t["special"].as_bool() == Some(true) { 3 } else { 4 };
            match ids.iter_mut().find(|(i, _, _)| *i == id as usize) {
                Some(e) => e.2 = kind,
                None => ids.push((id as usize, content.to_string(), kind)),
            }
        }
    }
    ids.sort_by_key(|e| e.0);
    let n = ids.last().map_or(0, |e| e.0 + 1).max(cfg.vocab_size);
    // Gaps (ids the tokenizer never produces, e.g. a padded embedding) get unused placeholders.
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut types = vec![5i32; n]; // unused
    for (id, t, kind) in ids {
        tokens[id] = t;
        types[id] = kind;
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => Some(format!("{} {}", pair.first()?.as_str()?, pair.get(1)?.as_str()?)),
            _ => None,
        })
        .collect();
    let mut m = vec![
        ("tokenizer.ggml.model".to_string(), GgufValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), GgufValue::String("default".into())),
        ("tokenizer.ggml.tokens".to_string(), strings(tokens.clone())),
        ("tokenizer.ggml.token_type".to_string(), GgufValue::Array(GgufType::I32, types.into_iter().map(GgufValue::I32).collect())),
        ("tokenizer.ggml.merges".to_string(), strings(merges)),
    ];
    let tc = read_json(&folder.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let id_of = |key: &str| -> Option<u32> {
        let content = match &tc[key] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("content")?.as_str()?.to_string(),
            _ => return None,
        };
        tokens.iter().position(|t| *t == content).map(|i| i as u32)
    };
    for (key, gguf) in [("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding")] {
        if let Some(id) = id_of(key) {
            m.push((format!("tokenizer.ggml.{gguf}_token_id"), GgufValue::U32(id)));
        }
    }
    if !m.iter().any(|(k, _)| k == "tokenizer.ggml.eos_token_id") {
        if let Some(&e) = cfg.eos_token_ids.first() {
            m.push(("tokenizer.ggml.eos_token_id".to_string(), GgufValue::U32(e)));
        }
    }
    if let Some(t) = tc["chat_template"].as_str() {
        m.push(("tokenizer.chat_template".to_string(), GgufValue::String(t.to_string())));
    }
    Ok(m)
}

/// Writes the float llama-family model in `folder` (an MLX folder: config.json, safetensors,
/// tokenizer files) to `out` as a GGUF file. `tokenizer_gguf`: the GGUF the model came from,
/// whose tokenizer metadata is copied as it is.
pub fn export_gguf(folder: &Path, out: &Path, tokenizer_gguf: Option<&Path>) -> Result<()> {
    let cfg = read_config(folder)?;
    let model_type = crate::models::resolve_model_type(&cfg.model_type);
    if !matches!(model_type, "llama" | "mistral") {
        return Err(bad(format!("GGUF export supports llama and mistral models, not `{}`", cfg.model_type)));
    }
    let scaling = &cfg.raw["rope_scaling"];
    if !scaling.is_null() && scaling.get("type").or_else(|| scaling.get("rope_type")).and_then(Value::as_str) != Some("default") {
        return Err(bad(format!("rope scaling {scaling} is not written to GGUF yet")));
    }
    if cfg.quantization.is_some() {
        return Err(bad("the model is quantized; export a float model (fuse with --dequantize)"));
    }
    let mut tensors: Vec<(String, Array)> = Vec::new();
    for file in weight_files(folder)? {
        for (name, a) in io::load_safetensors(&file)?.0 {
            let Some(gname) = gguf_name(&name) else {
                return Err(bad(format!("{}: tensor `{name}` has no place in a llama GGUF", file.display())));
            };
            let heads = if name.ends_with("q_proj.weight") {
                Some(cfg.num_attention_heads)
            } else if name.ends_with("k_proj.weight") {
                Some(cfg.num_key_value_heads)
            } else {
                None
            };
            let a = match heads {
                Some(h) => permute_rows(&a, h)?,
                None => a,
            };
            let dt = if a.ndim() >= 2 { Dtype::Float16 } else { Dtype::Float32 };
            tensors.push((gname, a.astype(dt)));
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut meta = model_metadata(&cfg, &name);
    meta.extend(match tokenizer_gguf {
        Some(p) => tokenizer_from_gguf(p)?,
        None => tokenizer_from_json(folder, &cfg)?,
    });
    save_gguf(out, &tensors, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_invert_the_loader_mapping() {
        for g in [
            "token_embd.weight",
            "output_norm.weight",
            "output.weight",
            "blk.3.attn_q.weight",
            "blk.0.ffn_down.weight",
            "blk.11.ffn_norm.weight",
        ] {
            let hf = crate::loader::gguf::hf_name(g).unwrap();
            assert_eq!(gguf_name(&hf).as_deref(), Some(g));
        }
    }

    #[test]
    fn permute_inverts_unpermute() {
        let w = ops::reshape(&ops::arange_n(8 * 3 * 5, Some(Dtype::Float32)), &[24, 5]);
        for heads in [1, 2, 3] {
            let back = crate::loader::gguf::unpermute_rows(&permute_rows(&w, heads).unwrap(), heads);
            assert_eq!(back.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap());
        }
        assert!(permute_rows(&w, 5).is_err());
    }
}
