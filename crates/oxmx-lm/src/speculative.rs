//! Speculative decoding with a draft model (mlx-lm's `speculative_generate_step`).
//!
//! Each round the draft model proposes `k = min(num_draft, tokens left)` tokens one at a time;
//! the main model then runs once over `[last token] + drafts` and samples `k + 1` tokens with
//! the same sampler. Drafts are accepted while they equal the main model's own sample at that
//! position (exact-match verification, as mlx-lm: every emitted token is the main model's
//! sample, so greedy output is the main model's greedy output); the first mismatch emits the
//! main model's token instead. Both caches are then trimmed back over what was rejected — the
//! draft's by one less, because the draft never processed its own last proposal, which is fed
//! to it at the start of the next round when every draft was accepted.
//!
//! Logits processors see the history position by position (each position's tokens are read
//! before the next is processed); the draft samples without them (it only guesses).

use crate::cache::{eval_cache, maybe_quantize_kv_cache, KvCache};
use crate::generate::{check_inputs, prefill_but_last, FinishReason, GenerateOptions, GenerationStats};
use crate::models::LanguageModel;
use crate::sample::{LogitsProcessor, Sampler};
use oxmx_core::{async_eval, eval, memory, ops, Array, Dtype, Error, Result};
use std::collections::VecDeque;
use std::time::Instant;

/// One generated token of a speculative run.
#[derive(Clone, Debug)]
pub struct SpeculativeToken {
    pub token: u32,
    /// Full-vocabulary log-probabilities `[vocab]` of the main model at temperature 1.
    pub logprobs: Array,
    /// Whether the draft model proposed it (and the main model agreed).
    pub from_draft: bool,
    pub finish_reason: Option<FinishReason>,
}

/// The iterator returned by [`speculative_generate_step`].
pub struct SpeculativeStep<'a> {
    model: &'a dyn LanguageModel,
    draft: &'a dyn LanguageModel,
    cache: &'a mut [Box<dyn KvCache>],
    draft_cache: &'a mut [Box<dyn KvCache>],
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
    num_draft: usize,
    prompt: Vec<u32>,
    /// History for the logits processors (prompt and emitted tokens).
    tokens: Vec<u32>,
    /// Tokens the main model has not processed yet (the last emitted one).
    y: Vec<u32>,
    /// Tokens the draft model has not processed yet.
    draft_y: Vec<u32>,
    ready: VecDeque<SpeculativeToken>,
    n: usize,
    accepted: usize,
    started: Option<Instant>,
    first_token_at: Option<Instant>,
    done: bool,
    stats: GenerationStats,
}

/// Generates after `prompt` with `draft` proposing `num_draft` tokens a round; `cache` and
/// `draft_cache` (one entry per layer of each model, both trimmable) are updated in place and
/// end as plain generation leaves them: every emitted token processed but the last, which is
/// processed too when it is an EOS.
#[allow(clippy::too_many_arguments)]
pub fn speculative_generate_step<'a>(
    model: &'a dyn LanguageModel,
    draft: &'a dyn LanguageModel,
    prompt: &[u32],
    cache: &'a mut [Box<dyn KvCache>],
    draft_cache: &'a mut [Box<dyn KvCache>],
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
    num_draft: usize,
) -> Result<SpeculativeStep<'a>> {
    check_inputs(model, prompt, cache, &opts)?;
    check_inputs(draft, prompt, draft_cache, &opts).map_err(|e| Error::invalid(format!("[speculative] draft model: {}", e.message())))?;
    let (vm, vd) = (model.config().vocab_size, draft.config().vocab_size);
    if vm != vd {
        return Err(Error::invalid(format!(
            "[speculative] the draft model's vocabulary ({vd}) differs from the model's ({vm}): they must share a tokenizer"
        )));
    }
    if num_draft == 0 {
        return Err(Error::invalid("[speculative] num_draft_tokens must be at least 1"));
    }
    for (what, c) in [("model", &*cache), ("draft model", &*draft_cache)] {
        // A rotating cache trims only until it wraps, then silently keeps rejected drafts.
        if let Some(l) = c.iter().find(|l| !l.is_trimmable() || l.class_name() == "RotatingKVCache") {
            return Err(Error::invalid(format!(
                "[speculative] the {what}'s cache ({}) cannot be trimmed, which speculative decoding needs (drop max_kv_size)",
                l.class_name()
            )));
        }
    }
    Ok(SpeculativeStep {
        model,
        draft,
        cache,
        draft_cache,
        sampler,
        processors,
        opts,
        num_draft,
        prompt: prompt.to_vec(),
        tokens: prompt.to_vec(),
        y: Vec::new(),
        draft_y: Vec::new(),
        ready: VecDeque::new(),
        n: 0,
        accepted: 0,
        started: None,
        first_token_at: None,
        done: false,
        stats: GenerationStats { prompt_tokens: prompt.len(), ..Default::default() },
    })
}

fn ids_array(ids: &[u32]) -> Array {
    let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&v, &[1, v.len()])
}

/// The last `n` positions of `[1, L, V]` logits as `[n, V]`.
fn last_rows(logits: &Array, n: usize) -> Array {
    let (l, v) = (logits.shape()[1] as isize, logits.shape()[2] as isize);
    ops::reshape(&ops::slice_range(logits, &[0, l - n as isize, 0], &[1, l, v]), &[n as isize, v])
}

impl SpeculativeStep<'_> {
    /// Statistics so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// Emitted tokens that came from the draft model.
    pub fn accepted_draft_tokens(&self) -> usize {
        self.accepted
    }

    fn quantize(&mut self) -> Result<()> {
        let o = &self.opts;
        maybe_quantize_kv_cache(self.cache, o.kv_bits, o.kv_group_size, o.quantized_kv_start)?;
        maybe_quantize_kv_cache(self.draft_cache, o.kv_bits, o.kv_group_size, o.quantized_kv_start)
    }

    /// `k` draft proposals (lazy ids `[1]` each, started as they are built).
    fn propose(&mut self, k: usize) -> Vec<Array> {
        let mut input = ids_array(&self.draft_y);
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let logits = last_rows(&self.draft.forward(&input, Some(&mut *self.draft_cache)), 1);
            let lp = &logits - &ops::logsumexp(&logits, -1isize, true);
            let d = self.sampler.sample(&lp);
            async_eval(&[&d]);
            input = ops::reshape(&d.astype(Dtype::Int32), &[1, 1]);
            out.push(d);
        }
        out
    }

    /// The main model over `y + drafts`: its `k + 1` sampled ids and their logprobs `[k+1, V]`.
    fn verify(&mut self, drafts: &[Array]) -> Result<(Vec<u32>, Array)> {
        let k = drafts.len();
        let mut parts = vec![ops::reshape(&ids_array(&self.y), &[-1])];
        parts.extend(drafts.iter().map(|d| ops::reshape(&d.astype(Dtype::Int32), &[-1])));
        let input = ops::reshape(&ops::concatenate(&parts, 0), &[1, -1]);
        let logits = last_rows(&self.model.forward(&input, Some(&mut *self.cache)), k + 1);
        if self.processors.is_empty() {
            let lp = &logits - &ops::logsumexp(&logits, -1isize, true);
            let t = self.sampler.sample(&lp);
            eval(&[&t, &lp])?;
            return Ok((t.to_vec::<u32>()?, lp));
        }
        // Position by position: each processor sees the history up to that position.
        let mut history = self.tokens.clone();
        let (mut toks, mut lps) = (Vec::with_capacity(k + 1), Vec::with_capacity(k + 1));
        for i in 0..=k {
            let mut row = ops::slice_range(&logits, &[i as isize, 0], &[i as isize + 1, logits.shape()[1] as isize]);
            for p in self.processors.iter_mut() {
                row = p.process(&history, &row);
            }
            let lp = &row - &ops::logsumexp(&row, -1isize, true);
            let t = self.sampler.sample(&lp);
            eval(&[&t, &lp])?;
            let t = t.to_vec::<u32>()?[0];
            history.push(t);
            toks.push(t);
            lps.push(lp);
        }
        Ok((toks, ops::concatenate(&lps, 0)))
    }

    /// One round: proposals, verification, the emitted tokens queued, caches trimmed.
    fn round(&mut self) -> Result<()> {
        let left = self.opts.max_tokens.map_or(usize::MAX, |m| m - self.n);
        let k = self.num_draft.min(left);
        let drafts = self.propose(k);
        let (main, lp) = self.verify(&drafts)?;
        self.quantize()?;
        let mut drafted = Vec::with_capacity(k);
        for d in &drafts {
            drafted.push(d.to_vec::<u32>()?[0]);
        }
        if self.first_token_at.is_none() {
            let now = Instant::now();
            self.first_token_at = Some(now);
            self.stats.prompt_time = (now - self.started.unwrap_or(now)).as_secs_f64();
            self.stats.prompt_tps = self.prompt.len() as f64 / self.stats.prompt_time.max(1e-9);
        }
        let v = lp.shape()[1] as isize;
        // Accepted drafts, then the main model's token at the first mismatch (or after them all).
        let mut agreed = 0;
        while agreed < k && main[agreed] == drafted[agreed] {
            agreed += 1;
        }
        let mut emitted = 0;
        for i in 0..=agreed {
            if self.done {
                break;
            }
            let token = main[i];
            self.n += 1;
            emitted += 1;
            let finish = self.opts.finish_reason(token, self.n);
            self.done = finish.is_some();
            let from_draft = i < agreed;
            self.accepted += from_draft as usize;
            self.tokens.push(token);
            let logprobs = ops::reshape(&ops::slice_range(&lp, &[i as isize, 0], &[i as isize + 1, v]), &[v]);
            self.ready.push_back(SpeculativeToken { token, logprobs, from_draft, finish_reason: finish });
        }
        // The main model processed y and all k drafts; keep y and the emitted drafts (the last
        // emitted token is processed next round, as plain generation leaves it).
        let kept_drafts = emitted - 1;
        crate::cache::trim_prompt_cache(self.cache, k - kept_drafts);
        // The draft processed draft_y and its first k - 1 proposals.
        crate::cache::trim_prompt_cache(self.draft_cache, (k - 1).saturating_sub(kept_drafts));
        let next = *self.tokens.last().unwrap_or(&0);
        self.draft_y = if kept_drafts == k && k > 0 { vec![drafted[k - 1], next] } else { vec![next] };
        self.y = vec![next];
        if self.ready.back().is_some_and(|t| t.finish_reason == Some(FinishReason::Stop)) {
            // Plain generation has already run the step after the EOS when it reads it (its loop
            // is pipelined), so its cache holds the EOS: the same here, for a chat that continues.
            let _ = self.model.forward(&ids_array(&self.y), Some(&mut *self.cache));
            let _ = self.draft.forward(&ids_array(&self.draft_y), Some(&mut *self.draft_cache));
            self.quantize()?;
        }
        eval_cache(self.cache)?;
        eval_cache(self.draft_cache)?;
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<SpeculativeToken>> {
        if let Some(t) = self.ready.pop_front() {
            return Ok(Some(self.account(t)));
        }
        if self.done || self.opts.max_tokens == Some(0) {
            self.done = true;
            return Ok(None);
        }
        if self.started.is_none() {
            self.started = Some(Instant::now());
            memory::reset_peak_memory();
            let last = prefill_but_last(self.model, self.cache, &self.prompt, &self.opts)?;
            prefill_but_last(self.draft, self.draft_cache, &self.prompt, &self.opts)?;
            self.y = vec![last];
            self.draft_y = vec![last];
        }
        self.round()?;
        Ok(self.ready.pop_front().map(|t| self.account(t)))
    }

    fn account(&mut self, t: SpeculativeToken) -> SpeculativeToken {
        let emitted = self.n - self.ready.len();
        let since = self.first_token_at.map_or(0.0, |f| f.elapsed().as_secs_f64());
        self.stats.generation_tokens = emitted;
        self.stats.generation_time = since;
        self.stats.generation_tps = if since > 0.0 { emitted.saturating_sub(1) as f64 / since } else { 0.0 };
        self.stats.peak_memory = memory::peak_memory();
        if emitted % 256 == 0 {
            memory::clear_cache();
        }
        t
    }
}

impl Iterator for SpeculativeStep<'_> {
    type Item = Result<SpeculativeToken>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.advance();
        if r.is_err() {
            // An error ends the run; tokens queued from the failed round are not handed out.
            self.done = true;
            self.ready.clear();
        }
        r.transpose()
    }
}
