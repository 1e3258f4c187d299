//! `random` namespace (mx.random): counter-based threefry2x32 keys, as MLX.
//!
//! A key is a `uint32[2]` array. Functions take `key: Option<&Array>`; without one they draw a
//! fresh key from the global key sequence (`seed` resets it): the global key is split in two,
//! the first half becomes the new global key and the second is used.
//! Samplers compute in float32 and cast to the requested float dtype, as MLX does.

use crate::array::Array;
use crate::backend::cpu::random::fill_bits;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::primitives::{Primitive, RandomOp};
use std::sync::Mutex;

static GLOBAL_KEY: Mutex<Option<[u32; 2]>> = Mutex::new(None);

fn key_words(seed: u64) -> [u32; 2] {
    [(seed >> 32) as u32, seed as u32]
}

/// A PRNG key (`uint32[2]`: the high and low 32 bits of `seed`).
#[track_caller]
pub fn key(seed: u64) -> Array {
    Array::vec(&key_words(seed))
}

/// Resets the global key sequence to `key(seed)`.
pub fn seed(seed: u64) {
    *GLOBAL_KEY.lock().unwrap_or_else(|e| e.into_inner()) = Some(key_words(seed));
}

/// The next key of the global sequence.
fn next_key() -> Array {
    let mut g = GLOBAL_KEY.lock().unwrap_or_else(|e| e.into_inner());
    let cur = *g.get_or_insert_with(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        key_words(t)
    });
    let mut w = [0u32; 4];
    fill_bits(cur, &mut w);
    *g = Some([w[0], w[1]]);
    Array::vec(&[w[2], w[3]])
}

fn resolve(key: Option<&Array>) -> Array {
    key.cloned().unwrap_or_else(next_key)
}

/// `shape` random uint32 words from `key`.
#[track_caller]
pub fn bits(shape: &[usize], key: Option<&Array>) -> Array {
    let k = resolve(key);
    Array::build(|| Ok(Array::from_op(Primitive::Random(RandomOp::Bits { shape: shape.to_vec() }), vec![k])))
}

/// `num` new keys from `key`, as a `uint32[num, 2]` array.
#[track_caller]
pub fn split(key: &Array, num: usize) -> Array {
    Array::build(|| Ok(super::reshape_to(&bits(&[num * 2], Some(key)), &[num, 2])))
}

/// The float32 value one ulp from `x` towards `to`.
fn nextafter_f32(x: f32, to: f32) -> f32 {
    if x.is_nan() || to.is_nan() {
        return f32::NAN;
    }
    if x == to {
        return to;
    }
    if x == 0.0 {
        return if to > 0.0 { f32::from_bits(1) } else { -f32::from_bits(1) };
    }
    let b = x.to_bits();
    let up = (to > x) == (x > 0.0);
    f32::from_bits(if up { b + 1 } else { b - 1 })
}

fn check_float(dtype: Dtype, name: &str) -> Result<()> {
    if !dtype.is_float() {
        crate::bail!("[{name}] Can only generate uniform numbers with real floating point type, got {dtype}.");
    }
    Ok(())
}

/// float32 uniform samples in `[low, high)`: `bits / u32::MAX * (high - low) + low`, clipped
/// below `high`.
fn uniform_f32(low: f32, high: f32, shape: &[usize], key: Option<&Array>) -> Array {
    let b = bits(shape, key).astype(Dtype::Float32);
    let u = super::divide(&b, Array::scalar(u32::MAX as f32));
    let v = super::add(&super::multiply(&u, Array::scalar(high - low)), Array::scalar(low));
    super::minimum(&v, Array::scalar(nextafter_f32(high, low)))
}

/// Uniform samples in `[low, high)`.
#[track_caller]
pub fn uniform(low: f64, high: f64, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "uniform")?;
        Ok(uniform_f32(low as f32, high as f32, shape, key).astype(dtype))
    })
}

/// Standard normal samples scaled by `scale` and shifted by `loc`:
/// `sqrt(2) * erfinv(uniform(nextafter(-1, 0), 1))`.
#[track_caller]
pub fn normal(shape: &[usize], dtype: Dtype, loc: f64, scale: f64, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "normal")?;
        let u = uniform_f32(nextafter_f32(-1.0, 0.0), 1.0, shape, key);
        let mut n = super::multiply(&super::erfinv(&u), Array::scalar(std::f32::consts::SQRT_2));
        if scale != 1.0 {
            n = super::multiply(&n, Array::scalar(scale as f32));
        }
        if loc != 0.0 {
            n = super::add(&n, Array::scalar(loc as f32));
        }
        Ok(n.astype(dtype))
    })
}

/// Random integers in `[low, high)`.
#[track_caller]
pub fn randint(low: i64, high: i64, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    Array::build(|| {
        if !dtype.is_integer() {
            crate::bail!("[randint] randint only accepts integer dtypes, got {dtype}.");
        }
        let u = uniform_f32(low as f32, high as f32, shape, key);
        Ok(super::floor(&u).astype(dtype))
    })
}

/// Booleans that are true with probability `p`.
#[track_caller]
pub fn bernoulli(p: f64, shape: &[usize], key: Option<&Array>) -> Array {
    Array::build(|| Ok(super::less(&uniform_f32(0.0, 1.0, shape, key), Array::scalar(p as f32))))
}

/// Normal samples truncated to `[lower, upper]`.
#[track_caller]
pub fn truncated_normal(lower: f64, upper: f64, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "truncated_normal")?;
        let s2 = std::f32::consts::SQRT_2;
        let (lo, hi) = (lower as f32, upper as f32);
        let el = libm::erff(lo / s2);
        let eh = libm::erff(hi / s2);
        let u = uniform_f32(el, eh, shape, key);
        let n = super::multiply(&super::erfinv(&u), Array::scalar(s2));
        let c = super::clip(&n, Some(lo.into()), Some(hi.into()));
        Ok(c.astype(dtype))
    })
}

/// Standard Gumbel samples: `-log(-log(uniform(0, 1)))`.
#[track_caller]
pub fn gumbel(shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "gumbel")?;
        let u = uniform_f32(0.0, 1.0, shape, key);
        Ok(super::negative(&super::log(&super::negative(&super::log(&u)))).astype(dtype))
    })
}

/// Laplace samples: `sign(u) * log1p(-|u|) * scale + loc` for `u` uniform in (-1, 1).
#[track_caller]
pub fn laplace(shape: &[usize], dtype: Dtype, loc: f64, scale: f64, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "laplace")?;
        let u = uniform_f32(nextafter_f32(-1.0, 0.0), 1.0, shape, key);
        let mut s = super::multiply(&super::sign(&u), &super::log1p(&super::negative(&super::abs(&u))));
        if scale != 1.0 {
            s = super::multiply(&s, Array::scalar(scale as f32));
        }
        if loc != 0.0 {
            s = super::add(&s, Array::scalar(loc as f32));
        }
        Ok(s.astype(dtype))
    })
}

/// Samples from the categorical distributions given by unnormalised `logits` along `axis`
/// (uint32 indices): `argmax(logits + gumbel)`. With `num_samples`, the output is logits' shape
/// without `axis`, followed by `num_samples`.
#[track_caller]
pub fn categorical(logits: &Array, axis: isize, num_samples: Option<usize>, key: Option<&Array>) -> Array {
    Array::build(|| {
        let ax = crate::shape::normalize_axis(axis, logits.ndim(), "categorical")?;
        match num_samples {
            None => {
                let g = gumbel(logits.shape(), Dtype::Float32, key);
                Ok(super::argmax(&super::add(logits, &g), Some(ax as isize), false))
            }
            Some(ns) => {
                // As MLX: `axis` moved last, noise of shape `[..batch, n, num_samples]`.
                let l = super::expand_dims(&super::moveaxis(logits, ax as isize, -1), &[-1]);
                let mut shape = l.shape().to_vec();
                let nd = shape.len();
                shape[nd - 1] = ns;
                let g = gumbel(&shape, Dtype::Float32, key);
                Ok(super::argmax(&super::add(&l, &g), Some(-2), false))
            }
        }
    })
}

/// A random permutation of `0..n` (uint32): the argsort of random integers.
#[track_caller]
pub fn permutation(n: usize, key: Option<&Array>) -> Array {
    Array::build(|| {
        let r = randint(0, (1i64 << 31) - 1, &[n], Dtype::Int32, key);
        Ok(super::argsort(&r, Some(0)))
    })
}
