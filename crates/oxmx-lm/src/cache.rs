//! KV caches (mlx-lm's `models/cache.py`): the standard cache, preallocated in steps of 256
//! positions and filled by slice updates, and the rotating cache of `max_kv_size` positions that
//! keeps the first `keep` (attention-sink) tokens. Both sit behind [`KvCache`] so a quantized cache
//! can follow.
//!
//! The cache drops its handle to the previous buffer before the update is evaluated, so the
//! core's buffer donation writes the new positions in place (no copy of the filled cache per
//! step) as long as nobody else holds the fetched keys/values past the step.

use ops::SliceSpec;
use oxmx_core::{ops, Array, Dtype, Result};

/// One layer's cache. Keys and values are `[B, n_kv_heads, L, head_dim]`.
pub trait KvCache: Send + Sync {
    /// Tokens seen so far (positions given to RoPE).
    fn offset(&self) -> usize;
    /// Appends `L` new positions and returns the keys and values to attend over.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> (Array, Array);
    /// The additive/boolean attention mask for `n` new queries, computed *before* the update;
    /// `None` means plain causal (or no mask when `n == 1`).
    fn make_mask(&self, n: usize) -> Option<Array>;
    /// The arrays that hold the state (evaluated between prefill chunks).
    fn state(&self) -> Vec<Array>;
    fn is_trimmable(&self) -> bool;
    /// Removes the last `n` positions; returns how many were removed.
    fn trim(&mut self, n: usize) -> usize;
    /// mlx-lm's class name (`KVCache`, `RotatingKVCache`), for prompt-cache files.
    fn class_name(&self) -> &'static str;
}

/// A model's cache: one entry per layer.
pub type PromptCache = Vec<Box<dyn KvCache>>;

/// `mask[i, j] = j <= offset + i` (and `j > offset + i - window` with a window): boolean
/// `[n, offset + n]`, true = attend.
pub fn create_causal_mask(n: usize, offset: usize, window_size: Option<usize>) -> Array {
    let rinds = ops::arange_n(offset + n, Some(Dtype::Int32));
    let linds = &ops::arange_n(n, Some(Dtype::Int32)) + offset as i64;
    let linds = ops::expand_dims(&linds, &[1]);
    let rinds = ops::expand_dims(&rinds, &[0]);
    let mut mask = ops::greater_equal(&linds, &rinds);
    if let Some(w) = window_size {
        mask = ops::logical_and(&mask, &ops::less(&linds, &(&rinds + w as i64)));
    }
    mask
}

/// Keys and values must be `[B, heads, L, head_dim]`.
fn check_kv_rank(cache: &str, keys: &Array, values: &Array) -> Result<()> {
    if keys.ndim() != 4 || values.ndim() != 4 {
        return Err(oxmx_core::Error::invalid(format!(
            "[{cache}] keys and values must be [B, heads, L, head_dim], got {:?} and {:?}",
            keys.shape(),
            values.shape()
        )));
    }
    Ok(())
}

fn seq_slice(a: &Array, start: usize, stop: usize) -> Array {
    ops::slice(a, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(start as isize), Some(stop as isize), 1), SliceSpec::FULL])
}

fn seq_update(a: &Array, u: &Array, start: usize) -> Array {
    let stop = start + u.shape()[2];
    ops::slice_update(
        a,
        u,
        &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(start as isize), Some(stop as isize), 1), SliceSpec::FULL],
    )
}

/// The standard growing cache (`KVCache`).
#[derive(Clone, Default)]
pub struct KVCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: usize,
}

impl KVCache {
    /// Positions are allocated in blocks of this many (mlx-lm's `step`).
    pub const STEP: usize = 256;

    pub fn new() -> KVCache {
        KVCache::default()
    }
}

impl KvCache for KVCache {
    fn offset(&self) -> usize {
        self.offset
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        if let Err(e) = check_kv_rank("KVCache", keys, values) {
            return (Array::error(e.clone()), Array::error(e));
        }
        let prev = self.offset;
        let n = keys.shape()[2];
        let cap = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || prev + n > cap {
            let n_steps = (Self::STEP + n - 1) / Self::STEP;
            let grow = |cur: &Option<Array>, new: &Array| {
                let mut shape = new.shape().to_vec();
                shape[2] = n_steps * Self::STEP;
                let fresh = ops::zeros(&shape, new.dtype());
                match cur {
                    // Drop the unfilled tail before appending a new block.
                    Some(c) => ops::concatenate(&[seq_slice(c, 0, prev), fresh], 2),
                    None => fresh,
                }
            };
            self.keys = Some(grow(&self.keys, keys));
            self.values = Some(grow(&self.values, values));
        }
        self.offset += n;
        let k = seq_update(self.keys.as_ref().unwrap(), keys, prev);
        let v = seq_update(self.values.as_ref().unwrap(), values, prev);
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        (seq_slice(&k, 0, self.offset), seq_slice(&v, 0, self.offset))
    }

    fn make_mask(&self, _n: usize) -> Option<Array> {
        None
    }

    fn state(&self) -> Vec<Array> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => vec![k.clone(), v.clone()],
            _ => vec![],
        }
    }

    fn is_trimmable(&self) -> bool {
        true
    }

    fn trim(&mut self, n: usize) -> usize {
        let n = n.min(self.offset);
        self.offset -= n;
        n
    }

    fn class_name(&self) -> &'static str {
        "KVCache"
    }
}

/// A cache of at most `max_size` positions that keeps the first `keep` tokens and overwrites the
/// oldest of the rest (`RotatingKVCache`). Multi-token updates concatenate in temporal order and
/// trim (attention then uses a sliding-window mask); single-token updates write in place in a ring.
#[derive(Clone)]
pub struct RotatingKVCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: usize,
    max_size: usize,
    keep: usize,
    /// Next write position in the ring.
    idx: usize,
}

impl RotatingKVCache {
    pub fn new(max_size: usize, keep: usize) -> RotatingKVCache {
        let max_size = max_size.max(1);
        RotatingKVCache { keys: None, values: None, offset: 0, max_size, keep: keep.min(max_size.saturating_sub(1)), idx: 0 }
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// `[0, keep) ++ [trim + keep, len) ++ append` along the sequence axis.
    fn trim_concat(&self, a: &Array, trim: usize, append: Option<&Array>) -> Array {
        let len = a.shape()[2];
        let mut parts = Vec::new();
        if trim > 0 {
            parts.push(seq_slice(a, 0, self.keep));
            parts.push(seq_slice(a, (trim + self.keep).min(len), len));
        } else {
            parts.push(a.clone());
        }
        if let Some(x) = append {
            parts.push(x.clone());
        }
        ops::concatenate(&parts, 2)
    }

    /// The ring rearranged in temporal order.
    fn temporal_order(&self, a: &Array) -> Array {
        let len = a.shape()[2];
        if self.idx == len {
            a.clone()
        } else if self.idx < self.offset {
            ops::concatenate(&[seq_slice(a, 0, self.keep), seq_slice(a, self.idx, len), seq_slice(a, self.keep, self.idx)], 2)
        } else {
            seq_slice(a, 0, self.idx)
        }
    }

    fn update_concat(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        let n = keys.shape()[2];
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => {
                let k = self.temporal_order(k);
                let v = self.temporal_order(v);
                self.idx = k.shape()[2];
                // Keep max_size - 1 old positions so the newest query sees a full window.
                let trim = (self.idx + 1).saturating_sub(self.max_size);
                let k = self.trim_concat(&k, trim, Some(keys));
                let v = self.trim_concat(&v, trim, Some(values));
                self.keys = Some(k);
                self.values = Some(v);
            }
            _ => {
                self.keys = Some(keys.clone());
                self.values = Some(values.clone());
            }
        }
        self.offset += n;
        self.idx = self.keys.as_ref().unwrap().shape()[2];
        (self.keys.clone().unwrap(), self.values.clone().unwrap())
    }

    fn update_in_place(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        let prev = self.offset;
        let cap = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.keys.is_none() || (prev >= cap && cap < self.max_size) {
            let new_size = KVCache::STEP.min(self.max_size - prev.min(self.max_size)).max(1);
            let grow = |cur: &Option<Array>, new: &Array| {
                let mut shape = new.shape().to_vec();
                shape[2] = new_size;
                let fresh = ops::zeros(&shape, new.dtype());
                match cur {
                    Some(c) => ops::concatenate(&[c.clone(), fresh], 2),
                    None => fresh,
                }
            };
            self.keys = Some(grow(&self.keys, keys));
            self.values = Some(grow(&self.values, values));
            self.idx = prev;
        }
        // A previous multi-token update can leave more than max_size positions.
        let len = self.keys.as_ref().unwrap().shape()[2];
        if len > self.max_size {
            let trim = len - self.max_size;
            self.keys = Some(self.trim_concat(self.keys.as_ref().unwrap(), trim, None));
            self.values = Some(self.trim_concat(self.values.as_ref().unwrap(), trim, None));
            self.idx = self.max_size;
        }
        if self.idx == self.max_size {
            self.idx = self.keep;
        }
        let k = seq_update(self.keys.as_ref().unwrap(), keys, self.idx);
        let v = seq_update(self.values.as_ref().unwrap(), values, self.idx);
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        self.offset += 1;
        self.idx += 1;
        if self.offset < self.max_size {
            (seq_slice(&k, 0, self.offset), seq_slice(&v, 0, self.offset))
        } else {
            (k, v)
        }
    }
}

impl KvCache for RotatingKVCache {
    fn offset(&self) -> usize {
        self.offset
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        if let Err(e) = check_kv_rank("RotatingKVCache", keys, values) {
            return (Array::error(e.clone()), Array::error(e));
        }
        if keys.shape()[2] == 1 {
            self.update_in_place(keys, values)
        } else {
            self.update_concat(keys, values)
        }
    }

    fn make_mask(&self, n: usize) -> Option<Array> {
        if n <= 1 {
            // Single-token decode attends over the whole ring; order does not matter after RoPE.
            return None;
        }
        let offset = (self.max_size - 1).min(self.offset);
        if offset + n > self.max_size {
            Some(create_causal_mask(n, offset, Some(self.max_size)))
        } else {
            None
        }
    }

    fn state(&self) -> Vec<Array> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => vec![k.clone(), v.clone()],
            _ => vec![],
        }
    }

    fn is_trimmable(&self) -> bool {
        self.offset < self.max_size
    }

    fn trim(&mut self, n: usize) -> usize {
        if !self.is_trimmable() {
            return 0;
        }
        let n = n.min(self.offset);
        self.offset -= n;
        self.idx -= n.min(self.idx);
        n
    }

    fn class_name(&self) -> &'static str {
        "RotatingKVCache"
    }
}

/// One cache per layer: the model's own (`LanguageModel::make_cache`) when it has one, else a
/// `RotatingKVCache(max_kv_size, keep = 4)` per layer when `max_kv_size` is given, else `KVCache`.
/// Unlike mlx-lm, `max_kv_size` is honoured for every model (mlx-lm issue #118).
pub fn make_prompt_cache(model: &dyn crate::models::LanguageModel, max_kv_size: Option<usize>) -> PromptCache {
    (0..model.num_layers())
        .map(|_| -> Box<dyn KvCache> {
            match max_kv_size {
                Some(m) => Box::new(RotatingKVCache::new(m, 4)),
                None => Box::new(KVCache::new()),
            }
        })
        .collect()
}

/// Evaluates every layer's state (between prefill chunks).
pub fn eval_cache(cache: &[Box<dyn KvCache>]) -> Result<()> {
    let arrays: Vec<Array> = cache.iter().flat_map(|c| c.state()).collect();
    let refs: Vec<&Array> = arrays.iter().collect();
    oxmx_core::eval(&refs)
}

/// Trims every layer by `n` when all can be trimmed; returns the count trimmed.
pub fn trim_prompt_cache(cache: &mut [Box<dyn KvCache>], n: usize) -> usize {
    if !cache.iter().all(|c| c.is_trimmable()) || cache.is_empty() {
        return 0;
    }
    cache.iter_mut().map(|c| c.trim(n)).last().unwrap_or(0)
}
