//! `random` namespace (mx.random): counter-based threefry2x32 keys, as MLX.
//!
//! A key is a `uint32[2]` array. Functions take `key: Option<&Array>`; without one they draw a
//! fresh key from the global key sequence (`seed` resets it): the global key is split in two,
//! the first half becomes the new global key and the second is used.
//! Samplers compute in float32 and cast to the requested float dtype, as MLX does.

use super::args::Operand;
use crate::array::Array;
use crate::backend::cpu::random::fill_bits;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::primitives::{Primitive, RandomOp};
use crate::shape::broadcast_shapes;
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

/// A distribution parameter as a float32 array that broadcasts to `shape`.
fn param(x: impl Into<Operand>, shape: &[usize], name: &str, what: &str) -> Result<Array> {
    let a = super::to_array(x, None).astype(Dtype::Float32);
    let b = broadcast_shapes(a.shape(), shape)?;
    if b != shape {
        crate::bail!("[{name}] Cannot generate random values of shape {shape:?} from {what} of shape {:?}.", a.shape());
    }
    Ok(a)
}

/// float32 uniform samples in `[low, high)`: `u * (high - low) + low` with `u = bits / u32::MAX`
/// clipped below 1 (as MLX; so `low > high` gives samples in `(high, low]`).
fn uniform_f32(low: &Array, high: &Array, shape: &[usize], key: Option<&Array>) -> Array {
    let b = bits(shape, key).astype(Dtype::Float32);
    let u = super::minimum(&super::divide(&b, Array::scalar(u32::MAX as f32)), Array::scalar(nextafter_f32(1.0, 0.0)));
    super::add(&super::multiply(&u, &super::subtract(high, low)), low)
}

fn uniform_scalar(low: f32, high: f32, shape: &[usize], key: Option<&Array>) -> Array {
    uniform_f32(&Array::scalar(low), &Array::scalar(high), shape, key)
}

/// Uniform samples in `[low, high)`; `low` and `high` are scalars or arrays that broadcast to
/// `shape`.
#[track_caller]
pub fn uniform(low: impl Into<Operand>, high: impl Into<Operand>, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    let (low, high) = (low.into(), high.into());
    Array::build(|| {
        check_float(dtype, "uniform")?;
        let (lo, hi) = (param(low, shape, "uniform", "low")?, param(high, shape, "uniform", "high")?);
        Ok(uniform_f32(&lo, &hi, shape, key).astype(dtype))
    })
}

/// Standard normal samples scaled by `scale` and shifted by `loc` (scalars or arrays that
/// broadcast to `shape`): `sqrt(2) * erfinv(uniform(nextafter(-1, 0), 1))`.
#[track_caller]
pub fn normal(shape: &[usize], dtype: Dtype, loc: impl Into<Operand>, scale: impl Into<Operand>, key: Option<&Array>) -> Array {
    let (loc, scale) = (loc.into(), scale.into());
    Array::build(|| {
        check_float(dtype, "normal")?;
        let (loc, scale) = (param(loc, shape, "normal", "loc")?, param(scale, shape, "normal", "scale")?);
        let u = uniform_scalar(nextafter_f32(-1.0, 0.0), 1.0, shape, key);
        let n = super::multiply(&super::erfinv(&u), Array::scalar(std::f32::consts::SQRT_2));
        Ok(super::add(&super::multiply(&n, &scale), &loc).astype(dtype))
    })
}

/// Random integers in `[low, high)`; bounds are scalars or arrays that broadcast to `shape`.
#[track_caller]
pub fn randint(low: impl Into<Operand>, high: impl Into<Operand>, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    let (low, high) = (low.into(), high.into());
    Array::build(|| {
        if !dtype.is_integer() {
            crate::bail!("[randint] randint only accepts integer dtypes, got {dtype}.");
        }
        let (lo, hi) = (param(low, shape, "randint", "low")?, param(high, shape, "randint", "high")?);
        Ok(super::floor(&uniform_f32(&lo, &hi, shape, key)).astype(dtype))
    })
}

/// Booleans that are true with probability `p` (a scalar or an array that broadcasts to
/// `shape`).
#[track_caller]
pub fn bernoulli(p: impl Into<Operand>, shape: &[usize], key: Option<&Array>) -> Array {
    let p = p.into();
    Array::build(|| {
        let p = param(p, shape, "bernoulli", "p")?;
        Ok(super::less(&uniform_scalar(0.0, 1.0, shape, key), &p))
    })
}

/// Normal samples truncated to `[lower, upper]` (scalars or arrays that broadcast to `shape`).
#[track_caller]
pub fn truncated_normal(lower: impl Into<Operand>, upper: impl Into<Operand>, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    let (lower, upper) = (lower.into(), upper.into());
    Array::build(|| {
        check_float(dtype, "truncated_normal")?;
        let s2 = Array::scalar(std::f32::consts::SQRT_2);
        let (lo, hi) = (param(lower, shape, "truncated_normal", "lower")?, param(upper, shape, "truncated_normal", "upper")?);
        let el = super::erf(&super::divide(&lo, &s2));
        let eh = super::erf(&super::divide(&hi, &s2));
        let u = uniform_f32(&el, &eh, shape, key);
        let n = super::multiply(&super::erfinv(&u), &s2);
        // Clamped to `upper` first, then `lower` (as MLX: an empty interval gives `lower`).
        Ok(super::maximum(&super::minimum(&n, &hi), &lo).astype(dtype))
    })
}

/// Standard Gumbel samples: `-log(-log(uniform(0, 1)))`.
#[track_caller]
pub fn gumbel(shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "gumbel")?;
        let u = uniform_scalar(0.0, 1.0, shape, key);
        Ok(super::negative(&super::log(&super::negative(&super::log(&u)))).astype(dtype))
    })
}

/// Laplace samples: `sign(u) * log1p(-|u|) * scale + loc` for `u` uniform in (-1, 1).
#[track_caller]
pub fn laplace(shape: &[usize], dtype: Dtype, loc: f64, scale: f64, key: Option<&Array>) -> Array {
    Array::build(|| {
        check_float(dtype, "laplace")?;
        let u = uniform_scalar(nextafter_f32(-1.0, 0.0), 1.0, shape, key);
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
                // As MLX: noise of shape `logits.shape + [num_samples]` (so that a key gives the
                // same samples as MLX), the logits broadcast along the new last axis.
                let l = super::expand_dims(logits, &[-1]);
                let mut shape = logits.shape().to_vec();
                shape.push(ns);
                let g = gumbel(&shape, Dtype::Float32, key);
                Ok(super::argmax(&super::add(&l, &g), Some(ax as isize), false))
            }
        }
    })
}

/// Samples from the multivariate normal with `mean` (`[..., n]`) and covariance `cov`
/// (`[..., n, n]`, symmetric positive semi-definite): `mean + z @ (U sqrt(S))^T` with `z`
/// standard normal of shape `shape + [n]` and `cov = U S U^T` from the SVD, as MLX computes it
/// (the SVD also handles singular covariances). Only float32, as MLX.
#[track_caller]
pub fn multivariate_normal(mean: &Array, cov: &Array, shape: &[usize], dtype: Dtype, key: Option<&Array>) -> Array {
    let key = key.cloned();
    Array::build(|| {
        if dtype != Dtype::Float32 {
            crate::bail!("[multivariate_normal] dtype must be float32, got {dtype}.");
        }
        if mean.ndim() < 1 || cov.ndim() < 2 {
            crate::bail!(
                "[multivariate_normal] mean must be at least 1-D and cov at least 2-D, got {:?} and {:?}.",
                mean.shape(),
                cov.shape()
            );
        }
        let n = mean.shape()[mean.ndim() - 1];
        if cov.shape()[cov.ndim() - 2..] != [n, n] {
            crate::bail!(
                "[multivariate_normal] cov must have shape [..., {n}, {n}] for mean of shape {:?}, got {:?}.",
                mean.shape(),
                cov.shape()
            );
        }
        let batch = broadcast_shapes(&mean.shape()[..mean.ndim() - 1], &cov.shape()[..cov.ndim() - 2])?;
        let out_batch = broadcast_shapes(shape, &batch)?;
        if out_batch != shape {
            crate::bail!(
                "[multivariate_normal] shape {shape:?} is not broadcast-compatible with the batch shape {batch:?} of mean and cov."
            );
        }
        let mut zshape = shape.to_vec();
        zshape.push(n);
        let z = normal(&zshape, Dtype::Float32, 0.0f32, 1.0f32, key.as_ref());
        let (u, s, _) = super::linalg::svd(&cov.astype(Dtype::Float32));
        let std = super::multiply(&u, &super::expand_dims(&super::sqrt(&s), &[-2]));
        // z [..., n] times std^T: each sample is std @ z.
        let draw = super::squeeze(&super::matmul(&super::expand_dims(&z, &[-2]), &super::swapaxes(&std, -1, -2)), &[-2]);
        Ok(super::add(&draw, &mean.astype(Dtype::Float32)))
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
