//! Tokenizers rebuilt from GGUF metadata against transformers' GGUF tokenizer
//! (fixtures: scripts/gen_tokenizer_fixtures.py), and the streaming detokenizer.

use std::path::{Path, PathBuf};

use oxmx_core::io::gguf::GgufFile;
use oxmx_lm::Tokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Value {
    let s = std::fs::read_to_string(fixtures().join("tokenizer.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Every case: ids with and without special tokens, both decodes, and the streaming detokenizer.
fn check_cases(tok: &Tokenizer, file: &Value, what: &str) -> usize {
    let mut n = 0;
    for c in file["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        let got = tok.encode(text, false).unwrap();
        assert_eq!(got, want, "{what}: ids of {text:?}");
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["ids_add_special"]), "{what}: ids with specials of {text:?}");
        assert_eq!(tok.decode(&want, false).unwrap(), c["decoded"].as_str().unwrap(), "{what}: decode of {text:?}");
        assert_eq!(
            tok.decode(&want, true).unwrap(),
            c["decoded_skip_special"].as_str().unwrap(),
            "{what}: decode skipping specials of {text:?}"
        );
        check_stream(tok, &want, what);
        n += 1;
    }
    n
}

/// Pieces concatenate to the full decode, and none is cut inside a UTF-8 sequence (they are
/// `&str`, so a cut would show as U+FFFD where the full decode has none).
fn check_stream(tok: &Tokenizer, ids: &[u32], what: &str) {
    let full = tok.decode(ids, false).unwrap();
    let mut d = tok.detokenizer();
    let mut pieces = String::new();
    for &id in ids {
        d.add_token(id);
        let seg = d.last_segment().to_string();
        if !full.contains('\u{FFFD}') {
            assert!(!seg.contains('\u{FFFD}'), "{what}: a streamed piece holds a broken character: {seg:?}");
        }
        pieces.push_str(&seg);
    }
    d.finalize();
    pieces.push_str(d.last_segment());
    assert_eq!(pieces, full, "{what}: streamed pieces vs decode");
    assert_eq!(d.text(), full);
}

fn load_fixture_gguf(name: &str) -> Tokenizer {
    let f = GgufFile::open(fixtures().join(name)).unwrap();
    Tokenizer::from_gguf(&f).unwrap()
}

#[test]
fn gguf_byte_level_bpe_matches_transformers() {
    let exp = expected();
    let mut total = 0;
    for name in ["bpe_qwen2.gguf", "bpe_llama_bpe.gguf", "bpe_gpt2.gguf"] {
        let f = &exp["files"][name];
        let tok = load_fixture_gguf(name);
        assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap(), "{name}");
        assert_eq!(tok.eos_token_ids(), &[f["eos_token_id"].as_u64().unwrap() as u32]);
        assert_eq!(tok.bos_token_id(), Some(f["bos_token_id"].as_u64().unwrap() as u32));
        total += check_cases(&tok, f, name);
    }
    assert!(total >= 60);
}

#[test]
fn gguf_sentencepiece_matches_transformers() {
    let exp = expected();
    let f = &exp["files"]["spm_llama.gguf"];
    let tok = load_fixture_gguf("spm_llama.gguf");
    assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.eos_token_ids(), &[f["eos_token_id"].as_u64().unwrap() as u32]);
    assert!(check_cases(&tok, f, "spm_llama") >= 15);
}

/// Qwen2.5-Coder-0.5B-Instruct's GGUF (qwen2 pre-tokenizer, 151k vocabulary; skipped with a
/// message when scripts/fetch_qwen_coder.sh has not placed it): ids as transformers', and its
/// chat template (tools, tool calls and results) rendered as transformers renders it.
#[test]
fn qwen_coder_gguf_tokenizer_matches_transformers() {
    let exp = expected();
    let Some(f) = exp.get("qwen_coder") else {
        eprintln!("skipped: the fixtures were generated without the Qwen2.5-Coder GGUF");
        return;
    };
    let path = oxmx_lm::models_dir::models_dir().join(f["file"].as_str().unwrap());
    if !path.is_file() {
        eprintln!("skipped: {} not present (scripts/fetch_qwen_coder.sh fetches it)", path.display());
        return;
    }
    let tok = Tokenizer::from_path(&path).unwrap();
    assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.eos_token_ids(), &[f["eos_token_id"].as_u64().unwrap() as u32]);
    assert!(check_cases(&tok, f, "qwen_coder") >= 20);
    let tmpl = tok.chat_template(None).unwrap();
    for c in f["chat"].as_array().unwrap() {
        let msgs = c["messages"].as_array().unwrap().clone();
        let opts = oxmx_lm::chat::ChatOptions {
            add_generation_prompt: c["add_generation_prompt"].as_bool().unwrap(),
            tools: c["tools"].as_array().cloned(),
            ..Default::default()
        };
        assert_eq!(tmpl.apply(&msgs, &opts).unwrap(), c["text"].as_str().unwrap());
    }
}

/// The default model's GGUF (skipped with a message when scripts/setup.sh has not placed it).
#[test]
fn default_model_gguf_tokenizer_matches_transformers() {
    let exp = expected();
    let Some(f) = exp.get("smollm2") else {
        eprintln!("skipped: the fixtures were generated without the default model");
        return;
    };
    let dir = std::env::var("OXMX_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/oxmx/models"));
    let path = dir.join(f["file"].as_str().unwrap());
    if !path.is_file() {
        eprintln!("skipped: {} not present (run scripts/setup.sh)", path.display());
        return;
    }
    let tok = Tokenizer::from_path(&path).unwrap();
    assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap());
    assert_eq!(tok.eos_token_ids(), &[f["eos_token_id"].as_u64().unwrap() as u32]);
    assert_eq!(tok.bos_token_id(), Some(f["bos_token_id"].as_u64().unwrap() as u32));
    assert!(check_cases(&tok, f, "smollm2") >= 20);
    // The model's chat template renders as transformers renders it.
    let tmpl = tok.chat_template(None).unwrap();
    for c in f["chat"].as_array().unwrap() {
        let msgs = c["messages"].as_array().unwrap().clone();
        let opts =
            oxmx_lm::chat::ChatOptions { add_generation_prompt: c["add_generation_prompt"].as_bool().unwrap(), ..Default::default() };
        assert_eq!(tmpl.apply(&msgs, &opts).unwrap(), c["text"].as_str().unwrap());
    }
}

#[test]
fn streaming_splits_multibyte_characters_across_tokens() {
    // The byte-level vocabularies here are small, so emoji and CJK come out as one token per byte.
    let tok = load_fixture_gguf("bpe_qwen2.gguf");
    let text = "a😀b 日本語 👨‍👩‍👧 é";
    let ids = tok.encode(text, false).unwrap();
    assert!(ids.len() > text.chars().count(), "expected byte-split tokens");
    check_stream(&tok, &ids, "multibyte");
    let mut d = tok.detokenizer();
    let mut saw_hold = false;
    for &id in &ids {
        d.add_token(id);
        if d.last_segment().is_empty() {
            saw_hold = true; // an incomplete character was held back
        }
    }
    assert!(saw_hold);
    // SentencePiece byte fallback: the same with <0xNN> tokens.
    let spm = load_fixture_gguf("spm_llama.gguf");
    let ids = spm.encode(text, false).unwrap();
    check_stream(&spm, &ids, "spm multibyte");
}

#[test]
fn gguf_errors_are_clear() {
    use oxmx_core::io::gguf::GgufValue;
    let meta = vec![("general.architecture".to_string(), GgufValue::String("llama".into()))];
    let e = Tokenizer::from_gguf_metadata(&meta, "x.gguf").err().unwrap().to_string();
    assert!(e.contains("tokenizer.ggml.model") && e.contains("x.gguf"), "{e}");
    let meta = vec![
        ("tokenizer.ggml.model".to_string(), GgufValue::String("rwkv".into())),
        ("tokenizer.ggml.tokens".to_string(), GgufValue::Array(oxmx_core::io::gguf::GgufType::String, vec![GgufValue::String("a".into())])),
    ];
    let e = Tokenizer::from_gguf_metadata(&meta, "y.gguf").err().unwrap().to_string();
    assert!(e.contains("rwkv"), "{e}");
    let tok = load_fixture_gguf("bpe_qwen2.gguf");
    let e = tok.decode(&[1_000_000], false).err().unwrap().to_string();
    assert!(e.contains("1000000"), "{e}");
    let e = Tokenizer::from_path("/nonexistent/model").err().unwrap().to_string();
    assert!(e.contains("/nonexistent/model"), "{e}");
}
