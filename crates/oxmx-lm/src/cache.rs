//! KV caches (mlx-lm's `models/cache.py`): the standard cache, preallocated in steps of 256
//! positions and filled by slice updates, and the rotating cache of `max_kv_size` positions that
//! keeps the first `keep` (attention-sink) tokens, and (in [`quantized`]) the affine-quantized
//! cache that `--kv-bits` switches to once a layer holds `quantized_kv_start` positions. All sit
//! behind [`KvCache`]; attention asks the cache for a [`FetchedKv`] and runs the plain fused SDPA
//! or [`quantized::quantized_sdpa`] on what comes back.
//!
//! The cache drops its handle to the previous buffer before the update is evaluated, so the
//! core's buffer donation writes the new positions in place (no copy of the filled cache per
//! step) as long as nobody else holds the fetched keys/values past the step.

pub mod quantized;

pub use quantized::{quantized_sdpa, QuantizedKVCache, QuantizedKv};

use ops::SliceSpec;
use oxmx_core::{ops, Array, Dtype, Error, Result};

/// What attention reads after a cache update.
#[derive(Clone, Debug)]
pub enum FetchedKv {
    /// Plain keys and values `[B, Hkv, S, D]`: the fused SDPA runs on them.
    Plain(Array, Array),
    /// Affine-quantized keys and values: attention goes through [`quantized_sdpa`]
    /// (`quantized_matmul` for `q k^T` and for `p v`), never dequantizing the whole cache.
    Quantized(QuantizedKv),
}

/// One entry of a cache's `state` as mlx-lm serializes it in prompt-cache files: arrays, tuples of
/// arrays (a quantized triple), and scalars (offsets, sizes; stored as 0-d arrays plus a note in
/// the metadata). `None` stands for a missing array (an empty cache).
#[derive(Clone, Debug)]
pub enum StateItem {
    Array(Array),
    Arrays(Vec<Array>),
    Int(i64),
    Float(f64),
    Str(String),
    None,
}

impl StateItem {
    pub fn as_int(&self, what: &str) -> Result<i64> {
        match self {
            StateItem::Int(i) => Ok(*i),
            StateItem::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
            other => Err(Error::invalid(format!("[load_prompt_cache] {what} must be an integer, got {other:?}"))),
        }
    }
    pub fn as_usize(&self, what: &str) -> Result<usize> {
        let i = self.as_int(what)?;
        usize::try_from(i).map_err(|_| Error::invalid(format!("[load_prompt_cache] {what} must be non-negative, got {i}")))
    }
    /// An array, or `None` for a missing one.
    pub fn as_array(&self, what: &str) -> Result<Option<Array>> {
        match self {
            StateItem::Array(a) => Ok(Some(a.clone())),
            StateItem::None => Ok(None),
            other => Err(Error::invalid(format!("[load_prompt_cache] {what} must be an array, got {other:?}"))),
        }
    }
}

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

    /// Appends `L` new positions and returns what attention reads: plain keys/values, or the
    /// quantized triples of a [`QuantizedKVCache`]. Attention code calls this (not
    /// [`KvCache::update_and_fetch`]) so that a quantized cache is attended without dequantizing.
    fn update_and_fetch_kv(&mut self, keys: &Array, values: &Array) -> FetchedKv {
        let (k, v) = self.update_and_fetch(keys, values);
        FetchedKv::Plain(k, v)
    }
    /// The quantized copy of this cache (mlx-lm's `to_quantized`); `None` when the cache does
    /// not convert (already quantized), an error when it cannot (a rotating cache).
    fn to_quantized(&self, _group_size: usize, _bits: usize) -> Option<Result<Box<dyn KvCache>>> {
        None
    }
    /// mlx-lm's `state` (the arrays and scalars written to a prompt-cache file, in its order).
    fn file_state(&self) -> Vec<StateItem>;
    /// `(group_size, bits)` when the cache stores quantized keys/values.
    fn quantization(&self) -> Option<(usize, usize)> {
        None
    }
    /// For a cache holding sequences of different lengths in one batch (the server's): the start
    /// position of the `n` new tokens of each row (`[B]` int32, for RoPE) and the attention mask
    /// for them (`None`: plain causal), asked before the update. `None` for single-layout caches.
    fn batch_layout(&self, _n: usize) -> Option<(Array, Option<Array>)> {
        None
    }
    /// Bytes held by the state arrays.
    fn nbytes(&self) -> usize {
        self.state().iter().map(|a| a.nbytes()).sum()
    }
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

    /// A cache holding `keys`/`values` (`[B, Hkv, T, D]`, `T >= offset`) with `offset` positions
    /// filled (mlx-lm's `from_state`).
    pub fn from_state(keys: Option<Array>, values: Option<Array>, offset: usize) -> Result<KVCache> {
        match (&keys, &values) {
            (Some(k), Some(v)) => {
                check_kv_rank("KVCache", k, v)?;
                if k.shape()[2] < offset || v.shape()[2] < offset {
                    return Err(Error::invalid(format!(
                        "[KVCache] offset {offset} exceeds the stored positions (keys {:?}, values {:?})",
                        k.shape(),
                        v.shape()
                    )));
                }
                Ok(KVCache { keys, values, offset })
            }
            (None, None) if offset == 0 => Ok(KVCache::default()),
            _ => Err(Error::invalid("[KVCache] keys and values must both be present (or both absent with offset 0)")),
        }
    }

    /// The filled keys and values (`[B, Hkv, offset, D]`), if any.
    pub fn keys_values(&self) -> Option<(Array, Array)> {
        Some((seq_slice(self.keys.as_ref()?, 0, self.offset), seq_slice(self.values.as_ref()?, 0, self.offset)))
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

    fn to_quantized(&self, group_size: usize, bits: usize) -> Option<Result<Box<dyn KvCache>>> {
        Some(
            QuantizedKVCache::from_plain(self.keys.as_ref().zip(self.values.as_ref()), self.offset, group_size, bits)
                .map(|c| Box::new(c) as Box<dyn KvCache>),
        )
    }

    /// `(keys, values, offset)`; the arrays are cut to `offset` (mlx-lm writes the whole
    /// preallocated buffer; both load the same).
    fn file_state(&self) -> Vec<StateItem> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => vec![
                StateItem::Array(seq_slice(k, 0, self.offset)),
                StateItem::Array(seq_slice(v, 0, self.offset)),
                StateItem::Int(self.offset as i64),
            ],
            _ => vec![StateItem::None, StateItem::None, StateItem::Int(0)],
        }
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

    /// mlx-lm's `from_state`: the ring buffers as saved, with `offset`, `keep`, `max_size` and
    /// the next write index.
    pub fn from_state(
        keys: Option<Array>,
        values: Option<Array>,
        offset: usize,
        keep: usize,
        max_size: usize,
        idx: usize,
    ) -> Result<RotatingKVCache> {
        if max_size == 0 || (keep > 0 && keep >= max_size) {
            return Err(Error::invalid(format!("[RotatingKVCache] invalid keep {keep} / max_size {max_size}")));
        }
        match (&keys, &values) {
            (Some(k), Some(v)) => {
                check_kv_rank("RotatingKVCache", k, v)?;
                if idx > k.shape()[2] || k.shape()[2] != v.shape()[2] {
                    return Err(Error::invalid(format!(
                        "[RotatingKVCache] write index {idx} does not fit keys {:?} / values {:?}",
                        k.shape(),
                        v.shape()
                    )));
                }
            }
            (None, None) => {}
            _ => return Err(Error::invalid("[RotatingKVCache] keys and values must both be present or both absent")),
        }
        Ok(RotatingKVCache { keys, values, offset, max_size, keep, idx })
    }

    pub fn keep(&self) -> usize {
        self.keep
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

    fn to_quantized(&self, _group_size: usize, _bits: usize) -> Option<Result<Box<dyn KvCache>>> {
        Some(Err(Error::invalid("[RotatingKVCache] a rotating cache (--max-kv-size) cannot be quantized (--kv-bits)")))
    }

    /// `(keys, values, offset, keep, max_size, idx)`, mlx-lm's order.
    fn file_state(&self) -> Vec<StateItem> {
        let arr = |a: &Option<Array>| a.clone().map_or(StateItem::None, StateItem::Array);
        vec![
            arr(&self.keys),
            arr(&self.values),
            StateItem::Int(self.offset as i64),
            StateItem::Int(self.keep as i64),
            StateItem::Int(self.max_size as i64),
            StateItem::Int(self.idx as i64),
        ]
    }
}

/// One cache per layer: the model's own (`LanguageModel::make_cache`) when it has one, else a
/// `RotatingKVCache(max_kv_size, keep = 4)` per layer when `max_kv_size` is given, else `KVCache`.
/// Unlike mlx-lm, `max_kv_size` is honoured for every model (mlx-lm issue #118).
pub fn make_prompt_cache(model: &dyn crate::models::LanguageModel, max_kv_size: Option<usize>) -> PromptCache {
    // The model's own layout first (gemma3: window-sized rings for its sliding layers), as mlx-lm.
    if let Some(c) = model.make_cache(max_kv_size) {
        return c;
    }
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

/// mlx-lm's `maybe_quantize_kv_cache`: with `kv_bits`, every layer whose offset reached
/// `quantized_kv_start` and that converts is replaced by its quantized copy.
pub fn maybe_quantize_kv_cache(
    cache: &mut [Box<dyn KvCache>],
    kv_bits: Option<usize>,
    kv_group_size: usize,
    quantized_kv_start: usize,
) -> Result<()> {
    let Some(bits) = kv_bits else { return Ok(()) };
    for c in cache.iter_mut() {
        if c.offset() >= quantized_kv_start {
            if let Some(q) = c.to_quantized(kv_group_size, bits) {
                *c = q?;
            }
        }
    }
    Ok(())
}

/// Trims every layer by `n` when all can be trimmed; returns the count trimmed.
pub fn trim_prompt_cache(cache: &mut [Box<dyn KvCache>], n: usize) -> usize {
    if !cache.iter().all(|c| c.is_trimmable()) || cache.is_empty() {
        return 0;
    }
    cache.iter_mut().map(|c| c.trim(n)).last().unwrap_or(0)
}
