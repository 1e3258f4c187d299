//! `fast` namespace (mx.fast): fused kernels for the hot ops of transformer models.
//!
//! Each op validates its arguments (clear errors naming the shapes), promotes and casts its float
//! inputs to the output dtype, and builds one `Fast` node (primitives/fast.rs) for float32,
//! float16 and bfloat16. `fallback` is the same computation written with ordinary ops, following
//! MLX's reference composition (16-bit inputs accumulate in float32): it is the path for float64,
//! the derivative and batching rules of the node (transforms/rules/fast.rs) and the tests' oracle.

use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::error::Result;
use crate::primitives::fast::{FastOp, MaskKind};
use crate::primitives::Primitive;
use crate::shape::broadcast_shapes;

/// Rope's position offset: a Python-style integer or an integer array of shape `[]` or `[B]`.
#[derive(Clone, Debug)]
pub enum RopeOffset {
    Int(i64),
    Array(Array),
}

impl From<i32> for RopeOffset {
    fn from(v: i32) -> Self {
        RopeOffset::Int(v as i64)
    }
}
impl From<i64> for RopeOffset {
    fn from(v: i64) -> Self {
        RopeOffset::Int(v)
    }
}
impl From<usize> for RopeOffset {
    fn from(v: usize) -> Self {
        RopeOffset::Int(v as i64)
    }
}
impl From<Array> for RopeOffset {
    fn from(a: Array) -> Self {
        RopeOffset::Array(a)
    }
}
impl From<&Array> for RopeOffset {
    fn from(a: &Array) -> Self {
        RopeOffset::Array(a.clone())
    }
}

/// The `mask` argument of attention: none, `"causal"` (lower-right aligned, as MLX), or an
/// array, boolean (`false` drops the score) or additive, broadcastable to `[B, Hq, qL, kL]`.
#[derive(Clone, Debug)]
pub enum AttentionMask {
    None,
    Causal,
    Array(Array),
    /// A string other than "causal" (reported as an error by the op).
    Invalid(String),
}

impl From<&str> for AttentionMask {
    fn from(s: &str) -> Self {
        if s == "causal" {
            AttentionMask::Causal
        } else {
            AttentionMask::Invalid(s.to_string())
        }
    }
}
impl From<Array> for AttentionMask {
    fn from(a: Array) -> Self {
        AttentionMask::Array(a)
    }
}
impl From<&Array> for AttentionMask {
    fn from(a: &Array) -> Self {
        AttentionMask::Array(a.clone())
    }
}
impl From<Option<&Array>> for AttentionMask {
    fn from(a: Option<&Array>) -> Self {
        a.map_or(AttentionMask::None, |a| AttentionMask::Array(a.clone()))
    }
}

/// Whether the CPU kernels take this dtype (others run the fallback composition).
fn kernel_dtype(dt: Dtype) -> bool {
    matches!(dt, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

/// The dtype the fallback computes in: at least float32.
fn compute_dtype(dt: Dtype) -> Dtype {
    if dt == Dtype::Float64 {
        Dtype::Float64
    } else {
        Dtype::Float32
    }
}

fn float_out(name: &str, dt: Dtype) -> Result<Dtype> {
    if !dt.is_float() {
        crate::bail!("[{name}] Received unsupported type {dt}: expected a floating point type.");
    }
    Ok(dt)
}

fn check_vector(name: &str, what: &str, a: &Array, n: usize) -> Result<()> {
    a.check()?;
    if a.shape() != [n] {
        crate::bail!("[{name}] {what} must have shape [{n}] (one value per element of the last axis), got {:?}.", a.shape());
    }
    Ok(())
}

fn norm(name: &str, x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32, layer: bool) -> Result<Array> {
    x.check()?;
    if x.ndim() == 0 {
        crate::bail!("[{name}] Input must have at least 1 dimension, got a scalar.");
    }
    let d = x.shape()[x.ndim() - 1];
    let mut dt = x.dtype();
    for (what, a) in [("weight", weight), ("bias", bias)] {
        if let Some(a) = a {
            check_vector(name, what, a, d)?;
            dt = promote_types(dt, a.dtype());
        }
    }
    let dt = float_out(name, dt)?;
    let mut inputs = vec![x.astype(dt)];
    inputs.extend(weight.map(|w| w.astype(dt)));
    inputs.extend(bias.map(|b| b.astype(dt)));
    let op = if layer {
        FastOp::LayerNorm { eps, has_weight: weight.is_some(), has_bias: bias.is_some() }
    } else {
        FastOp::RmsNorm { eps, has_weight: weight.is_some() }
    };
    Ok(if kernel_dtype(dt) { Array::from_op(Primitive::Fast(op), inputs) } else { fallback(&op, &inputs) })
}

/// Root-mean-square normalisation over the last axis: `x / sqrt(mean(x²) + eps) * weight`.
/// `weight` (optional) has the size of the last axis.
#[track_caller]
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Array {
    Array::build(|| norm("rms_norm", x, weight, None, eps, false))
}

/// Layer normalisation over the last axis: `(x - mean) / sqrt(var + eps) * weight + bias`.
#[track_caller]
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Array {
    Array::build(|| norm("layer_norm", x, weight, bias, eps, true))
}

/// Rotary position embedding of the first `dims` features of `x` (shape `[B, ..., T, D]`, at
/// least 3-d): feature pairs `(i, i + dims/2)` (or `(2i, 2i+1)` when `traditional`) are rotated
/// by `(offset + t) * scale * inv_freq[i]`, with `inv_freq[i] = base^(-2i/dims)` or
/// `1 / freqs[i]`. Exactly one of `base` and `freqs` must be given. `offset` is an integer, or
/// an integer array holding one offset or one per batch element.
#[track_caller]
pub fn rope(
    x: &Array,
    dims: usize,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offset: impl Into<RopeOffset>,
    freqs: Option<&Array>,
) -> Array {
    let offset = offset.into();
    Array::build(|| {
        let name = "rope";
        x.check()?;
        if x.ndim() < 3 {
            crate::bail!("[{name}] Input must have at least 3 dimensions, got shape {:?}.", x.shape());
        }
        let dt = float_out(name, x.dtype())?;
        let d = x.shape()[x.ndim() - 1];
        if dims % 2 != 0 || dims > d || dims == 0 {
            crate::bail!("[{name}] dims ({dims}) must be even, positive and at most the last axis ({d}).");
        }
        if base.is_some() == freqs.is_some() {
            crate::bail!("[{name}] Exactly one of `base` and `freqs` must be given (the other None).");
        }
        let off = match offset {
            RopeOffset::Int(v) => {
                if v < i32::MIN as i64 || v > i32::MAX as i64 {
                    crate::bail!("[{name}] offset {v} does not fit in int32.");
                }
                Array::scalar(v as i32)
            }
            RopeOffset::Array(a) => {
                a.check()?;
                if !a.dtype().is_integer() {
                    crate::bail!("[{name}] offset must be an integer array, got {}.", a.dtype());
                }
                let b = x.shape()[0];
                let s = a.shape();
                if !(s.is_empty() || s == [1] || s == [b]) {
                    crate::bail!("[{name}] offset must be a scalar or a vector of {b} offsets (the batch size), got shape {s:?}.");
                }
                let a = if s == [1] && b != 1 { super::reshape_to(&a, &[]) } else { a };
                a.astype(Dtype::Int32)
            }
        };
        let mut inputs = vec![x.clone(), off];
        if let Some(f) = freqs {
            check_vector(name, "freqs", f, dims / 2).map_err(|_| {
                crate::error::Error::invalid(format!("[{name}] freqs must have shape [{}] (dims / 2), got {:?}.", dims / 2, f.shape()))
            })?;
            if !f.dtype().is_float() {
                crate::bail!("[{name}] freqs must be a float array, got {}.", f.dtype());
            }
            inputs.push(f.astype(Dtype::Float32));
        }
        let op = FastOp::Rope { dims, traditional, base, scale };
        Ok(if kernel_dtype(dt) { Array::from_op(Primitive::Fast(op), inputs) } else { fallback(&op, &inputs) })
    })
}

/// Multi-head attention `softmax(scale · q kᵀ + mask) v` for `q: [B, Hq, qL, D]`,
/// `k: [B, Hkv, kL, D]`, `v: [B, Hkv, kL, Dv]`, where `Hkv` divides `Hq` (grouped-query and
/// multi-query attention: query head `h` reads key/value head `h / (Hq / Hkv)`). `sinks`
/// (shape `[Hq]`) adds one logit per head to each softmax denominator. The softmax runs in
/// float32 whatever the input precision.
#[track_caller]
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: impl Into<AttentionMask>,
    sinks: Option<&Array>,
) -> Array {
    let mask = mask.into();
    Array::build(|| {
        let name = "scaled_dot_product_attention";
        for a in [q, k, v] {
            a.check()?;
        }
        if q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 {
            crate::bail!(
                "[{name}] q, k and v must have 4 dimensions [B, heads, length, head_dim], got {:?}, {:?} and {:?}.",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs[3] != ks[3] {
            crate::bail!("[{name}] The head dimensions of q ({}) and k ({}) must agree.", qs[3], ks[3]);
        }
        if ks[1] != vs[1] || ks[2] != vs[2] {
            crate::bail!("[{name}] k {ks:?} and v {vs:?} must have the same number of heads and the same length.");
        }
        if qs[0] != ks[0] || qs[0] != vs[0] {
            crate::bail!("[{name}] q, k and v must have the same batch size, got {}, {} and {}.", qs[0], ks[0], vs[0]);
        }
        if ks[1] == 0 || qs[1] % ks[1] != 0 {
            crate::bail!("[{name}] The number of query heads ({}) must be a multiple of the number of key/value heads ({}).", qs[1], ks[1]);
        }
        let dt = float_out(name, promote_types(promote_types(q.dtype(), k.dtype()), v.dtype()))?;
        let full = [qs[0], qs[1], qs[2], ks[2]];
        let mut inputs = vec![q.astype(dt), k.astype(dt), v.astype(dt)];
        let kind = match mask {
            AttentionMask::None => MaskKind::None,
            AttentionMask::Causal => MaskKind::Causal,
            AttentionMask::Invalid(s) => crate::bail!("[{name}] Invalid mask type \"{s}\": the only string mask is \"causal\"."),
            AttentionMask::Array(m) => {
                m.check()?;
                if m.ndim() > 4 {
                    crate::bail!("[{name}] The mask can have at most 4 dimensions, got shape {:?}.", m.shape());
                }
                match broadcast_shapes(m.shape(), &full) {
                    Ok(s) if s == full => {}
                    _ => crate::bail!("[{name}] The mask of shape {:?} cannot be broadcast to the scores' shape {full:?}.", m.shape()),
                }
                let kind = if m.dtype() == Dtype::Bool {
                    MaskKind::Bool
                } else {
                    if promote_types(m.dtype(), dt) != dt {
                        crate::bail!("[{name}] An additive mask of type {} does not promote to the inputs' type {dt}.", m.dtype());
                    }
                    MaskKind::Additive
                };
                let m = if kind == MaskKind::Bool { m } else { m.astype(dt) };
                inputs.push(super::broadcast_to(&m, &full));
                kind
            }
        };
        if let Some(s) = sinks {
            s.check()?;
            if s.shape() != [qs[1]] {
                crate::bail!("[{name}] sinks must have shape [{}] (one per query head), got {:?}.", qs[1], s.shape());
            }
            if !s.dtype().is_float() || promote_types(s.dtype(), dt) != dt {
                crate::bail!("[{name}] sinks of type {} must be a float array whose type promotes to the inputs' type {dt}.", s.dtype());
            }
            inputs.push(s.astype(if kernel_dtype(dt) { Dtype::Float32 } else { dt }));
        }
        let op = FastOp::Sdpa { scale, mask: kind, has_sinks: sinks.is_some() };
        Ok(if kernel_dtype(dt) { Array::from_op(Primitive::Fast(op), inputs) } else { fallback(&op, &inputs) })
    })
}

/// `x[..., lo:hi]`.
fn last_range(x: &Array, lo: usize, hi: usize) -> Array {
    let nd = x.ndim();
    let mut start = vec![0isize; nd];
    let mut stop: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
    start[nd - 1] = lo as isize;
    stop[nd - 1] = hi as isize;
    super::slice_range(x, &start, &stop)
}

/// The node's computation with ordinary ops, on the node's inputs (already validated and cast
/// by the op). Differentiable, batchable, any float dtype.
pub fn fallback(op: &FastOp, inputs: &[Array]) -> Array {
    Array::build(|| fallback_impl(op, inputs))
}

fn fallback_impl(op: &FastOp, inputs: &[Array]) -> Result<Array> {
    let x = &inputs[0];
    let dt = x.dtype();
    let ct = compute_dtype(dt);
    match *op {
        FastOp::RmsNorm { eps, has_weight } => {
            let x32 = x.astype(ct);
            let n = super::rsqrt(&super::add(&super::mean(&super::square(&x32), -1isize, true), eps));
            let out = super::multiply(&x32, &n).astype(dt);
            Ok(if has_weight { super::multiply(&out, &inputs[1]) } else { out })
        }
        FastOp::LayerNorm { eps, has_weight, has_bias } => {
            let x32 = x.astype(ct);
            let mean = super::mean(&x32, -1isize, true);
            let var = super::var(&x32, -1isize, true, 0);
            let out = super::multiply(&super::subtract(&x32, &mean), &super::rsqrt(&super::add(&var, eps))).astype(dt);
            let mut i = 1;
            let out = if has_weight {
                i += 1;
                super::multiply(&out, &inputs[1])
            } else {
                out
            };
            Ok(if has_bias { super::add(&out, &inputs[i]) } else { out })
        }
        FastOp::Rope { dims, traditional, base, scale } => {
            let shape = x.shape().to_vec();
            let nd = shape.len();
            let (t, d, half) = (shape[nd - 2], shape[nd - 1], dims / 2);
            let off = inputs[1].astype(ct);
            // Positions: [T] for one offset, [B, 1, ..., 1, T] for one per batch element.
            let ar = super::arange_n(t, Some(ct));
            let pos = if off.ndim() == 0 {
                super::add(&ar, &off)
            } else {
                let mut s = vec![1usize; nd - 1];
                s[0] = shape[0];
                super::add(&super::reshape_to(&off, &s), &ar)
            };
            let pos = super::multiply(&pos, scale);
            let inv = match base {
                Some(b) => super::exp(&super::multiply(&super::arange_n(half, Some(ct)), -(b as f64).ln() / half as f64)),
                None => super::reciprocal(&inputs[2].astype(ct)),
            };
            let theta = super::multiply(&super::expand_dims(&pos, &[-1]), &inv);
            let (c, s) = (super::cos(&theta).astype(dt), super::sin(&theta).astype(dt));
            let rot = |x1: &Array, x2: &Array| {
                (
                    super::subtract(&super::multiply(x1, &c), &super::multiply(x2, &s)),
                    super::add(&super::multiply(x1, &s), &super::multiply(x2, &c)),
                )
            };
            let rotated = if traditional {
                let xr = last_range(x, 0, dims);
                let mut s2 = shape.clone();
                s2[nd - 1] = half;
                s2.push(2);
                let xr = super::reshape_to(&xr, &s2);
                let x1 = super::squeeze(&last_range(&xr, 0, 1), &[-1]);
                let x2 = super::squeeze(&last_range(&xr, 1, 2), &[-1]);
                let (o1, o2) = rot(&x1, &x2);
                let mut s3 = shape.clone();
                s3[nd - 1] = dims;
                super::reshape_to(&super::stack(&[o1, o2], -1), &s3)
            } else {
                let (o1, o2) = rot(&last_range(x, 0, half), &last_range(x, half, dims));
                super::concatenate(&[o1, o2], -1)
            };
            Ok(if dims < d { super::concatenate(&[rotated, last_range(x, dims, d)], -1) } else { rotated })
        }
        FastOp::Sdpa { scale, mask, has_sinks } => {
            let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
            let (qs, ks, vs) = (q.shape().to_vec(), k.shape().to_vec(), v.shape().to_vec());
            let (b, hq, ql, hkv, kl) = (qs[0], qs[1], qs[2], ks[1], ks[2]);
            let g = hq / hkv;
            // Query heads grouped under the key/value head they read.
            let q5 = super::reshape_to(&super::multiply(q, scale), &[b, hkv, g, ql, qs[3]]);
            let k5 = super::expand_dims(k, &[2]);
            let v5 = super::expand_dims(v, &[2]);
            let mut s = super::matmul(&q5, &super::swapaxes(&k5, -1, -2)).astype(ct);
            let lowest = if ct == Dtype::Float64 { f64::MIN } else { f32::MIN as f64 };
            let s5 = [b, hkv, g, ql, kl];
            match mask {
                MaskKind::None => {}
                MaskKind::Causal => {
                    let qi = super::reshape_to(&super::arange(kl as f64 - ql as f64, kl as f64, 1.0, Some(Dtype::Int32)), &[ql, 1]);
                    let kj = super::arange_n(kl, Some(Dtype::Int32));
                    s = super::where_(&super::greater_equal(&qi, &kj), &s, lowest);
                }
                MaskKind::Bool => s = super::where_(&super::reshape_to(&inputs[3], &s5), &s, lowest),
                MaskKind::Additive => s = super::add(&s, &super::reshape_to(&inputs[3], &s5).astype(ct)),
            }
            let p = if has_sinks {
                let sk = super::reshape_to(&inputs[inputs.len() - 1].astype(ct), &[1, hkv, g, 1, 1]);
                let sk = super::broadcast_to(&sk, &[b, hkv, g, ql, 1]);
                let p = super::softmax(&super::concatenate(&[sk, s], -1), -1isize, true);
                last_range(&p, 1, kl + 1)
            } else {
                super::softmax(&s, -1isize, true)
            };
            let o = super::matmul(&p.astype(dt), &v5);
            Ok(super::reshape_to(&o, &[b, hq, ql, vs[3]]))
        }
    }
}
