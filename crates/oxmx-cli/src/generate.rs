//! `oxmx generate`, `oxmx chat` and `oxmx tokenize`: prompt building (chat template as mlx_lm
//! builds it), streaming output and statistics.

use std::io::{BufRead, Read, Write};

use oxmx_core::{Error, Result};
use oxmx_lm::chat::ChatOptions;
use oxmx_lm::Tokenizer;
use serde_json::{json, Value};

use crate::engine::{Engine, GenParams, Stats};
use crate::resolve::resolve_model;
use crate::{ChatArgs, GenerateArgs, KvArgs, ModelArgs, SampleArgs, TokenizeArgs};

/// `-` reads stdin; literal `\n` / `\t` become newline / tab (mlx_lm does the same).
pub fn read_prompt(p: &str) -> Result<String> {
    let text = if p == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Error::io(format!("cannot read the prompt from stdin: {e}")))?;
        s
    } else {
        p.to_string()
    };
    Ok(text.replace("\\n", "\n").replace("\\t", "\t"))
}

pub fn template_options(m: &ModelArgs) -> Result<ChatOptions> {
    let mut opts = ChatOptions::default();
    if let Some(cfg) = &m.chat_template_config {
        let v: Value = serde_json::from_str(cfg).map_err(|e| Error::invalid(format!("--chat-template-config is not valid JSON: {e}")))?;
        let Value::Object(o) = v else {
            return Err(Error::invalid("--chat-template-config must be a JSON object"));
        };
        for (k, v) in o {
            match k.as_str() {
                "enable_thinking" => opts.enable_thinking = v.as_bool(),
                "tools" => opts.tools = v.as_array().cloned(),
                _ => {
                    opts.extra.insert(k, v);
                }
            }
        }
    }
    Ok(opts)
}

/// The prompt's token ids: through the chat template when the model has one (encoded without
/// special tokens, the template writes them), else the raw text with special tokens.
pub fn prompt_ids(tok: &Tokenizer, m: &ModelArgs, user: &str, prefill: Option<&str>) -> Result<(Vec<u32>, String)> {
    if m.ignore_chat_template || !tok.has_chat_template() {
        let mut text = String::new();
        if let Some(s) = &m.system_prompt {
            text.push_str(s);
            text.push('\n');
        }
        text.push_str(user);
        if let Some(p) = prefill {
            text.push_str(p);
        }
        return Ok((tok.encode(&text, true)?, text));
    }
    let mut msgs = Vec::new();
    if let Some(s) = &m.system_prompt {
        msgs.push(json!({"role": "system", "content": s}));
    }
    msgs.push(json!({"role": "user", "content": user}));
    let mut opts = template_options(m)?;
    match prefill {
        Some(p) => {
            msgs.push(json!({"role": "assistant", "content": p}));
            opts.continue_final_message = true;
        }
        None => opts.add_generation_prompt = true,
    }
    let text = tok.chat_template(None)?.apply(&msgs, &opts)?;
    Ok((tok.encode(&text, false)?, text))
}

fn eos_ids(tok: &Tokenizer, engine_eos: &[u32], m: &ModelArgs) -> Result<Vec<u32>> {
    let mut eos: Vec<u32> = engine_eos.to_vec();
    if eos.is_empty() {
        eos.extend_from_slice(tok.eos_token_ids());
    }
    for e in &m.extra_eos_token {
        let id = match tok.token_to_id(e) {
            Some(id) => id,
            None => e
                .parse::<u32>()
                .map_err(|_| Error::invalid(format!("--extra-eos-token '{e}' is neither a token of the vocabulary nor an id")))?,
        };
        if id as usize >= tok.vocab_size() {
            return Err(Error::invalid(format!("--extra-eos-token {id} is outside the vocabulary ({})", tok.vocab_size())));
        }
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    Ok(eos)
}

fn params(s: &SampleArgs, kv: &KvArgs, max_tokens: usize, eos: Vec<u32>) -> GenParams {
    GenParams {
        temp: s.temp,
        top_p: s.top_p,
        min_p: s.min_p,
        top_k: s.top_k,
        seed: s.seed,
        max_tokens,
        eos_token_ids: eos,
        kv_bits: kv.kv_bits,
        kv_group_size: kv.kv_group_size,
        quantized_kv_start: kv.quantized_kv_start,
    }
}

/// The part of the prompt after a cached prefix (mlx_lm): with a chat template, the templated
/// text from where the user's message starts (found by rendering with a `<query>` placeholder),
/// encoded without special tokens; without one, the raw prompt with special tokens.
pub fn suffix_prompt_ids(tok: &Tokenizer, m: &ModelArgs, user: &str, prefill: Option<&str>) -> Result<(Vec<u32>, String)> {
    if m.ignore_chat_template || !tok.has_chat_template() {
        return prompt_ids(tok, m, user, prefill);
    }
    const PLACEHOLDER: &str = "<query>";
    let (_, full) = prompt_ids(tok, m, user, prefill)?;
    let (_, probe) = match prefill {
        Some(_) => prompt_ids(tok, m, user, Some(PLACEHOLDER))?,
        None => prompt_ids(tok, m, PLACEHOLDER, None)?,
    };
    let start = probe
        .find(PLACEHOLDER)
        .ok_or_else(|| Error::invalid("the chat template does not place the message text in the prompt; cannot continue a prompt cache"))?;
    let text = full.get(start..).ok_or_else(|| Error::invalid("cannot split the templated prompt after the cached prefix"))?.to_string();
    Ok((tok.encode(&text, false)?, text))
}

/// Loads `--prompt-cache-file` and checks it against the flags (mlx_lm's rules); returns the
/// cache and the model path to use.
fn load_cache_file(file: &str, a: &GenerateArgs) -> Result<(oxmx_lm::cache::PromptCache, std::path::PathBuf)> {
    let (cache, meta) = oxmx_lm::prompt_cache::load_prompt_cache(file)?;
    if let Some((g, b)) = cache.first().and_then(|c| c.quantization()) {
        if a.kv.kv_bits.is_some_and(|kb| kb != b) {
            return Err(Error::invalid("--kv-bits does not match the kv cache loaded from --prompt-cache-file"));
        }
        if a.kv.kv_group_size != g {
            return Err(Error::invalid("--kv-group-size does not match the kv cache loaded from --prompt-cache-file"));
        }
    }
    let path = match (&a.model.model, meta.get("model")) {
        (Some(m), Some(cached)) => {
            let p = resolve_model(Some(m.as_str()))?;
            let same = match (std::fs::canonicalize(&p), std::fs::canonicalize(cached)) {
                (Ok(x), Ok(y)) => x == y,
                _ => m == cached,
            };
            if !same {
                return Err(Error::invalid(format!(
                    "providing a different model ({m}) than that used to create the prompt cache ({cached}) is an error"
                )));
            }
            p
        }
        (Some(m), None) => resolve_model(Some(m.as_str()))?,
        (None, Some(cached)) => resolve_model(Some(cached.as_str()))?,
        (None, None) => resolve_model(None)?,
    };
    Ok((cache, path))
}

/// Generates after `ids`, streaming text to `out` when given; returns (text, generated ids, stats).
fn stream(
    engine: &mut Engine,
    tok: &Tokenizer,
    ids: &[u32],
    p: &GenParams,
    mut out: Option<&mut dyn Write>,
) -> Result<(String, Vec<u32>, Stats)> {
    let mut detok = tok.detokenizer();
    let mut generated = Vec::new();
    let stats = engine.generate(ids, p, &mut |t| {
        generated.push(t);
        if p.eos_token_ids.contains(&t) {
            return Ok(()); // EOS ends the reply without its text, as mlx_lm
        }
        detok.add_token(t);
        if let Some(o) = out.as_deref_mut() {
            let seg = detok.last_segment();
            if !seg.is_empty() {
                o.write_all(seg.as_bytes()).and_then(|_| o.flush()).map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
            }
        }
        Ok(())
    })?;
    detok.finalize();
    if let Some(o) = out.as_deref_mut() {
        let seg = detok.last_segment();
        o.write_all(seg.as_bytes()).and_then(|_| o.flush()).map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
    }
    Ok((detok.text().to_string(), generated, stats))
}

pub fn run_generate(a: GenerateArgs) -> Result<()> {
    let cached = match &a.prompt_cache_file {
        Some(f) => Some(load_cache_file(f, &a)?),
        None => None,
    };
    let path = match &cached {
        Some((_, p)) => p.clone(),
        None => resolve_model(a.model.model.as_deref())?,
    };
    let tok = Tokenizer::from_path(&path)?;
    let prompt = read_prompt(&a.prompt)?;
    let (ids, text) = match cached {
        Some(_) => suffix_prompt_ids(&tok, &a.model, &prompt, a.prefill_response.as_deref())?,
        None => prompt_ids(&tok, &a.model, &prompt, a.prefill_response.as_deref())?,
    };
    let group = crate::tensor_parallel_group(a.tensor_parallel)?;
    let lopts = oxmx_lm::loader::LoadOptions { tensor_parallel: group, ..Default::default() };
    let mut engine = Engine::load_with(&path, a.sample.max_kv_size, &lopts)?;
    if let Some(dir) = &a.adapter_path {
        engine.load_adapters(std::path::Path::new(dir))?;
    }
    if let Some(d) = &a.draft_model {
        if cached.is_some() {
            return Err(Error::invalid("--draft-model cannot be combined with --prompt-cache-file (the file holds no draft cache)"));
        }
        engine.load_draft(&resolve_model(Some(d))?, a.num_draft_tokens)?;
    }
    if let Some((cache, _)) = cached {
        engine.set_cache(cache)?;
    }
    let eos = eos_ids(&tok, engine.eos_token_ids(), &a.model)?;
    let p = params(&a.sample, &a.kv, a.max_tokens, eos);
    let stdout = std::io::stdout();
    if a.json {
        let (text, generated, st) = stream(&mut engine, &tok, &ids, &p, None)?;
        // `tokens`: the generated ids (an EOS that ended the run included), as the issue's
        // contract and mlx_lm's GenerationResponse give them.
        let o = json!({
            "text": text, "tokens": generated, "prompt_tokens": st.prompt_tokens,
            "prompt_tps": st.prompt_tps, "generation_tps": st.generation_tps, "peak_memory": st.peak_memory_gb(),
        });
        println!("{o}");
        return Ok(());
    }
    let mut lock = stdout.lock();
    if a.verbose {
        let _ = writeln!(lock, "==========");
        let _ = writeln!(lock, "{text}");
        let _ = writeln!(lock, "==========");
    }
    let (_, generated, st) = stream(&mut engine, &tok, &ids, &p, Some(&mut lock))?;
    let _ = writeln!(lock);
    if a.verbose {
        let _ = writeln!(lock, "==========");
        let _ = writeln!(lock, "Prompt: {} tokens, {:.3} tokens-per-sec", st.prompt_tokens, st.prompt_tps);
        let _ = writeln!(lock, "Generation: {} tokens, {:.3} tokens-per-sec", generated.len(), st.generation_tps);
        let _ = writeln!(lock, "Peak memory: {:.3} GB", st.peak_memory_gb());
    }
    Ok(())
}

pub fn run_tokenize(a: TokenizeArgs) -> Result<()> {
    let path = resolve_model(a.model.model.as_deref())?;
    let tok = Tokenizer::from_path(&path)?;
    let prompt = read_prompt(&a.prompt)?;
    let (ids, text) = prompt_ids(&tok, &a.model, &prompt, None)?;
    let toks: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_default()).collect();
    println!("{}", json!({"text": text, "ids": ids, "tokens": toks}));
    Ok(())
}

/// A REPL: each turn feeds only the new templated user message; the cache keeps the rest.
pub fn run_chat(a: ChatArgs) -> Result<()> {
    let path = resolve_model(a.model.model.as_deref())?;
    let tok = Tokenizer::from_path(&path)?;
    let mut engine = Engine::load(&path, a.sample.max_kv_size)?;
    let eos = eos_ids(&tok, engine.eos_token_ids(), &a.model)?;
    let p = params(&a.sample, &a.kv, a.max_tokens, eos);
    eprintln!("[oxmx chat] {}: type a message; 'q' quits, 'r' resets the conversation, 'h' helps.", path.display());
    let stdin = std::io::stdin();
    let mut first = true;
    loop {
        eprint!(">> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| Error::io(format!("cannot read stdin: {e}")))? == 0 {
            break;
        }
        let q = line.trim_end_matches(['\n', '\r']);
        match q {
            "q" => break,
            "r" => {
                engine.reset_cache();
                first = true;
                continue;
            }
            "h" => {
                eprintln!("q: quit, r: reset the conversation, h: this help");
                continue;
            }
            _ => {}
        }
        let mut m = a.model.clone();
        if !first {
            m.system_prompt = None;
        }
        let (ids, _) = prompt_ids(&tok, &m, q, None)?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        stream(&mut engine, &tok, &ids, &p, Some(&mut lock))?;
        let _ = writeln!(lock);
        first = false;
    }
    Ok(())
}
