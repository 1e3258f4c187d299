//! `oxmx serve`: the OpenAI-compatible server (oxmx_lm::server), with mlx-lm's server flags
//! plus what its users ask for: `--max-kv-size`, `--kv-bits`, `--api-key`, CORS off by default.

use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::server::{start, Defaults, EngineConfig, ServerConfig};
use oxmx_lm::Tokenizer;
use serde_json::Value;

use crate::resolve::resolve_model;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model: a folder, a .gguf file or a Hugging Face repo id (default: the setup model).
    #[arg(long)]
    pub model: Option<String>,
    /// The model name clients use (default: the file or folder name).
    #[arg(long)]
    pub model_id: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together (continuous batching); more wait in a queue.
    #[arg(long, default_value_t = 8)]
    pub max_concurrency: usize,
    /// Keep at most this many tokens per request in the KV cache (a rotating cache).
    #[arg(long)]
    pub max_kv_size: Option<usize>,
    /// Quantize the KV cache to this many bits (2, 3, 4, 5, 6 or 8).
    #[arg(long)]
    pub kv_bits: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub kv_group_size: usize,
    /// Quantize a request's cache once it holds this many tokens.
    #[arg(long, default_value_t = 0)]
    pub quantized_kv_start: usize,
    #[arg(long, default_value_t = 2048)]
    pub prefill_step_size: usize,
    /// Byte budget of the prompt cache shared across requests, e.g. 2G, 500MB, 0 (off).
    #[arg(long, default_value = "1G")]
    pub prompt_cache_bytes: String,
    /// Require `Authorization: Bearer KEY` (default: OXMX_API_KEY when set, else no key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Send CORS headers (Access-Control-Allow-Origin: *) and answer preflight requests.
    #[arg(long)]
    pub cors: bool,
    /// Defaults for requests that do not set them.
    #[arg(long, default_value_t = 0.0)]
    pub temp: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// JSON object of chat-template variables for every request, e.g. '{"enable_thinking": false}'.
    #[arg(long)]
    pub chat_template_args: Option<String>,
    /// Extra end-of-sequence tokens (text of a token, or an id).
    #[arg(long, num_args = 1..)]
    pub extra_eos_token: Vec<String>,
}

/// `8G`, `500MB`, `1024`: bytes.
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = [("GB", 1usize << 30), ("G", 1 << 30), ("MB", 1 << 20), ("M", 1 << 20), ("KB", 1 << 10), ("K", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
        .unwrap_or((t.clone(), 1));
    let v: f64 = num.parse().map_err(|_| Error::invalid(format!("'{s}' is not a size (examples: 8G, 500MB, 0)")))?;
    if !(v >= 0.0) || !v.is_finite() {
        return Err(Error::invalid(format!("'{s}' is not a size (examples: 8G, 500MB, 0)")));
    }
    Ok((v * mult as f64) as usize)
}

pub fn run(a: ServeArgs) -> Result<()> {
    // Flags that need no model are checked first, so a typo is reported as itself even where
    // the model is missing too.
    let mut template_args = serde_json::Map::new();
    if let Some(t) = &a.chat_template_args {
        match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(o)) => template_args = o,
            _ => return Err(Error::invalid("--chat-template-args must be a JSON object")),
        }
    }
    let prompt_cache_bytes = parse_bytes(&a.prompt_cache_bytes)?;
    let path = resolve_model(a.model.as_deref())?;
    let mut extra_eos = Vec::new();
    if !a.extra_eos_token.is_empty() {
        let tok = Tokenizer::from_path(&path)?;
        for e in &a.extra_eos_token {
            let id = match tok.token_to_id(e) {
                Some(id) => id,
                None => e.parse::<u32>().map_err(|_| Error::invalid(format!("--extra-eos-token '{e}' is neither a token nor an id")))?,
            };
            extra_eos.push(id);
        }
    }
    let api_key = a.api_key.clone().or_else(|| std::env::var("OXMX_API_KEY").ok().filter(|k| !k.is_empty()));
    let cfg = ServerConfig {
        model_path: path.clone(),
        model_id: a.model_id.clone(),
        host: a.host.clone(),
        port: a.port,
        engine: EngineConfig {
            max_concurrency: a.max_concurrency,
            max_kv_size: a.max_kv_size,
            kv_bits: a.kv_bits,
            kv_group_size: a.kv_group_size,
            quantized_kv_start: a.quantized_kv_start,
            prefill_step_size: a.prefill_step_size,
            prompt_cache_bytes,
            eos_token_ids: vec![],
        },
        defaults: Defaults { temp: a.temp, top_p: a.top_p, top_k: a.top_k, min_p: a.min_p, max_tokens: a.max_tokens, template_args },
        api_key,
        cors: a.cors,
        extra_eos,
    };
    let server = start(cfg)?;
    eprintln!("[oxmx serve] {} as '{}' on {} (Ctrl-C stops)", path.display(), server.model_id, server.url());
    server.wait();
    Ok(())
}
