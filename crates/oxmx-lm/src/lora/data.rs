//! Fine-tuning data as mlx-lm's `tuner/datasets.py` reads it: a folder with `train.jsonl`,
//! `valid.jsonl` and `test.jsonl`, one JSON object a line, in one of three forms detected from
//! the first record:
//!
//! * completions `{"prompt", "completion"}`: templated as a user + assistant chat;
//! * chat `{"messages": [...], "tools"?: [...]}`: the whole conversation templated;
//! * text `{"text"}`: tokenized with special tokens, EOS appended when missing.
//!
//! With `mask_prompt` the loss covers only the last message: the offset is the token count of
//! the conversation without it (with the generation prompt when the last role is assistant).
//! Batches follow mlx-lm's `iterate_batches`.

use crate::chat::ChatOptions;
use crate::perplexity::SplitMix64;
use crate::tokenizer::Tokenizer;
use oxmx_core::{Array, Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Feature names (mlx-lm's `prompt_feature`, `completion_feature`, `text_feature`,
/// `chat_feature`) and prompt masking.
#[derive(Clone, Debug)]
pub struct DataOptions {
    pub mask_prompt: bool,
    pub prompt_feature: String,
    pub completion_feature: String,
    pub text_feature: String,
    pub chat_feature: String,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            mask_prompt: false,
            prompt_feature: "prompt".into(),
            completion_feature: "completion".into(),
            text_feature: "text".into(),
            chat_feature: "messages".into(),
        }
    }
}

/// The detected record form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Completions,
    Chat,
    Text,
}

/// Tokenized examples: the tokens and the index of the first token the loss covers.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub format: Option<Format>,
    pub examples: Vec<(Vec<u32>, usize)>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.examples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

fn bad(origin: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[data] {origin}: {msg}"))
}

/// Which form `first` has, as mlx-lm's `create_dataset` decides (completions first).
pub fn detect_format(first: &Value, o: &DataOptions) -> Option<Format> {
    let has = |k: &str| first.get(k).is_some();
    if has(&o.prompt_feature) && has(&o.completion_feature) {
        Some(Format::Completions)
    } else if has(&o.chat_feature) {
        Some(Format::Chat)
    } else if has(&o.text_feature) {
        Some(Format::Text)
    } else {
        None
    }
}

/// The template's token ids for `messages` (rendered, then encoded without special tokens, as
/// Hugging Face's `apply_chat_template(tokenize=True)`).
fn template_ids(tok: &Tokenizer, messages: &[Value], tools: Option<&Value>, gen_prompt: bool) -> Result<Vec<u32>> {
    let opts = ChatOptions { tools: tools.and_then(|t| t.as_array().cloned()), add_generation_prompt: gen_prompt, ..Default::default() };
    let text = tok.chat_template(None)?.apply(messages, &opts)?;
    tok.encode(&text, false)
}

/// Tokenizes one record of form `f`; `origin` names it in errors (`train.jsonl:3`).
pub fn process(tok: &Tokenizer, rec: &Value, f: Format, o: &DataOptions, origin: &str) -> Result<(Vec<u32>, usize)> {
    let text_of = |k: &str| -> Result<String> {
        match rec.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(origin, format!("`{k}` must be a string"))),
            None => Err(bad(origin, format!("missing `{k}` (the first record is in {f:?} form)"))),
        }
    };
    let tools = rec.get("tools").filter(|t| !t.is_null());
    match f {
        Format::Text => {
            let mut ids = tok.encode(&text_of(&o.text_feature)?, true)?;
            if let Some(&eos) = tok.eos_token_ids().first() {
                if ids.last() != Some(&eos) {
                    ids.push(eos);
                }
            }
            Ok((ids, 0))
        }
        Format::Completions => {
            let messages = vec![
                json!({"role": "user", "content": text_of(&o.prompt_feature)?}),
                json!({"role": "assistant", "content": text_of(&o.completion_feature)?}),
            ];
            let ids = template_ids(tok, &messages, tools, false)?;
            let offset = if o.mask_prompt { template_ids(tok, &messages[..1], tools, true)?.len() } else { 0 };
            Ok((ids, offset))
        }
        Format::Chat => {
            let messages = match rec.get(&o.chat_feature) {
                Some(Value::Array(m)) if !m.is_empty() => m.clone(),
                _ => return Err(bad(origin, format!("`{}` must be a non-empty list of messages", o.chat_feature))),
            };
            let ids = template_ids(tok, &messages, tools, false)?;
            let offset = if o.mask_prompt {
                let last_is_assistant = messages.last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("assistant");
                template_ids(tok, &messages[..messages.len() - 1], tools, last_is_assistant)?.len()
            } else {
                0
            };
            Ok((ids, offset))
        }
    }
}

/// Reads and tokenizes one jsonl file; `None` when it does not exist. Blank lines are skipped.
pub fn load_jsonl(path: &Path, tok: &Tokenizer, o: &DataOptions) -> Result<Option<Dataset>> {
    if !path.exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("[data] cannot read {name}: {e}")))?;
    let mut format = None;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = format!("{name}:{}", i + 1);
        let rec: Value = serde_json::from_str(line).map_err(|e| bad(&origin, format!("not JSON: {e}")))?;
        let f = match format {
            Some(f) => f,
            None => {
                let f = detect_format(&rec, o).ok_or_else(|| {
                    bad(
                        &origin,
                        format!(
                            "unsupported data format: expected `{}`+`{}`, `{}` or `{}` keys",
                            o.prompt_feature, o.completion_feature, o.chat_feature, o.text_feature
                        ),
                    )
                })?;
                if f == Format::Text && o.mask_prompt {
                    return Err(bad(&origin, "prompt masking is not supported for text data"));
                }
                format = Some(f);
                f
            }
        };
        examples.push(process(tok, &rec, f, o, &origin)?);
    }
    Ok(Some(Dataset { format, examples }))
}

/// mlx-lm's `load_local_dataset`: (train, valid, test) from `<dir>/{train,valid,test}.jsonl`.
pub fn load_local_dataset(dir: &Path, tok: &Tokenizer, o: &DataOptions) -> Result<(Option<Dataset>, Option<Dataset>, Option<Dataset>)> {
    if !dir.is_dir() {
        return Err(Error::io(format!("[data] {} is not a folder with train/valid/test.jsonl", dir.display())));
    }
    Ok((
        load_jsonl(&dir.join("train.jsonl"), tok, o)?,
        load_jsonl(&dir.join("valid.jsonl"), tok, o)?,
        load_jsonl(&dir.join("test.jsonl"), tok, o)?,
    ))
}

/// One padded batch: `tokens [B, T]` int32 (zero padded) and `lengths [B, 2]` int32 holding each
/// row's (offset, length), as mlx-lm's `iterate_batches` yields them.
#[derive(Clone, Debug)]
pub struct Batch {
    pub tokens: Array,
    pub lengths: Array,
    /// Rows whose example was longer than the limit and was truncated.
    pub truncated: usize,
}

/// The batches of one pass: examples grouped by length, the groups in a seeded random order.
/// Padding goes to one plus a multiple of 32, capped at `max_seq_length`; longer examples are
/// truncated. mlx-lm drops the last incomplete group; so does this.
pub struct BatchIter<'a> {
    data: &'a Dataset,
    groups: Vec<Vec<usize>>,
    order: Vec<usize>,
    pos: usize,
    max_seq_length: usize,
    looping: bool,
    rng: SplitMix64,
}

/// mlx-lm's `iterate_batches(dataset, batch_size, max_seq_length, loop, seed)`.
pub fn iterate_batches(data: &Dataset, batch_size: usize, max_seq_length: usize, looping: bool, seed: u64) -> Result<BatchIter<'_>> {
    if batch_size == 0 {
        return Err(Error::invalid("[data] batch_size must be at least 1"));
    }
    if data.len() < batch_size {
        return Err(Error::invalid(format!(
            "[data] the dataset must have at least batch_size={batch_size} examples but only has {}",
            data.len()
        )));
    }
    let mut idx: Vec<usize> = (0..data.len()).collect();
    idx.sort_by_key(|&i| data.examples[i].0.len());
    let groups: Vec<Vec<usize>> = idx.chunks_exact(batch_size).map(|c| c.to_vec()).collect();
    let mut rng = SplitMix64::new(seed);
    let order = rng.permutation(groups.len());
    Ok(BatchIter { data, groups, order, pos: 0, max_seq_length, looping, rng })
}

impl Iterator for BatchIter<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.pos == self.order.len() {
            if !self.looping {
                return None;
            }
            self.order = self.rng.permutation(self.groups.len());
            self.pos = 0;
        }
        let group = &self.groups[self.order[self.pos]];
        self.pos += 1;
        let longest = group.iter().map(|&i| self.data.examples[i].0.len()).max().unwrap_or(0);
        let width = (1 + 32 * longest.div_ceil(32)).min(self.max_seq_length);
        let mut tokens = vec![0i32; group.len() * width];
        let mut lengths = Vec::with_capacity(group.len() * 2);
        let mut truncated = 0;
        for (r, &i) in group.iter().enumerate() {
            let (ids, offset) = &self.data.examples[i];
            let n = ids.len().min(self.max_seq_length);
            truncated += usize::from(ids.len() > n);
            for (t, &id) in ids[..n].iter().enumerate() {
                tokens[r * width + t] = id as i32;
            }
            lengths.extend([*offset as i32, n as i32]);
        }
        Some(Batch {
            tokens: Array::from_slice(&tokens, &[group.len(), width]),
            lengths: Array::from_slice(&lengths, &[group.len(), 2]),
            truncated,
        })
    }
}
