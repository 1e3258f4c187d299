//! Array creation: full/zeros/ones, arange, linspace, eye/identity, tri/tril/triu, *_like, meshgrid.

use super::args::Operand;
use crate::array::Array;
use crate::dtype::{Dtype, Element, Scalar};
use crate::error::Error;
use crate::primitives::{CreationOp, Primitive};

/// A 0-d array holding `s` converted to `dtype`.
#[track_caller]
pub fn scalar_array(s: Scalar, dtype: Dtype) -> Array {
    crate::dispatch!(dtype, T => {
        let v: T = match s {
            Scalar::Bool(b) => T::from_i128(b as i128),
            Scalar::Int(i) => T::from_i128(i as i128),
            Scalar::Float(f) => T::from_f64(f),
            Scalar::Complex(re, im) => T::from_c32(num_complex::Complex32::new(re, im)),
        };
        Array::scalar(v)
    })
}

/// Turns an operand into an array: arrays as they are, scalars with `dtype` or their default.
#[track_caller]
pub fn to_array(x: impl Into<Operand>, dtype: Option<Dtype>) -> Array {
    match x.into() {
        Operand::Array(a) => match dtype {
            Some(d) => a.astype(d),
            None => a,
        },
        Operand::Scalar(s) => scalar_array(s, dtype.unwrap_or(s.default_dtype())),
    }
}

/// An array of `shape` filled with `value` (`dtype` defaults to the value's).
#[track_caller]
pub fn full(shape: &[usize], value: impl Into<Operand>, dtype: Option<Dtype>) -> Array {
    let v = to_array(value, dtype);
    super::broadcast_to(&v, shape)
}

#[track_caller]
pub fn zeros(shape: &[usize], dtype: Dtype) -> Array {
    full(shape, 0i32, Some(dtype))
}

#[track_caller]
pub fn ones(shape: &[usize], dtype: Dtype) -> Array {
    full(shape, 1i32, Some(dtype))
}

#[track_caller]
pub fn zeros_like(a: &Array) -> Array {
    zeros(a.shape(), a.dtype())
}

#[track_caller]
pub fn ones_like(a: &Array) -> Array {
    ones(a.shape(), a.dtype())
}

#[track_caller]
pub fn full_like(a: &Array, value: impl Into<Operand>, dtype: Option<Dtype>) -> Array {
    full(a.shape(), value, Some(dtype.unwrap_or(a.dtype())))
}

/// Values `start, start+step, …` below `stop` (MLX: float32 unless all arguments are integers).
#[track_caller]
pub fn arange(start: f64, stop: f64, step: f64, dtype: Option<Dtype>) -> Array {
    let all_int = start.fract() == 0.0 && stop.fract() == 0.0 && step.fract() == 0.0;
    let dtype = dtype.unwrap_or(if all_int { Dtype::Int32 } else { Dtype::Float32 });
    if step == 0.0 || !step.is_finite() || !start.is_finite() || !stop.is_finite() {
        return Array::error(Error::invalid(format!("[arange] Cannot compute length: start {start}, stop {stop}, step {step}.")));
    }
    if dtype == Dtype::Bool {
        return Array::error(Error::invalid("[arange] Cannot use bool dtype."));
    }
    let len = ((stop - start) / step).ceil().max(0.0);
    if len > i32::MAX as f64 {
        return Array::error(Error::invalid(format!("[arange] Maximum size exceeded: {len} elements.")));
    }
    Array::from_op(Primitive::Creation(CreationOp::Arange { start, step, len: len as usize, dtype }), vec![])
}

/// `arange(0, stop, 1)` with an integer dtype by default.
#[track_caller]
pub fn arange_n(stop: usize, dtype: Option<Dtype>) -> Array {
    arange(0.0, stop as f64, 1.0, dtype)
}

/// `num` evenly spaced values from `start` to `stop` inclusive (float32 by default).
#[track_caller]
pub fn linspace(start: f64, stop: f64, num: usize, dtype: Option<Dtype>) -> Array {
    let dtype = dtype.unwrap_or(Dtype::Float32);
    if num == 1 {
        return full(&[1], start, Some(dtype));
    }
    let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
    // start + i*step computed in f64, then cast (exact endpoints).
    let idx = arange(0.0, num as f64, 1.0, Some(Dtype::Float64));
    let v = super::add(&super::multiply(&idx, step), start);
    let v = super::where_(&super::equal(&idx, (num.max(1) - 1) as f64), stop, &v);
    v.astype(dtype)
}

/// An `n × m` matrix with ones on diagonal `k`.
#[track_caller]
pub fn eye(n: usize, m: Option<usize>, k: isize, dtype: Dtype) -> Array {
    let m = m.unwrap_or(n);
    let rows = super::reshape(&arange_n(n, Some(Dtype::Int64)), &[n as isize, 1]);
    let cols = arange_n(m, Some(Dtype::Int64));
    super::equal(&super::subtract(&cols, &rows), k as i64).astype(dtype)
}

#[track_caller]
pub fn identity(n: usize, dtype: Dtype) -> Array {
    eye(n, None, 0, dtype)
}

/// Ones at and below diagonal `k` of an `n × m` matrix.
#[track_caller]
pub fn tri(n: usize, m: Option<usize>, k: isize, dtype: Dtype) -> Array {
    let m = m.unwrap_or(n);
    let rows = super::reshape(&arange_n(n, Some(Dtype::Int64)), &[n as isize, 1]);
    let cols = arange_n(m, Some(Dtype::Int64));
    super::less_equal(&cols, &super::add(&rows, k as i64)).astype(dtype)
}

/// Zeroes the elements above diagonal `k` of the last two axes.
#[track_caller]
pub fn tril(x: &Array, k: isize) -> Array {
    if x.ndim() < 2 {
        return Array::error(Error::invalid("[tril] array must be at least 2-D"));
    }
    let (n, m) = (x.dim(-2), x.dim(-1));
    let mask = tri(n, Some(m), k, Dtype::Bool);
    super::where_(&mask, x, &zeros(&[], x.dtype()))
}

/// Zeroes the elements below diagonal `k` of the last two axes.
#[track_caller]
pub fn triu(x: &Array, k: isize) -> Array {
    if x.ndim() < 2 {
        return Array::error(Error::invalid("[triu] array must be at least 2-D"));
    }
    let (n, m) = (x.dim(-2), x.dim(-1));
    let mask = tri(n, Some(m), k - 1, Dtype::Bool);
    super::where_(&mask, &zeros(&[], x.dtype()), x)
}

/// Coordinate grids; `indexing` is "xy" (default in MLX) or "ij".
#[track_caller]
pub fn meshgrid(arrays: &[Array], sparse: bool, indexing: &str) -> Vec<Array> {
    if indexing != "xy" && indexing != "ij" {
        return vec![Array::error(Error::invalid(format!("[meshgrid] Invalid indexing value {indexing:?}; expected \"xy\" or \"ij\".")))];
    }
    let n = arrays.len();
    let mut shapes: Vec<Vec<isize>> = Vec::new();
    for (i, a) in arrays.iter().enumerate() {
        let mut s = vec![1isize; n];
        let mut pos = i;
        if indexing == "xy" && n >= 2 && i < 2 {
            pos = 1 - i;
        }
        s[pos] = a.size() as isize;
        shapes.push(s);
    }
    let outs: Vec<Array> = arrays.iter().zip(&shapes).map(|(a, s)| super::reshape(a, s)).collect();
    if sparse {
        return outs;
    }
    super::broadcast_arrays(&outs)
}
