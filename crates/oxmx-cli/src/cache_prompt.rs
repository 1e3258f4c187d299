//! `oxmx cache-prompt` (mlx_lm.cache_prompt): the prompt, templated as an unfinished user message
//! (so a later `oxmx generate --prompt-cache-file` appends the question), runs through the model
//! and its KV cache is saved in mlx-lm's prompt-cache format with the model and tokens as
//! metadata.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::chat::ChatOptions;
use oxmx_lm::generate::GenerateOptions;
use oxmx_lm::prompt_cache::save_prompt_cache;
use oxmx_lm::Tokenizer;
use serde_json::json;

use crate::engine::Engine;
use crate::generate::read_prompt;
use crate::resolve::resolve_model;
use crate::KvArgs;

#[derive(Args, Debug)]
pub struct CachePromptArgs {
    /// Model: a folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: Option<String>,
    /// The prompt to cache; '-' reads it from stdin.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Where to write the cache (.safetensors).
    #[arg(long, default_value = "prompt_cache.safetensors")]
    pub prompt_cache_file: String,
    /// Keep at most this many tokens in the KV cache (a rotating cache).
    #[arg(long)]
    pub max_kv_size: Option<usize>,
    /// Chunk size of the prompt processing.
    #[arg(long, default_value_t = 2048)]
    pub prefill_step_size: usize,
    #[command(flatten)]
    pub kv: KvArgs,
}

pub fn run(a: CachePromptArgs) -> Result<()> {
    let path = resolve_model(a.model.as_deref())?;
    let tok = Tokenizer::from_path(&path)?;
    let prompt = read_prompt(&a.prompt)?;
    let ids = if tok.has_chat_template() {
        let msgs = vec![json!({"role": "user", "content": prompt})];
        let opts = ChatOptions { continue_final_message: true, ..ChatOptions::default() };
        let text = tok.chat_template(None)?.apply(&msgs, &opts)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(&prompt, true)?
    };
    if ids.is_empty() {
        return Err(Error::invalid("the prompt has no tokens"));
    }
    let mut engine = Engine::load(&path, a.max_kv_size)?;
    let opts = GenerateOptions {
        prefill_step_size: a.prefill_step_size,
        kv_bits: a.kv.kv_bits,
        kv_group_size: a.kv.kv_group_size,
        quantized_kv_start: a.kv.quantized_kv_start,
        ..GenerateOptions::default()
    };
    let st = engine.prefill(&ids, opts)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Processed {:6} tokens ({:6.2} tok/s)", st.prompt_tokens, st.prompt_tps);
    let _ = writeln!(out, "Peak memory: {:.3} GB", st.peak_memory_gb());
    let _ = writeln!(out, "Saving...");
    let model_name = match &a.model {
        Some(m) => std::fs::canonicalize(&path).map(|p| p.display().to_string()).unwrap_or_else(|_| m.clone()),
        None => path.display().to_string(),
    };
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), model_name);
    meta.insert("tokenizer_config".to_string(), json!({"trust_remote_code": false}).to_string());
    meta.insert("tokens".to_string(), json!(ids).to_string());
    save_prompt_cache(&a.prompt_cache_file, engine.cache(), &meta)?;
    Ok(())
}
