//! A `tokenizer.json` rebuilt from GGUF `tokenizer.*` metadata, the way transformers' GGUF converter
//! (`integrations/gguf/gguf_tokenizer_mapping.py`) builds it, so ids match `AutoTokenizer(gguf_file=)`:
//!
//! * `tokenizer.ggml.model = "gpt2"`: byte-level BPE over the file's tokens and merges. The text is
//!   split by the regex `tokenizer.ggml.pre` names (the same regexes llama.cpp's llama-vocab and the
//!   models' own `tokenizer.json` use), then mapped to the GPT-2 byte alphabet.
//! * `"llama"`: SentencePiece-shaped BPE (`▁` for spaces, `<0xNN>` byte fallback); merges come from
//!   the file or, when absent, are derived from the vocabulary ordered by token score.
//! * Tokens typed CONTROL become special added tokens, USER_DEFINED ones plain added tokens, so both
//!   stay whole in text.

use oxmx_core::io::gguf::{GgufMetadata, GgufValue};
use oxmx_core::{Error, Result};
use serde_json::{json, Map, Value};

pub(crate) struct Built {
    pub json: Value,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub chat_template: Option<String>,
}

const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// Llama 3's split (llama-bpe and the families that reuse it).
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

fn err(source: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[tokenizer] {source}: {msg}"))
}

fn get<'a>(meta: &'a GgufMetadata, key: &str) -> Option<&'a GgufValue> {
    meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn str_array(meta: &GgufMetadata, key: &str, source: &str) -> Result<Option<Vec<String>>> {
    match get(meta, key) {
        None => Ok(None),
        Some(GgufValue::Array(_, items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| err(source, format!("metadata '{key}' holds a non-string element"))))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(err(source, format!("metadata '{key}' is not an array"))),
    }
}

fn num_array(meta: &GgufMetadata, key: &str) -> Option<Vec<f64>> {
    match get(meta, key) {
        Some(GgufValue::Array(_, items)) => Some(
            items
                .iter()
                .map(|v| match *v {
                    GgufValue::F32(x) => x as f64,
                    GgufValue::F64(x) => x,
                    ref o => o.as_u64().map(|x| x as f64).unwrap_or_else(|| match *o {
                        GgufValue::I32(x) => x as f64,
                        GgufValue::I64(x) => x as f64,
                        _ => 0.0,
                    }),
                })
                .collect(),
        ),
        _ => None,
    }
}

fn id_of(meta: &GgufMetadata, key: &str) -> Option<u32> {
    get(meta, key).and_then(|v| v.as_u64()).and_then(|v| u32::try_from(v).ok())
}

fn flag(meta: &GgufMetadata, key: &str) -> Option<bool> {
    match get(meta, key) {
        Some(GgufValue::Bool(b)) => Some(*b),
        Some(v) => v.as_u64().map(|x| x != 0),
        None => None,
    }
}

/// GPT-2's reversible byte -> printable character table.
pub(crate) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    table
}

fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "dbrx" | "smaug-bpe" => {
            LLAMA3_SPLIT
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" => QWEN2_SPLIT,
        "gpt-4o" | "llama4" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

fn byte_level_pre_tokenizer(pre: &str) -> Value {
    let bl = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    if let Some(re) = split_regex(pre) {
        return json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            bl(false)
        ]});
    }
    match pre {
        // SmolLM / StarCoder: every digit on its own, then GPT-2's split (llama.cpp's "smollm"
        // pre-type and the HF repo's tokenizer.json; transformers' converter leaves the digits out,
        // which only differs on whitespace runs before a digit).
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva-7b" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, bl(true)]
        }),
        _ => bl(true),
    }
}

/// The HF-style merges SentencePiece vocabularies imply: every split of a token into two vocabulary
/// tokens, best score first (transformers' `generate_merges` with scores).
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    use std::collections::HashMap;
    let mut vocab: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t, i); // the last id wins, as a Python dict built in order
    }
    // Score per token in first-seen order, with the last score (dict(zip(tokens, scores))).
    let mut order: Vec<&str> = Vec::new();
    let mut score: HashMap<&str, f64> = HashMap::new();
    for (t, s) in tokens.iter().zip(scores) {
        if score.insert(t, *s).is_none() {
            order.push(t);
        }
    }
    let mut all: Vec<(&str, &str, f64)> = Vec::new();
    for t in order {
        let mut local: Vec<(&str, &str, f64)> = Vec::new();
        for (i, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(i);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                local.push((l, r, score[t]));
            }
        }
        local.sort_by_key(|&(l, r, _)| (vocab[l], vocab[r]));
        all.extend(local);
    }
    // Stable sort, descending by (score, len(left), len(right)) counted in characters.
    all.sort_by(|a, b| {
        let ka = (a.2, a.0.chars().count(), a.1.chars().count());
        let kb = (b.2, b.0.chars().count(), b.1.chars().count());
        kb.partial_cmp(&ka).unwrap_or(std::cmp::Ordering::Equal)
    });
    all.into_iter().map(|(l, r, _)| (l.to_string(), r.to_string())).collect()
}

fn added(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

pub(crate) fn build(meta: &GgufMetadata, source: &str) -> Result<Built> {
    let model = get(meta, "tokenizer.ggml.model")
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(source, "GGUF metadata has no 'tokenizer.ggml.model': the file carries no tokenizer"))?;
    let tokens =
        str_array(meta, "tokenizer.ggml.tokens", source)?.ok_or_else(|| err(source, "GGUF metadata has no 'tokenizer.ggml.tokens'"))?;
    let types: Vec<u64> = match get(meta, "tokenizer.ggml.token_type") {
        Some(GgufValue::Array(_, v)) => v.iter().map(|x| x.as_u64().unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let merges = str_array(meta, "tokenizer.ggml.merges", source)?;
    let pre = get(meta, "tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
    let tok_at = |key: &str| id_of(meta, key).and_then(|i| tokens.get(i as usize).cloned());
    let bos_id = id_of(meta, "tokenizer.ggml.bos_token_id");
    let eos_id = id_of(meta, "tokenizer.ggml.eos_token_id");
    let pad_id = id_of(meta, "tokenizer.ggml.padding_token_id");
    let bos_token = tok_at("tokenizer.ggml.bos_token_id");
    let eos_token = tok_at("tokenizer.ggml.eos_token_id");
    let unk_token = tok_at("tokenizer.ggml.unknown_token_id");
    let pad_token = tok_at("tokenizer.ggml.padding_token_id");
    for (key, id) in [("bos", bos_id), ("eos", eos_id), ("padding", pad_id)] {
        if let Some(i) = id {
            if i as usize >= tokens.len() {
                return Err(err(source, format!("tokenizer.ggml.{key}_token_id = {i} is outside the vocabulary of {}", tokens.len())));
            }
        }
    }
    let add_bos = flag(meta, "tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
    let add_eos = flag(meta, "tokenizer.ggml.add_eos_token").unwrap_or(false);

    let mut added_tokens: Vec<Value> = Vec::new();
    let mut added_ids = std::collections::HashSet::new();
    let (vocab, model_json, pre_tok, decoder, unk_default) = match model {
        "gpt2" => {
            let table = bytes_to_unicode();
            let alphabet: std::collections::HashSet<char> = table.iter().copied().collect();
            let mut vocab = Map::new();
            for (i, t) in tokens.iter().enumerate() {
                let spelled =
                    if t.chars().all(|c| alphabet.contains(&c)) { t.clone() } else { t.bytes().map(|b| table[b as usize]).collect() };
                vocab.insert(spelled, json!(i));
            }
            // A control token outside the byte alphabet is a llama.cpp mislabel: skipped, as transformers does.
            for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
                if *ty == TOKEN_TYPE_CONTROL && t.chars().all(|c| alphabet.contains(&c)) {
                    added_tokens.push(added(i, t, true));
                    added_ids.insert(i);
                }
            }
            let merges = merges.ok_or_else(|| err(source, "a gpt2 (byte-level BPE) GGUF tokenizer needs 'tokenizer.ggml.merges'"))?;
            let merges: Vec<Value> = merges
                .iter()
                .map(|m| {
                    let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                    json!([a, b])
                })
                .collect();
            let model_json = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": Value::Null, "merges": merges});
            let dec = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            (vocab, model_json, byte_level_pre_tokenizer(pre), dec, None)
        }
        "llama" => {
            let mut vocab = Map::new();
            for (i, t) in tokens.iter().enumerate() {
                vocab.insert(t.clone(), json!(i));
            }
            for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
                if *ty == TOKEN_TYPE_CONTROL {
                    added_tokens.push(added(i, t, true));
                    added_ids.insert(i);
                }
            }
            let merges: Vec<(String, String)> = match merges {
                Some(m) => m
                    .iter()
                    .map(|m| {
                        let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                        (a.to_string(), b.to_string())
                    })
                    .collect(),
                None => {
                    let scores = num_array(meta, "tokenizer.ggml.scores")
                        .ok_or_else(|| err(source, "a llama (SentencePiece) GGUF tokenizer needs 'tokenizer.ggml.scores' or merges"))?;
                    if scores.len() != tokens.len() {
                        return Err(err(source, format!("{} scores for {} tokens", scores.len(), tokens.len())));
                    }
                    merges_from_scores(&tokens, &scores)
                }
            };
            let merges: Vec<Value> = merges.into_iter().map(|(a, b)| json!([a, b])).collect();
            let unk = unk_token.clone().unwrap_or_else(|| "<unk>".to_string());
            let model_json = json!({"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": Value::Null, "merges": merges});
            let pre = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false});
            let dec = json!({"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]});
            (vocab, model_json, pre, dec, Some("<unk>"))
        }
        other => return Err(err(source, format!("GGUF tokenizer.ggml.model = '{other}' is not supported (supported: gpt2, llama)"))),
    };
    // USER_DEFINED tokens: added, not special (llama.cpp matches them whole).
    for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        if *ty == TOKEN_TYPE_USER_DEFINED && vocab.contains_key(t) && !added_ids.contains(&i) {
            added_tokens.push(added(i, t, false));
            added_ids.insert(i);
        }
    }
    // The named special tokens are special added tokens too (transformers registers them).
    let _ = unk_default;
    for t in [&bos_token, &eos_token, &unk_token, &pad_token].into_iter().flatten() {
        if let Some(id) = vocab.get(t.as_str()).and_then(|v| v.as_u64()) {
            let id = id as usize;
            if added_ids.insert(id) {
                added_tokens.push(added(id, t, true));
            }
        }
    }
    added_tokens.sort_by_key(|v| v["id"].as_u64());

    // BOS/EOS insertion as transformers' post-processor for add_bos_token / add_eos_token.
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Map::new();
    let bos = bos_token.clone().filter(|_| add_bos);
    let eos = eos_token.clone().filter(|_| add_eos);
    for (seq, tid) in [("A", 0), ("B", 1)] {
        let mut part = Vec::new();
        if let (Some(b), Some(id)) = (&bos, bos_id) {
            part.push(json!({"SpecialToken": {"id": b, "type_id": tid}}));
            specials.insert(b.clone(), json!({"id": b, "ids": [id], "tokens": [b]}));
        }
        part.push(json!({"Sequence": {"id": seq, "type_id": tid}}));
        if let (Some(e), Some(id)) = (&eos, eos_id) {
            part.push(json!({"SpecialToken": {"id": e, "type_id": tid}}));
            specials.insert(e.clone(), json!({"id": e, "ids": [id], "tokens": [e]}));
        }
        if seq == "A" {
            single = part.clone();
        }
        pair.extend(part);
    }
    let post = json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials});

    let mut model_json = model_json;
    model_json["vocab"] = Value::Object(vocab);
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": pre_tok,
        "post_processor": post,
        "decoder": decoder,
        "model": model_json,
    });
    let chat_template = get(meta, "tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
    Ok(Built { json, bos_token, eos_token, unk_token, pad_token, eos_id, pad_id, chat_template })
}
