//! Sampling in mlx-lm's order (`sample_utils.make_sampler`): at temperature 0 the argmax;
//! otherwise top-p, min-p, XTC and top-k mask the *untempered* log-probabilities to -inf, then a
//! categorical draw of `logprobs / temp`. Logits processors (`make_logits_processors`): logit
//! bias, repetition penalty (sign-aware, over the last `context_size` tokens), presence and
//! frequency penalties.
//!
//! Randomness comes from oxmx's `random` keys: with a seed, each draw splits the sampler's own key
//! (reproducible); without one, the global key sequence is used.

use oxmx_core::{ops, random, Array, Dtype, Error, Result};
use std::collections::BTreeMap;

const NEG_INF: f64 = f64::NEG_INFINITY;

/// Sampler settings, with mlx-lm's defaults.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    pub temp: f64,
    pub top_p: f64,
    pub min_p: f64,
    pub min_tokens_to_keep: usize,
    pub top_k: usize,
    pub xtc_probability: f64,
    pub xtc_threshold: f64,
    pub xtc_special_tokens: Vec<u32>,
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.0,
            top_p: 0.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            top_k: 0,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            xtc_special_tokens: vec![],
            seed: None,
        }
    }
}

/// Keeps tokens whose cumulative probability (ascending order) exceeds `1 - top_p`.
pub fn apply_top_p(logprobs: &Array, top_p: f64) -> Array {
    let probs = ops::exp(logprobs);
    let sorted_idx = ops::argsort(logprobs, Some(-1));
    let sorted_probs = ops::take_along_axis(&probs, &sorted_idx, Some(-1));
    let cum = ops::cumsum(&sorted_probs, Some(-1), false, true);
    let inverse = inverse_permutation(&sorted_idx);
    let cum = ops::take_along_axis(&cum, &inverse, Some(-1));
    ops::where_(&ops::greater(&cum, 1.0 - top_p), logprobs, NEG_INF)
}

/// `inverse[perm[i]] = i` along the last axis.
fn inverse_permutation(perm: &Array) -> Array {
    let v = perm.shape()[perm.ndim() - 1];
    let ar = ops::broadcast_to(&ops::arange_n(v, Some(perm.dtype())), perm.shape());
    ops::put_along_axis(&ops::zeros_like(perm), perm, &ar, Some(-1))
}

/// Drops tokens with logprob < max + ln(min_p), always keeping the `min_tokens_to_keep` best.
pub fn apply_min_p(logprobs: &Array, min_p: f64, min_tokens_to_keep: usize) -> Array {
    let v = logprobs.shape()[logprobs.ndim() - 1];
    let sorted_idx = ops::argsort(&ops::negative(logprobs), Some(-1));
    let sorted = ops::take_along_axis(logprobs, &sorted_idx, Some(-1));
    let top = ops::max(logprobs, -1isize, true);
    let remove = ops::less(&sorted, &(&top + min_p.ln()));
    // Positions < min_tokens_to_keep in sorted order are never removed.
    let keep_first = ops::less(&ops::arange_n(v, Some(Dtype::Int32)), min_tokens_to_keep as i64);
    let remove = ops::logical_and(&remove, &ops::logical_not(&keep_first));
    let selected = ops::where_(&remove, NEG_INF, &sorted);
    ops::take_along_axis(&selected, &inverse_permutation(&sorted_idx), Some(-1))
}

/// Masks everything outside the `k` largest.
pub fn apply_top_k(logprobs: &Array, k: usize) -> Array {
    let v = logprobs.shape()[logprobs.ndim() - 1];
    let part = ops::argpartition(&ops::negative(logprobs), (k as isize) - 1, Some(-1));
    let nd = logprobs.ndim();
    let mut specs = vec![ops::SliceSpec::FULL; nd];
    specs[nd - 1] = ops::SliceSpec::new(Some(k as isize), Some(v as isize), 1);
    let drop = ops::slice(&part, &specs);
    ops::put_along_axis(logprobs, &drop, &ops::full(&[1], NEG_INF, Some(logprobs.dtype())), Some(-1))
}

/// XTC ("exclude top choices"): with probability `p`, removes every token above `threshold`
/// except the least likely of them; `special` tokens are never removed. `u` is the uniform draw.
pub fn apply_xtc(logits: &Array, u: &Array, p: f64, threshold: f64, special: &[u32]) -> Array {
    let probs = ops::softmax(logits, -1isize, true);
    let above_min = ops::min(&ops::where_(&ops::greater(&probs, threshold), &probs, f64::INFINITY), -1isize, true);
    let mut mask = ops::greater(&probs, &above_min);
    if !special.is_empty() {
        let v = logits.shape()[logits.ndim() - 1];
        let mut exempt = vec![false; v];
        for &t in special {
            if (t as usize) < v {
                exempt[t as usize] = true;
            }
        }
        mask = ops::logical_and(&mask, &ops::logical_not(&Array::vec(&exempt)));
    }
    ops::where_(&ops::greater(u, p), logits, &ops::where_(&mask, NEG_INF, logits))
}

/// A configured sampler: `sample(logprobs [B, V]) -> token ids [B]` (uint32).
pub struct Sampler {
    pub config: SamplerConfig,
    key: Option<Array>,
}

impl Sampler {
    /// Validates the ranges mlx-lm checks.
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        let c = &config;
        let bad = |m: String| Err(Error::invalid(format!("[sampler] {m}")));
        if !(c.temp >= 0.0) {
            return bad(format!("temp must be >= 0, got {}", c.temp));
        }
        if !(0.0..=1.0).contains(&c.top_p) {
            return bad(format!("top_p must be in [0, 1], got {}", c.top_p));
        }
        if !(0.0..=1.0).contains(&c.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", c.min_p));
        }
        if !(0.0..=0.5).contains(&c.xtc_threshold) {
            return bad(format!("xtc_threshold must be in [0, 0.5], got {}", c.xtc_threshold));
        }
        if !(0.0..=1.0).contains(&c.xtc_probability) {
            return bad(format!("xtc_probability must be in [0, 1], got {}", c.xtc_probability));
        }
        let key = c.seed.map(random::key);
        Ok(Sampler { config, key })
    }

    /// Greedy sampler (temperature 0).
    pub fn greedy() -> Sampler {
        Sampler { config: SamplerConfig::default(), key: None }
    }

    /// The next subkey (own sequence when seeded).
    fn next_key(&mut self) -> Option<Array> {
        let k = self.key.as_ref()?;
        let ks = random::split(k, 2);
        let next = ops::reshape(&ops::slice_range(&ks, &[0, 0], &[1, 2]), &[2]);
        let sub = ops::reshape(&ops::slice_range(&ks, &[1, 0], &[2, 2]), &[2]);
        self.key = Some(next);
        Some(sub)
    }

    /// The filters applied to `logprobs`, before temperature (what `sample` draws from, times
    /// `1 / temp`).
    pub fn filtered(&mut self, logprobs: &Array) -> Array {
        let c = self.config.clone();
        let v = logprobs.shape().last().copied().unwrap_or(0);
        let mut x = logprobs.clone();
        if c.top_p > 0.0 && c.top_p < 1.0 {
            x = apply_top_p(&x, c.top_p);
        }
        if c.min_p != 0.0 {
            x = apply_min_p(&x, c.min_p, c.min_tokens_to_keep);
        }
        if c.xtc_probability > 0.0 {
            let k = self.next_key();
            let u = random::uniform(0.0, 1.0, &[], Dtype::Float32, k.as_ref());
            x = apply_xtc(&x, &u, c.xtc_probability, c.xtc_threshold, &c.xtc_special_tokens);
        }
        if c.top_k > 0 {
            if c.top_k >= v {
                // mlx-lm requires 0 < k < V; a k covering the vocabulary masks nothing.
            } else {
                x = apply_top_k(&x, c.top_k);
            }
        }
        x
    }

    pub fn sample(&mut self, logprobs: &Array) -> Array {
        if self.config.temp == 0.0 {
            return ops::argmax(logprobs, Some(-1), false).astype(Dtype::Uint32);
        }
        let x = self.filtered(logprobs);
        let k = self.next_key();
        random::categorical(&(&x * (1.0 / self.config.temp)), -1, None, k.as_ref())
    }
}

/// `f(tokens, logits) -> logits`; `tokens` is the whole history, prompt included.
pub trait LogitsProcessor: Send {
    fn process(&mut self, tokens: &[u32], logits: &Array) -> Array;
}

/// `logits[:, ids] = f(logits[:, ids])` for host-side ids.
fn update_at(logits: &Array, ids: &[u32], f: impl FnOnce(&Array) -> Array) -> Array {
    if ids.is_empty() {
        return logits.clone();
    }
    let b = logits.shape()[0];
    let idx = ops::broadcast_to(&ops::expand_dims(&Array::vec(ids), &[0]), &[b, ids.len()]);
    let sel = ops::take_along_axis(logits, &idx, Some(-1));
    ops::put_along_axis(logits, &idx, &f(&sel), Some(-1))
}

fn window(tokens: &[u32], n: usize) -> &[u32] {
    &tokens[tokens.len().saturating_sub(n)..]
}

fn unique(tokens: &[u32]) -> Vec<u32> {
    let mut v = tokens.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Adds a bias per token id.
pub struct LogitBias {
    pub ids: Vec<u32>,
    pub values: Vec<f32>,
}

impl LogitsProcessor for LogitBias {
    fn process(&mut self, _tokens: &[u32], logits: &Array) -> Array {
        let vals = Array::vec(&self.values);
        update_at(logits, &self.ids, |s| s + &vals)
    }
}

/// Positive logits divided by `penalty`, negative ones multiplied, once per distinct token of
/// the last `context_size`.
pub struct RepetitionPenalty {
    pub penalty: f64,
    pub context_size: usize,
}

impl LogitsProcessor for RepetitionPenalty {
    fn process(&mut self, tokens: &[u32], logits: &Array) -> Array {
        let ids = unique(window(tokens, self.context_size));
        let p = self.penalty;
        update_at(logits, &ids, |s| ops::where_(&ops::less(s, 0.0), &(s * p), &(s * (1.0 / p))))
    }
}

/// Subtracts `penalty` once for each distinct token of the last `context_size`.
pub struct PresencePenalty {
    pub penalty: f64,
    pub context_size: usize,
}

impl LogitsProcessor for PresencePenalty {
    fn process(&mut self, tokens: &[u32], logits: &Array) -> Array {
        let ids = unique(window(tokens, self.context_size));
        let p = self.penalty;
        update_at(logits, &ids, |s| s - p)
    }
}

/// Subtracts `penalty` once per occurrence in the last `context_size`.
pub struct FrequencyPenalty {
    pub penalty: f64,
    pub context_size: usize,
}

impl LogitsProcessor for FrequencyPenalty {
    fn process(&mut self, tokens: &[u32], logits: &Array) -> Array {
        let mut counts: BTreeMap<u32, f32> = BTreeMap::new();
        for &t in window(tokens, self.context_size) {
            *counts.entry(t).or_default() += 1.0;
        }
        let ids: Vec<u32> = counts.keys().copied().collect();
        let sub: Vec<f32> = counts.values().map(|c| c * self.penalty as f32).collect();
        let sub = Array::vec(&sub);
        update_at(logits, &ids, |s| s - &sub)
    }
}

/// `make_logits_processors` options (mlx-lm's defaults: context sizes 20).
#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    pub logit_bias: Vec<(u32, f32)>,
    pub repetition_penalty: Option<f64>,
    pub repetition_context_size: usize,
    pub presence_penalty: Option<f64>,
    pub presence_context_size: usize,
    pub frequency_penalty: Option<f64>,
    pub frequency_context_size: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            logit_bias: vec![],
            repetition_penalty: None,
            repetition_context_size: 20,
            presence_penalty: None,
            presence_context_size: 20,
            frequency_penalty: None,
            frequency_context_size: 20,
        }
    }
}

/// The processors in mlx-lm's order: logit bias, repetition, presence, frequency.
pub fn make_logits_processors(c: &ProcessorConfig) -> Vec<Box<dyn LogitsProcessor>> {
    let mut v: Vec<Box<dyn LogitsProcessor>> = Vec::new();
    if !c.logit_bias.is_empty() {
        v.push(Box::new(LogitBias { ids: c.logit_bias.iter().map(|x| x.0).collect(), values: c.logit_bias.iter().map(|x| x.1).collect() }));
    }
    if let Some(p) = c.repetition_penalty.filter(|&p| p != 0.0) {
        v.push(Box::new(RepetitionPenalty { penalty: p, context_size: c.repetition_context_size }));
    }
    if let Some(p) = c.presence_penalty.filter(|&p| p != 0.0) {
        v.push(Box::new(PresencePenalty { penalty: p, context_size: c.presence_context_size }));
    }
    if let Some(p) = c.frequency_penalty.filter(|&p| p != 0.0) {
        v.push(Box::new(FrequencyPenalty { penalty: p, context_size: c.frequency_context_size }));
    }
    v
}
