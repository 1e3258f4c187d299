//! Perplexity (mlx-lm's `mlx_lm.perplexity`): documents are tokenized, shuffled with a seed,
//! concatenated and cut into rows of `sequence_length` tokens; each row's next-token
//! cross-entropy is averaged over all predicted positions, `PPL = exp(mean)`, and the standard
//! error comes from the delta method (`PPL * std(losses, ddof=1) / sqrt(n)`).
//!
//! Local data only: a `.jsonl` file (records with `text`, `messages`, or `prompt` + `completion`,
//! as mlx-lm's LoRA datasets), a folder with `train.jsonl` (or `test.jsonl` / `valid.jsonl`), or
//! any other file read as one plain-text document.

use crate::cache::quantized::or_error;
use crate::chat::ChatOptions;
use crate::models::LanguageModel;
use crate::Tokenizer;
use oxmx_core::{memory, ops, Array, Dtype, Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What [`eval_perplexity`] measures.
#[derive(Clone, Debug, Default)]
pub struct PerplexityResult {
    pub perplexity: f64,
    /// Standard error of the perplexity (delta method).
    pub standard_error: f64,
    pub mean_loss: f64,
    /// Predicted positions: rows * (sequence_length - 1).
    pub tokens_evaluated: usize,
    pub rows: usize,
    pub seconds: f64,
    pub tokens_per_sec: f64,
    /// `memory::peak_memory()` in bytes.
    pub peak_memory: usize,
}

/// Per-position cross-entropy (float32, `[B, L - 1]`) of predicting `tokens[:, 1:]` from
/// `tokens[:, :-1]` (`tokens: [B, L]` integers, `L >= 2`).
pub fn token_losses(model: &dyn LanguageModel, tokens: &Array) -> Array {
    or_error((|| {
        if tokens.ndim() != 2 || tokens.shape()[1] < 2 {
            return Err(Error::invalid(format!("[perplexity] tokens must be [B, L] with L >= 2, got {:?}", tokens.shape())));
        }
        let (b, l) = (tokens.shape()[0] as isize, tokens.shape()[1] as isize);
        let inputs = ops::slice_range(tokens, &[0, 0], &[b, l - 1]);
        let targets = ops::slice_range(tokens, &[0, 1], &[b, l]).astype(Dtype::Int32);
        let logits = model.forward(&inputs, None).astype(Dtype::Float32);
        let lse = ops::logsumexp(&logits, -1isize, false);
        let picked = ops::take_along_axis(&logits, &ops::expand_dims(&targets, &[-1]), Some(-1));
        Ok(&lse - &ops::squeeze(&picked, &[-1]))
    })())
}

/// Perplexity of `rows` (each a token sequence of one common length), `batch_size` rows per
/// forward pass. `progress(done, total)` is called after each batch.
pub fn eval_perplexity(
    model: &dyn LanguageModel,
    rows: &[Vec<u32>],
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityResult> {
    if rows.is_empty() {
        return Err(Error::invalid("[perplexity] no data rows"));
    }
    if batch_size == 0 {
        return Err(Error::invalid("[perplexity] batch_size must be positive"));
    }
    let len = rows[0].len();
    if len < 2 || rows.iter().any(|r| r.len() != len) {
        return Err(Error::invalid("[perplexity] rows must share one length of at least 2 tokens"));
    }
    let vocab = model.config().vocab_size;
    if let Some(&t) = rows.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(format!("[perplexity] token {t} is outside the model's vocabulary ({vocab})")));
    }
    memory::reset_peak_memory();
    let start = Instant::now();
    let mut losses: Vec<f32> = Vec::with_capacity(rows.len() * (len - 1));
    let total = rows.len().div_ceil(batch_size);
    for (i, chunk) in rows.chunks(batch_size).enumerate() {
        let ids: Vec<i32> = chunk.iter().flatten().map(|&t| t as i32).collect();
        let batch = Array::from_slice(&ids, &[chunk.len(), len]);
        let l = token_losses(model, &batch);
        losses.extend(l.to_vec::<f32>()?);
        memory::clear_cache();
        progress(i + 1, total);
    }
    let seconds = start.elapsed().as_secs_f64();
    let (mean, se) = mean_and_standard_error(&losses);
    let perplexity = mean.exp();
    Ok(PerplexityResult {
        perplexity,
        standard_error: perplexity * se,
        mean_loss: mean,
        tokens_evaluated: losses.len(),
        rows: rows.len(),
        seconds,
        tokens_per_sec: losses.len() as f64 / seconds.max(1e-9),
        peak_memory: memory::peak_memory(),
    })
}

/// Number of parameters (quantized weights counted as the values they stand for).
pub fn num_parameters(model: &dyn LanguageModel) -> usize {
    oxmx_nn::Module::num_parameters(model)
}

/// Mean and the standard error of the mean (`std(ddof=1) / sqrt(n)`; 0 for one value).
pub fn mean_and_standard_error(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    if x.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, 0.0);
    }
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt() / n.sqrt())
}

/// One document of a dataset file.
#[derive(Clone, Debug)]
pub enum Document {
    Text(String),
    Messages(Vec<Value>),
}

fn dataset_file(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        for name in ["train.jsonl", "test.jsonl", "valid.jsonl"] {
            let p = path.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        return Err(Error::invalid(format!("[perplexity] {} has no train.jsonl, test.jsonl or valid.jsonl", path.display())));
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::invalid(format!(
        "[perplexity] data path {} does not exist (a local .jsonl/.txt file or a folder with train.jsonl; nothing is downloaded)",
        path.display()
    )))
}

/// Reads the documents of `path` (see the module docs for the formats).
pub fn read_documents(path: &Path) -> Result<Vec<Document>> {
    let file = dataset_file(path)?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(format!("[perplexity] cannot read {}: {e}", file.display())))?;
    if file.extension().and_then(|e| e.to_str()) != Some("jsonl") {
        return Ok(vec![Document::Text(text)]);
    }
    let mut docs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &str| Error::invalid(format!("[perplexity] {} line {}: {m}", file.display(), n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            docs.push(Document::Text(t.to_string()));
        } else if let Some(m) = v.get("messages").and_then(|m| m.as_array()) {
            docs.push(Document::Messages(m.clone()));
        } else if let (Some(p), Some(c)) = (v.get("prompt").and_then(|p| p.as_str()), v.get("completion").and_then(|c| c.as_str())) {
            docs.push(Document::Messages(vec![
                serde_json::json!({"role": "user", "content": p}),
                serde_json::json!({"role": "assistant", "content": c}),
            ]));
        } else {
            return Err(bad("expected a `text`, `messages` or `prompt` + `completion` record"));
        }
    }
    Ok(docs)
}

/// A document's tokens: text with the tokenizer's special tokens and a final EOS (mlx-lm's text
/// dataset), conversations through the chat template.
pub fn tokenize_document(tok: &Tokenizer, doc: &Document) -> Result<Vec<u32>> {
    match doc {
        Document::Text(t) => {
            let mut ids = tok.encode(t, true)?;
            if let Some(&eos) = tok.eos_token_ids().first() {
                if ids.last() != Some(&eos) {
                    ids.push(eos);
                }
            }
            Ok(ids)
        }
        Document::Messages(m) => {
            if !tok.has_chat_template() {
                return Err(Error::invalid("[perplexity] `messages` records need a tokenizer with a chat template"));
            }
            let text = tok.chat_template(None)?.apply(m, &ChatOptions::default())?;
            tok.encode(&text, false)
        }
    }
}

/// A small deterministic generator (SplitMix64) for the document order.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A uniformly shuffled `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// Rows of `sequence_length` tokens (mlx-lm's `load_data`): documents in a seeded random order,
/// concatenated until `sequence_length * num_samples` tokens (all documents when `num_samples`
/// is `None`), cut into full rows, at most `num_samples` of them.
pub fn make_rows(docs: &[Vec<u32>], sequence_length: usize, num_samples: Option<usize>, seed: u64) -> Result<Vec<Vec<u32>>> {
    if sequence_length < 2 {
        return Err(Error::invalid("[perplexity] sequence_length must be at least 2"));
    }
    let want = num_samples.map(|n| n * sequence_length);
    let mut data: Vec<u32> = Vec::new();
    for i in SplitMix64::new(seed).permutation(docs.len()) {
        if want.is_some_and(|w| data.len() >= w) {
            break;
        }
        data.extend_from_slice(&docs[i]);
    }
    let mut rows: Vec<Vec<u32>> = data.chunks_exact(sequence_length).map(|c| c.to_vec()).collect();
    if let Some(n) = num_samples {
        rows.truncate(n);
    }
    if rows.is_empty() {
        return Err(Error::invalid(format!(
            "[perplexity] the data has {} tokens, fewer than one row of sequence_length {sequence_length}",
            data.len()
        )));
    }
    Ok(rows)
}

/// Documents of `path`, tokenized, as rows (see [`make_rows`]).
pub fn load_rows(tok: &Tokenizer, path: &Path, sequence_length: usize, num_samples: Option<usize>, seed: u64) -> Result<Vec<Vec<u32>>> {
    let docs = read_documents(path)?;
    let tokens: Vec<Vec<u32>> = docs.iter().map(|d| tokenize_document(tok, d)).collect::<Result<_>>()?;
    make_rows(&tokens, sequence_length, num_samples, seed)
}
