//! The quantized KV cache (mlx-lm's `QuantizedKVCache`, `--kv-bits`): keys and values are kept as
//! MLX affine triples `(packed uint32, scales, biases)` along the head dimension, preallocated in
//! steps of 256 positions like [`super::KVCache`], and attention runs `quantized_matmul` directly
//! on them ([`quantized_sdpa`]): `scores = (q * scale) @ dequant(K)^T`, softmax in float32
//! precision, `out = scores @ dequant(V)`, with grouped-query heads handled by a reshape (the
//! KV heads broadcast over the query heads that share them).

use super::{check_kv_rank, seq_slice, FetchedKv, KvCache, StateItem};
use oxmx_core::fast::AttentionMask;
use oxmx_core::{finfo, ops, Array, Dtype, Error, Result};

/// An affine-quantized key or value tensor `[B, Hkv, S, D]`: `[packed, scales, biases]`.
pub type QuantTriple = [Array; 3];

/// The quantized keys and values a [`QuantizedKVCache`] hands to attention.
#[derive(Clone, Debug)]
pub struct QuantizedKv {
    pub keys: QuantTriple,
    pub values: QuantTriple,
    pub group_size: usize,
    pub bits: usize,
}

impl QuantizedKv {
    /// Attention of `q` (`[B, Hq, L, D]`) over these keys/values; see [`quantized_sdpa`].
    pub fn attention(&self, q: &Array, scale: f64, mask: &AttentionMask) -> Array {
        quantized_sdpa(q, &self.keys, &self.values, scale, mask, self.group_size, self.bits)
    }

    /// The keys and values dequantized (in the scales' dtype).
    pub fn dequantized(&self) -> (Array, Array) {
        let dq = |t: &QuantTriple| ops::dequantize(&t[0], &t[1], Some(&t[2]), Some(self.group_size), Some(self.bits), "affine", None);
        (dq(&self.keys), dq(&self.values))
    }
}

/// Checks that `dim` (a head dimension) can be quantized with `(group_size, bits)`.
pub fn check_kv_quant(group_size: usize, bits: usize, dim: usize) -> Result<()> {
    if ![32, 64, 128].contains(&group_size) {
        return Err(Error::invalid(format!("[QuantizedKVCache] kv group size {group_size} is not supported (32, 64 or 128)")));
    }
    if ![2, 3, 4, 5, 6, 8].contains(&bits) {
        return Err(Error::invalid(format!("[QuantizedKVCache] kv bits {bits} is not supported (2, 3, 4, 5, 6 or 8)")));
    }
    if dim % group_size != 0 {
        return Err(Error::invalid(format!(
            "[QuantizedKVCache] the head dimension {dim} is not divisible by the kv group size {group_size}"
        )));
    }
    Ok(())
}

fn quantize_triple(x: &Array, group_size: usize, bits: usize) -> QuantTriple {
    let (w, s, b) = ops::quantize(x, Some(group_size), Some(bits), "affine");
    let b = b.unwrap_or_else(|| Array::error(Error::runtime("[QuantizedKVCache] affine quantize returned no biases")));
    [w, s, b]
}

fn triple_slice(t: &QuantTriple, start: usize, stop: usize) -> QuantTriple {
    [seq_slice(&t[0], start, stop), seq_slice(&t[1], start, stop), seq_slice(&t[2], start, stop)]
}

/// Scaled dot-product attention over affine-quantized keys and values (mlx-lm's
/// `quantized_scaled_dot_product_attention`). `q: [B, Hq, L, D]`; each triple is
/// `[B, Hkv, S, ..]` with `Hq` a multiple of `Hkv`. The mask is MLX's: `"causal"` (lower-right
/// aligned), a boolean array (`false` drops the score) or an additive one.
pub fn quantized_sdpa(
    q: &Array,
    keys: &QuantTriple,
    values: &QuantTriple,
    scale: f64,
    mask: &AttentionMask,
    group_size: usize,
    bits: usize,
) -> Array {
    or_error((|| {
        if q.ndim() != 4 || keys[0].ndim() != 4 || values[0].ndim() != 4 {
            return Err(Error::invalid(format!(
                "[quantized_sdpa] queries and quantized keys/values must be 4-D, got {:?}, {:?}, {:?}",
                q.shape(),
                keys[0].shape(),
                values[0].shape()
            )));
        }
        let (b, hq, l, _d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let hkv = keys[0].shape()[1];
        if hkv == 0 || hq % hkv != 0 {
            return Err(Error::invalid(format!("[quantized_sdpa] {hq} query heads are not a multiple of {hkv} key/value heads")));
        }
        let rep = hq / hkv;
        let dv = values[0].shape()[3] * 32 / bits;
        let mut qs = q * scale;
        let expand = |t: &QuantTriple| -> QuantTriple {
            if rep > 1 {
                [ops::expand_dims(&t[0], &[-3]), ops::expand_dims(&t[1], &[-3]), ops::expand_dims(&t[2], &[-3])]
            } else {
                t.clone()
            }
        };
        let (kq, vq) = (expand(keys), expand(values));
        if rep > 1 {
            qs = ops::reshape(&qs, &[b as isize, hkv as isize, rep as isize, l as isize, q.shape()[3] as isize]);
        }
        let mut scores = ops::quantized_matmul(&qs, &kq[0], &kq[1], Some(&kq[2]), true, Some(group_size), Some(bits), "affine");
        let mask_arr = match mask {
            AttentionMask::None => None,
            AttentionMask::Causal => {
                let kl = keys[0].shape()[2];
                if kl < l {
                    return Err(Error::invalid(format!("[quantized_sdpa] causal mask with {l} queries over {kl} keys")));
                }
                let qi = ops::expand_dims(&ops::arange((kl - l) as f64, kl as f64, 1.0, Some(Dtype::Int32)), &[1]);
                let ki = ops::expand_dims(&ops::arange_n(kl, Some(Dtype::Int32)), &[0]);
                Some(ops::greater_equal(&qi, &ki))
            }
            AttentionMask::Array(m) => Some(if rep > 1 && m.ndim() > 3 { ops::expand_dims(m, &[-3]) } else { m.clone() }),
            AttentionMask::Invalid(s) => {
                return Err(Error::invalid(format!("[quantized_sdpa] invalid mask '{s}' (expected \"causal\" or an array)")))
            }
        };
        if let Some(m) = mask_arr {
            if m.dtype() == Dtype::Bool {
                let min = finfo(scores.dtype()).map_or(f32::MIN as f64, |f| f.min);
                scores = ops::where_(&m, &scores, min);
            } else {
                scores = &scores + &m;
            }
        }
        let p = ops::softmax(&scores, -1isize, true);
        let mut out = ops::quantized_matmul(&p, &vq[0], &vq[1], Some(&vq[2]), false, Some(group_size), Some(bits), "affine");
        if rep > 1 {
            out = ops::reshape(&out, &[b as isize, hq as isize, l as isize, dv as isize]);
        }
        Ok(out)
    })())
}

/// Keys and values stored as affine-quantized triples (`QuantizedKVCache`).
#[derive(Clone)]
pub struct QuantizedKVCache {
    keys: Option<QuantTriple>,
    values: Option<QuantTriple>,
    offset: usize,
    group_size: usize,
    bits: usize,
}

impl QuantizedKVCache {
    /// Positions are allocated in blocks of this many.
    pub const STEP: usize = 256;

    /// An empty cache (`group_size` 64 and `bits` 8 are mlx-lm's defaults).
    pub fn new(group_size: usize, bits: usize) -> QuantizedKVCache {
        QuantizedKVCache { keys: None, values: None, offset: 0, group_size, bits }
    }

    pub fn group_size(&self) -> usize {
        self.group_size
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The quantized copy of a plain cache's buffers (`KVCache.to_quantized`).
    pub fn from_plain(kv: Option<(&Array, &Array)>, offset: usize, group_size: usize, bits: usize) -> Result<QuantizedKVCache> {
        let mut c = QuantizedKVCache::new(group_size, bits);
        c.offset = offset;
        if let Some((k, v)) = kv {
            check_kv_rank("QuantizedKVCache", k, v)?;
            check_kv_quant(group_size, bits, k.shape()[3])?;
            check_kv_quant(group_size, bits, v.shape()[3])?;
            c.keys = Some(quantize_triple(k, group_size, bits));
            c.values = Some(quantize_triple(v, group_size, bits));
        } else if offset > 0 {
            return Err(Error::invalid("[QuantizedKVCache] a non-zero offset needs keys and values"));
        }
        Ok(c)
    }

    /// mlx-lm's `from_state`: `(keys, values, offset, group_size, bits)` with each of keys and
    /// values a `[packed, scales, biases]` triple holding at least `offset` positions.
    pub fn from_state(
        keys: Option<Vec<Array>>,
        values: Option<Vec<Array>>,
        offset: usize,
        group_size: usize,
        bits: usize,
    ) -> Result<QuantizedKVCache> {
        let triple = |v: Vec<Array>, what: &str| -> Result<QuantTriple> {
            let n = v.len();
            let t: QuantTriple = v
                .try_into()
                .map_err(|_| Error::invalid(format!("[QuantizedKVCache] {what} must be (packed, scales, biases), got {n} arrays")))?;
            if t.iter().any(|a| a.ndim() != 4) || t[0].dtype() != Dtype::Uint32 {
                return Err(Error::invalid(format!("[QuantizedKVCache] {what}: packed uint32 and 4-D scales/biases expected")));
            }
            if t.iter().any(|a| a.shape()[2] < offset) {
                return Err(Error::invalid(format!("[QuantizedKVCache] {what} holds fewer than offset {offset} positions")));
            }
            let dim = t[0].shape()[3] * 32 / bits.max(1);
            check_kv_quant(group_size, bits, dim)?;
            if t[1].shape()[3] * group_size != dim || t[1].shape() != t[2].shape() {
                return Err(Error::invalid(format!(
                    "[QuantizedKVCache] {what}: scales {:?} / biases {:?} do not match packed {:?} with group size {group_size} and {bits} bits",
                    t[1].shape(),
                    t[2].shape(),
                    t[0].shape()
                )));
            }
            Ok(t)
        };
        let mut c = QuantizedKVCache::new(group_size, bits);
        c.offset = offset;
        match (keys, values) {
            (Some(k), Some(v)) => {
                c.keys = Some(triple(k, "keys")?);
                c.values = Some(triple(v, "values")?);
            }
            (None, None) if offset == 0 => {}
            _ => return Err(Error::invalid("[QuantizedKVCache] keys and values must both be present (or both absent with offset 0)")),
        }
        Ok(c)
    }

    /// The filled part of the quantized keys and values.
    pub fn fetched(&self) -> Option<QuantizedKv> {
        let (k, v) = (self.keys.as_ref()?, self.values.as_ref()?);
        let (k, v) = if self.offset == k[0].shape()[2] {
            (k.clone(), v.clone())
        } else {
            (triple_slice(k, 0, self.offset), triple_slice(v, 0, self.offset))
        };
        Some(QuantizedKv { keys: k, values: v, group_size: self.group_size, bits: self.bits })
    }

    fn update(&mut self, keys: &Array, values: &Array) -> Result<QuantizedKv> {
        check_kv_rank("QuantizedKVCache", keys, values)?;
        check_kv_quant(self.group_size, self.bits, keys.shape()[3])?;
        check_kv_quant(self.group_size, self.bits, values.shape()[3])?;
        let prev = self.offset;
        let n = keys.shape()[2];
        let cap = self.keys.as_ref().map_or(0, |k| k[0].shape()[2]);
        if self.keys.is_none() || prev + n > cap {
            let new_steps = n.div_ceil(Self::STEP) * Self::STEP;
            let per_int = 32 / self.bits;
            let (b, h) = (keys.shape()[0], keys.shape()[1]);
            let fresh = |dim: usize, dt: Dtype| -> QuantTriple {
                [
                    ops::zeros(&[b, h, new_steps, dim / per_int], Dtype::Uint32),
                    ops::zeros(&[b, h, new_steps, dim / self.group_size], dt),
                    ops::zeros(&[b, h, new_steps, dim / self.group_size], dt),
                ]
            };
            let grow = |cur: &Option<QuantTriple>, new: &Array| -> QuantTriple {
                let f = fresh(new.shape()[3], new.dtype());
                match cur {
                    Some(c) => {
                        let kept = triple_slice(c, 0, prev);
                        let cat = |i: usize| {
                            let z = if c[i].dtype() == f[i].dtype() { f[i].clone() } else { f[i].astype(c[i].dtype()) };
                            ops::concatenate(&[kept[i].clone(), z], 2)
                        };
                        [cat(0), cat(1), cat(2)]
                    }
                    None => f,
                }
            };
            self.keys = Some(grow(&self.keys, keys));
            self.values = Some(grow(&self.values, values));
        }
        self.offset += n;
        let qk = quantize_triple(keys, self.group_size, self.bits);
        let qv = quantize_triple(values, self.group_size, self.bits);
        let put = |buf: &QuantTriple, upd: &QuantTriple| -> QuantTriple {
            let one = |i: usize| {
                let u = if upd[i].dtype() == buf[i].dtype() { upd[i].clone() } else { upd[i].astype(buf[i].dtype()) };
                super::seq_update(&buf[i], &u, prev)
            };
            [one(0), one(1), one(2)]
        };
        // Replace the handles so the old buffers can be donated to the in-place updates.
        let k = put(self.keys.as_ref().unwrap(), &qk);
        self.keys = Some(k);
        let v = put(self.values.as_ref().unwrap(), &qv);
        self.values = Some(v);
        self.fetched().ok_or_else(|| Error::runtime("[QuantizedKVCache] internal: no buffers after an update"))
    }
}

impl KvCache for QuantizedKVCache {
    fn offset(&self) -> usize {
        self.offset
    }

    /// The dequantized keys and values (a fallback for code that needs plain arrays; attention
    /// goes through [`KvCache::update_and_fetch_kv`]).
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> (Array, Array) {
        match self.update(keys, values) {
            Ok(q) => q.dequantized(),
            Err(e) => (Array::error(e.clone()), Array::error(e)),
        }
    }

    fn update_and_fetch_kv(&mut self, keys: &Array, values: &Array) -> FetchedKv {
        match self.update(keys, values) {
            Ok(q) => FetchedKv::Quantized(q),
            Err(e) => FetchedKv::Plain(Array::error(e.clone()), Array::error(e)),
        }
    }

    fn make_mask(&self, _n: usize) -> Option<Array> {
        None
    }

    fn state(&self) -> Vec<Array> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => k.iter().chain(v.iter()).cloned().collect(),
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
        "QuantizedKVCache"
    }

    /// `(keys, values, offset, group_size, bits)`, the triples cut to `offset`.
    fn file_state(&self) -> Vec<StateItem> {
        let (k, v) = match self.fetched() {
            Some(q) => (StateItem::Arrays(q.keys.to_vec()), StateItem::Arrays(q.values.to_vec())),
            None => (StateItem::None, StateItem::None),
        };
        vec![k, v, StateItem::Int(self.offset as i64), StateItem::Int(self.group_size as i64), StateItem::Int(self.bits as i64)]
    }

    fn quantization(&self) -> Option<(usize, usize)> {
        Some((self.group_size, self.bits))
    }
}

/// The array, or an array carrying the error (ops report errors lazily).
pub(crate) fn or_error(r: Result<Array>) -> Array {
    r.unwrap_or_else(Array::error)
}
