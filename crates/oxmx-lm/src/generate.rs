//! The generation loop over token ids (mlx-lm's `generate_step`): the prompt is prefilled in
//! chunks of `prefill_step_size` (cache evaluated and allocator cache cleared between chunks),
//! then each step's graph is built and started with `async_eval` *before* the previous token is
//! read, so graph building overlaps the computation. Logprobs are `logits - logsumexp(logits)`
//! after the logits processors and before temperature (reported at T = 1), as mlx-lm.
//!
//! With logits processors the loop reads each token before building the next step (processors
//! see the token history on the host), so it is not pipelined.
//!
//! With `kv_bits`, after every forward pass each layer whose cache holds at least
//! `quantized_kv_start` positions is swapped for a quantized cache (mlx-lm's
//! `maybe_quantize_kv_cache`). `max_tokens: Some(0)` runs the whole prompt through the cache and
//! yields nothing (what `cache-prompt` needs), as mlx-lm's `generate_step`.

use crate::cache::{eval_cache, maybe_quantize_kv_cache, quantized::check_kv_quant, KvCache};
use crate::models::LanguageModel;
use crate::sample::{LogitsProcessor, Sampler};
use oxmx_core::{async_eval, eval, memory, ops, Array, Dtype, Error, Result};
use std::collections::BTreeSet;
use std::time::Instant;

/// Loop options (mlx-lm's defaults).
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// `None`: until EOS.
    pub max_tokens: Option<usize>,
    pub prefill_step_size: usize,
    pub eos_token_ids: BTreeSet<u32>,
    /// Quantize the KV cache to this many bits (`None`: keep it in float).
    pub kv_bits: Option<usize>,
    /// Group size of the KV-cache quantization (mlx-lm's default 64).
    pub kv_group_size: usize,
    /// Quantize a layer's cache once it holds this many positions (the API default 0; the
    /// commands default to mlx-lm's CLI value 5000).
    pub quantized_kv_start: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: Some(256),
            prefill_step_size: 2048,
            eos_token_ids: BTreeSet::new(),
            kv_bits: None,
            kv_group_size: 64,
            quantized_kv_start: 0,
        }
    }
}

impl GenerateOptions {
    /// Whether `token`, the `generated`-th token of a run, ends it: an EOS id, or `max_tokens`.
    pub fn finish_reason(&self, token: u32, generated: usize) -> Option<FinishReason> {
        if self.eos_token_ids.contains(&token) {
            Some(FinishReason::Stop)
        } else if self.max_tokens.is_some_and(|m| generated >= m) {
            Some(FinishReason::Length)
        } else {
            None
        }
    }
}

/// Checks the KV-quantization options against the model and its cache.
pub fn check_kv_options(model: &dyn LanguageModel, cache: &[Box<dyn KvCache>], opts: &GenerateOptions) -> Result<()> {
    let Some(bits) = opts.kv_bits else { return Ok(()) };
    check_kv_quant(opts.kv_group_size, bits, model.config().head_dim)?;
    for c in cache {
        if let Some((g, b)) = c.quantization() {
            if (g, b) != (opts.kv_group_size, bits) {
                return Err(Error::invalid(format!(
                    "[generate] the cache is quantized with group size {g} and {b} bits but kv_group_size {} / kv_bits {bits} were asked",
                    opts.kv_group_size
                )));
            }
        } else if c.class_name() == "RotatingKVCache" {
            return Err(Error::invalid("[generate] kv_bits cannot be used with a rotating cache (max_kv_size)"));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An EOS id was generated (it is the token of this step).
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// One generated token.
#[derive(Clone, Debug)]
pub struct GenerationStep {
    pub token: u32,
    /// Full-vocabulary log-probabilities `[vocab]` at temperature 1.
    pub logprobs: Array,
    pub finish_reason: Option<FinishReason>,
}

/// Timing and memory (mlx-lm's `GenerationResponse` statistics).
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Seconds from the start to the first token.
    pub prompt_time: f64,
    /// Prompt tokens / `prompt_time`.
    pub prompt_tps: f64,
    pub generation_tokens: usize,
    /// Seconds since the first token.
    pub generation_time: f64,
    /// Tokens after the first / `generation_time`.
    pub generation_tps: f64,
    /// `memory::peak_memory()` in bytes.
    pub peak_memory: usize,
}

/// The iterator returned by [`generate_step`].
pub struct GenerateStep<'a> {
    model: &'a dyn LanguageModel,
    cache: &'a mut [Box<dyn KvCache>],
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    /// The step whose token is handed out next (lazy, already started).
    pending: Option<(Array, Array)>,
    n: usize,
    started: Option<Instant>,
    first_token_at: Option<Instant>,
    done: bool,
    stats: GenerationStats,
}

/// The checks every generation loop makes before touching the cache: a non-empty prompt inside
/// the vocabulary, one cache entry per layer, sane options.
pub(crate) fn check_inputs(model: &dyn LanguageModel, prompt: &[u32], cache: &[Box<dyn KvCache>], opts: &GenerateOptions) -> Result<()> {
    if prompt.is_empty() {
        return Err(Error::invalid("[generate] the prompt must have at least one token"));
    }
    if cache.len() != model.num_layers() {
        return Err(Error::invalid(format!("[generate] the cache has {} layers but the model has {}", cache.len(), model.num_layers())));
    }
    if opts.prefill_step_size == 0 {
        return Err(Error::invalid("[generate] prefill_step_size must be positive"));
    }
    let vocab = model.config().vocab_size;
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(format!("[generate] prompt token {t} is outside the vocabulary ({vocab})")));
    }
    check_kv_options(model, cache, opts)
}

/// Generates token ids after `prompt`, updating `cache` in place. Each item is one token with
/// its logprobs; the item that ends the run carries its `finish_reason`.
pub fn generate_step<'a>(
    model: &'a dyn LanguageModel,
    prompt: &[u32],
    cache: &'a mut [Box<dyn KvCache>],
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
) -> Result<GenerateStep<'a>> {
    check_inputs(model, prompt, cache, &opts)?;
    Ok(GenerateStep {
        model,
        cache,
        sampler,
        processors,
        opts,
        prompt: prompt.to_vec(),
        tokens: prompt.to_vec(),
        pending: None,
        n: 0,
        started: None,
        first_token_at: None,
        done: false,
        stats: GenerationStats { prompt_tokens: prompt.len(), ..Default::default() },
    })
}

/// Runs every prompt token but the last through `cache` in chunks of `prefill_step_size`
/// (cache evaluated and the allocator's cache cleared between chunks, KV quantization applied)
/// and returns the last token, which the first decoding step processes (the batched and
/// speculative loops, whose first step is one token per sequence).
pub(crate) fn prefill_but_last(
    model: &dyn LanguageModel,
    cache: &mut [Box<dyn KvCache>],
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Result<u32> {
    let Some((&last, rest)) = prompt.split_last() else {
        return Err(Error::invalid("[generate] the prompt must have at least one token"));
    };
    prefill_chunks(model, cache, rest, opts)?;
    Ok(last)
}

/// Runs the prompt through `cache` in chunks of `prefill_step_size` up to its last chunk (1 to
/// `prefill_step_size` tokens), which it returns for the first step to process with the
/// logits of its last position (mlx-lm's `generate_step` does the same; a separate one-token
/// step would read every weight once more, ~20% of a 512-token prefill of an 8B model on a GPU).
pub(crate) fn prefill_but_last_chunk<'p>(
    model: &dyn LanguageModel,
    cache: &mut [Box<dyn KvCache>],
    prompt: &'p [u32],
    opts: &GenerateOptions,
) -> Result<&'p [u32]> {
    if prompt.is_empty() {
        return Err(Error::invalid("[generate] the prompt must have at least one token"));
    }
    let split = (prompt.len() - 1) / opts.prefill_step_size * opts.prefill_step_size;
    prefill_chunks(model, cache, &prompt[..split], opts)?;
    Ok(&prompt[split..])
}

/// `tokens` through `cache` in chunks of `prefill_step_size`, each evaluated (cache only).
fn prefill_chunks(model: &dyn LanguageModel, cache: &mut [Box<dyn KvCache>], mut rest: &[u32], opts: &GenerateOptions) -> Result<()> {
    while !rest.is_empty() {
        let n = rest.len().min(opts.prefill_step_size);
        let ids: Vec<i32> = rest[..n].iter().map(|&t| t as i32).collect();
        let _ = model.forward(&Array::from_slice(&ids, &[1, n]), Some(&mut *cache));
        maybe_quantize_kv_cache(cache, opts.kv_bits, opts.kv_group_size, opts.quantized_kv_start)?;
        eval_cache(cache)?;
        memory::clear_cache();
        rest = &rest[n..];
    }
    Ok(())
}

impl GenerateStep<'_> {
    /// Statistics so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// Builds one step: `y: [L]` int32 ids -> (next id `[1]` uint32, logprobs `[1, V]`).
    fn step(&mut self, y: &Array) -> (Array, Array) {
        let l = y.shape()[0] as isize;
        let logits = self.model.forward_last(&ops::reshape(y, &[1, l]), Some(&mut *self.cache));
        if let Err(e) = self.maybe_quantize() {
            return (Array::error(e.clone()), Array::error(e));
        }
        let v = logits.shape().last().copied().unwrap_or(0) as isize;
        let mut logits = ops::reshape(&logits, &[1, v]);
        for p in self.processors.iter_mut() {
            logits = p.process(&self.tokens, &logits);
        }
        let logprobs = &logits - &ops::logsumexp(&logits, -1isize, true);
        let next = self.sampler.sample(&logprobs);
        (next, logprobs)
    }

    fn maybe_quantize(&mut self) -> Result<()> {
        maybe_quantize_kv_cache(self.cache, self.opts.kv_bits, self.opts.kv_group_size, self.opts.quantized_kv_start)
    }

    fn prefill(&mut self) -> Result<(Array, Array)> {
        let last = prefill_but_last_chunk(self.model, self.cache, &self.prompt, &self.opts)?;
        let ids: Vec<i32> = last.iter().map(|&t| t as i32).collect();
        Ok(self.step(&Array::vec(&ids)))
    }

    fn advance(&mut self) -> Result<Option<GenerationStep>> {
        if self.done {
            return Ok(None);
        }
        if self.opts.max_tokens == Some(0) {
            // The whole prompt goes into the cache; nothing is generated.
            self.done = true;
            self.started = Some(Instant::now());
            memory::reset_peak_memory();
            let (y, lp) = self.prefill()?;
            eval(&[&y, &lp])?;
            eval_cache(self.cache)?;
            self.stats.prompt_time = self.started.unwrap().elapsed().as_secs_f64();
            self.stats.prompt_tps = self.prompt.len() as f64 / self.stats.prompt_time.max(1e-9);
            self.stats.peak_memory = memory::peak_memory();
            return Ok(None);
        }
        if self.pending.is_none() {
            self.started = Some(Instant::now());
            memory::reset_peak_memory();
            let (y, lp) = self.prefill()?;
            async_eval(&[&y, &lp]);
            self.pending = Some((y, lp));
        }
        let (y, lp) = self.pending.take().unwrap();
        let last = self.opts.max_tokens.is_some_and(|m| self.n + 1 >= m);
        let pipelined = self.processors.is_empty();
        // Build and start the next step from the still-lazy token before reading this one.
        let mut next = None;
        if pipelined && !last {
            let s = self.step(&y.astype(Dtype::Int32));
            async_eval(&[&s.0, &s.1]);
            next = Some(s);
        }
        eval(&[&y, &lp])?;
        let token = y.to_vec::<u32>()?[0];
        self.tokens.push(token);
        if self.n == 0 {
            let now = Instant::now();
            self.first_token_at = Some(now);
            self.stats.prompt_time = (now - self.started.unwrap()).as_secs_f64();
            self.stats.prompt_tps = self.prompt.len() as f64 / self.stats.prompt_time.max(1e-9);
        }
        self.n += 1;
        let finish = self.opts.finish_reason(token, self.n);
        if finish.is_none() {
            self.pending = match next {
                Some(s) => Some(s),
                None => {
                    let s = self.step(&Array::vec(&[token as i32]));
                    async_eval(&[&s.0, &s.1]);
                    Some(s)
                }
            };
        } else {
            self.done = true;
        }
        if self.n % 256 == 0 {
            memory::clear_cache();
        }
        let t = self.first_token_at.unwrap().elapsed().as_secs_f64();
        self.stats.generation_tokens = self.n;
        self.stats.generation_time = t;
        self.stats.generation_tps = if t > 0.0 { (self.n - 1) as f64 / t } else { 0.0 };
        self.stats.peak_memory = memory::peak_memory();
        let v = lp.shape().last().copied().unwrap_or(0) as isize;
        Ok(Some(GenerationStep { token, logprobs: ops::reshape(&lp, &[v]), finish_reason: finish }))
    }
}

impl Iterator for GenerateStep<'_> {
    type Item = Result<GenerationStep>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.advance();
        // An error ends the run.
        self.done |= r.is_err();
        r.transpose()
    }
}

/// Greedy/sampled ids until EOS or `max_tokens` (the EOS id is included when generated).
pub fn generate_ids(
    model: &dyn LanguageModel,
    prompt: &[u32],
    cache: &mut [Box<dyn KvCache>],
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
) -> Result<(Vec<u32>, GenerationStats)> {
    let mut it = generate_step(model, prompt, cache, sampler, processors, opts)?;
    let mut out = Vec::new();
    for s in it.by_ref() {
        out.push(s?.token);
    }
    Ok((out, it.stats().clone()))
}

/// Runs the whole `prompt` through `cache` without generating (mlx-lm's `generate_step` with
/// `max_tokens=0`, what `cache_prompt` does); the statistics carry the prompt speed and peak
/// memory. KV quantization options in `opts` apply.
pub fn prefill_cache(
    model: &dyn LanguageModel,
    prompt: &[u32],
    cache: &mut [Box<dyn KvCache>],
    opts: GenerateOptions,
) -> Result<GenerationStats> {
    let opts = GenerateOptions { max_tokens: Some(0), ..opts };
    let mut it = generate_step(model, prompt, cache, Sampler::greedy(), vec![], opts)?;
    for s in it.by_ref() {
        s?;
    }
    Ok(it.stats().clone())
}
