//! The KV cache of the server's decode batch: one layer's keys and values for several sequences of
//! different lengths, right-aligned in one `[B, Hkv, S, D]` buffer (row `b` holds its `len_b`
//! positions in `S - len_b .. S`; the left padding is masked out). Every row gains one position
//! per decode step, so the alignment holds; a joining sequence is padded to the batch (or the
//! batch to it) and a leaving one is dropped, then the padding every row shares is cut.
//!
//! Each row is rotated at its own positions (RoPE offsets `len_b`, through
//! [`KvCache::batch_layout`]), so a sequence sees exactly the positions it would see alone.
//!
//! The layer state sits behind an `Arc<Mutex<_>>`: the model holds the `Box<dyn KvCache>` for
//! its forward pass while the engine adds and removes rows through its own handle.

use crate::cache::{KvCache, StateItem};
use oxmx_core::{ops, Array, Error, Result, SliceSpec};
use std::sync::{Arc, Mutex, MutexGuard};

/// Positions are allocated in blocks of this many (as `KVCache`).
const STEP: usize = 256;

#[derive(Default)]
struct Rows {
    /// `[B, Hkv, cap, D]`, filled up to `filled`.
    keys: Option<Array>,
    values: Option<Array>,
    filled: usize,
    lens: Vec<usize>,
}

/// One layer of the batch cache; clones share the state.
#[derive(Clone, Default)]
pub struct BatchLayer(Arc<Mutex<Rows>>);

fn seq(a: &Array, start: usize, stop: usize) -> Array {
    ops::slice(a, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(start as isize), Some(stop as isize), 1), SliceSpec::FULL])
}

/// `a: [B, H, L, D]` with `pad` zero positions in front.
fn left_pad(a: &Array, pad: usize) -> Array {
    if pad == 0 {
        return a.clone();
    }
    let mut shape = a.shape().to_vec();
    shape[2] = pad;
    ops::concatenate(&[ops::zeros(&shape, a.dtype()), a.clone()], 2)
}

impl BatchLayer {
    fn rows(&self) -> MutexGuard<'_, Rows> {
        // A panic while the lock was held leaves consistent arrays (they are replaced whole).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of sequences in the batch.
    pub fn len(&self) -> usize {
        self.rows().lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a sequence whose own cache holds `keys`/`values` (`[1, Hkv, L, D]`, exactly its
    /// `L` positions) as the last row.
    pub fn push_row(&self, keys: &Array, values: &Array) -> Result<()> {
        if keys.ndim() != 4 || keys.shape()[0] != 1 || keys.shape() != values.shape() {
            return Err(Error::invalid(format!(
                "[batch cache] a joining row needs keys and values of one shape [1, H, L, D], got {:?} and {:?}",
                keys.shape(),
                values.shape()
            )));
        }
        let mut r = self.rows();
        let len = keys.shape()[2];
        match (&r.keys, &r.values) {
            (Some(k), Some(v)) => {
                let s = r.filled.max(len);
                let grow = s - r.filled;
                let k = left_pad(&seq(k, 0, r.filled), grow);
                let v = left_pad(&seq(v, 0, r.filled), grow);
                r.keys = Some(ops::concatenate(&[k, left_pad(keys, s - len)], 0));
                r.values = Some(ops::concatenate(&[v, left_pad(values, s - len)], 0));
                r.filled = s;
            }
            _ => {
                r.keys = Some(keys.clone());
                r.values = Some(values.clone());
                r.filled = len;
            }
        }
        r.lens.push(len);
        Ok(())
    }

    /// Drops the rows whose index is in `drop` (ascending or not), then the padding all rows share.
    pub fn remove_rows(&self, drop: &[usize]) {
        let mut r = self.rows();
        let keep: Vec<usize> = (0..r.lens.len()).filter(|i| !drop.contains(i)).collect();
        if keep.len() == r.lens.len() {
            return;
        }
        if keep.is_empty() {
            *r = Rows::default();
            return;
        }
        let lens: Vec<usize> = keep.iter().map(|&i| r.lens[i]).collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        let cut = r.filled - longest;
        let idx = Array::vec(&keep.iter().map(|&i| i as i32).collect::<Vec<_>>());
        let filled = r.filled;
        let take = |a: &Option<Array>| a.as_ref().map(|a| seq(&ops::take(a, &idx, Some(0)), cut, filled));
        r.keys = take(&r.keys);
        r.values = take(&r.values);
        r.filled = longest;
        r.lens = lens;
    }

    /// Each row's length.
    pub fn lens(&self) -> Vec<usize> {
        self.rows().lens.clone()
    }
}

impl KvCache for BatchLayer {
    fn offset(&self) -> usize {
        self.rows().filled
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        let mut r = self.rows();
        let n = keys.shape().get(2).copied().unwrap_or(0);
        let b = keys.shape().first().copied().unwrap_or(0);
        let (Some(k0), Some(v0)) = (r.keys.clone(), r.values.clone()) else {
            let e = Error::invalid("[batch cache] update before any row joined");
            return (Array::error(e.clone()), Array::error(e));
        };
        if b != r.lens.len() {
            let e = Error::invalid(format!("[batch cache] {b} new rows for a batch of {}", r.lens.len()));
            return (Array::error(e.clone()), Array::error(e));
        }
        let prev = r.filled;
        let (k0, v0) = if prev + n > k0.shape()[2] {
            // Grow by whole blocks, dropping the unfilled tail first.
            let more = n.div_ceil(STEP) * STEP;
            let grow = |a: &Array| {
                let mut shape = a.shape().to_vec();
                shape[2] = more;
                ops::concatenate(&[seq(a, 0, prev), ops::zeros(&shape, a.dtype())], 2)
            };
            (grow(&k0), grow(&v0))
        } else {
            (k0, v0)
        };
        let spec = [SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(prev as isize), Some((prev + n) as isize), 1), SliceSpec::FULL];
        let k = ops::slice_update(&k0, &keys.astype(k0.dtype()), &spec);
        let v = ops::slice_update(&v0, &values.astype(v0.dtype()), &spec);
        r.keys = Some(k.clone());
        r.values = Some(v.clone());
        r.filled = prev + n;
        for l in r.lens.iter_mut() {
            *l += n;
        }
        (seq(&k, 0, prev + n), seq(&v, 0, prev + n))
    }

    fn make_mask(&self, _n: usize) -> Option<Array> {
        None
    }

    fn batch_layout(&self, n: usize) -> Option<(Array, Option<Array>)> {
        let r = self.rows();
        let offsets = Array::vec(&r.lens.iter().map(|&l| l as i32).collect::<Vec<_>>());
        let s = r.filled;
        if r.lens.iter().all(|&l| l == s) {
            return Some((offsets, None)); // no padding: plain causal, as a lone sequence
        }
        // mask[b, 0, i, j]: key j is a real position of row b (j >= s - len_b) and not in the
        // future of query i (j <= s + i).
        let b = r.lens.len();
        let cols = s + n;
        let mut m = vec![false; b * n * cols];
        for (row, &len) in r.lens.iter().enumerate() {
            let pad = s - len;
            for i in 0..n {
                let base = (row * n + i) * cols;
                for j in pad..=(s + i).min(cols - 1) {
                    m[base + j] = true;
                }
            }
        }
        Some((offsets, Some(Array::from_slice(&m, &[b, 1, n, cols]))))
    }

    fn state(&self) -> Vec<Array> {
        let r = self.rows();
        r.keys.iter().chain(r.values.iter()).cloned().collect()
    }

    fn is_trimmable(&self) -> bool {
        false
    }

    fn trim(&mut self, _n: usize) -> usize {
        0
    }

    fn class_name(&self) -> &'static str {
        "BatchKVCache"
    }

    fn file_state(&self) -> Vec<StateItem> {
        vec![] // never written to a prompt-cache file
    }
}

/// Whether `model`'s sequences can share batch layers: plain growing caches (no model-made
/// caches such as gemma3's rings) and no sliding window.
pub fn model_fits_batch_cache(model: &dyn crate::models::LanguageModel) -> bool {
    let raw = &model.config().raw;
    let window =
        raw.get("sliding_window").is_some_and(|w| !w.is_null()) && raw.get("use_sliding_window").and_then(|u| u.as_bool()) != Some(false);
    model.make_cache(None).is_none() && !window
}

/// Appends one sequence's prefilled cache (one plain cache per layer) as a new row of every
/// layer; on failure the layers that took it give it back, so the batch is unchanged.
pub fn join_rows(layers: &[BatchLayer], cache: &[Box<dyn KvCache>]) -> Result<()> {
    for (k, (layer, c)) in layers.iter().zip(cache.iter()).enumerate() {
        let st = c.state();
        let n = c.offset() as isize;
        let cut = |a: &Array| {
            let s = a.shape();
            ops::slice_range(a, &[0, 0, 0, 0], &[s[0] as isize, s[1] as isize, n, s[3] as isize])
        };
        let joined = match st.as_slice() {
            [key, val] => layer.push_row(&cut(key), &cut(val)),
            _ => Err(Error::invalid("[batch] a prefilled cache without keys and values")),
        };
        if let Err(e) = joined {
            for l in &layers[..k] {
                l.remove_rows(&[l.len() - 1]);
            }
            return Err(e);
        }
    }
    Ok(())
}
