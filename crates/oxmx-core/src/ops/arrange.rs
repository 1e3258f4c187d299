//! Shape ops built from views and copies: repeat, tile, roll, flip, unstack, diag, diagonal,
//! trace, and `pad` with MLX's modes.

use super::args::Operand;
use super::shape::SliceSpec;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::shape::normalize_axis;

fn ishape(s: &[usize]) -> Vec<isize> {
    s.iter().map(|&d| d as isize).collect()
}

/// Repeats each element `repeats` times along `axis` (`None`: of the flattened array).
#[track_caller]
pub fn repeat(a: &Array, repeats: usize, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, "repeat")?;
        let e = super::expand_dims(&x, &[ax as isize + 1]);
        let mut shape = e.shape().to_vec();
        shape[ax + 1] = repeats;
        let b = super::broadcast_to(&e, &shape);
        let mut out = ishape(x.shape());
        out[ax] *= repeats as isize;
        Ok(super::reshape(&super::contiguous(&b), &out))
    })
}

/// Tiles `a` by `reps` per axis (NumPy rules: shorter of `reps`/ndim is padded with 1s).
#[track_caller]
pub fn tile(a: &Array, reps: &[usize]) -> Array {
    Array::build(|| {
        let n = a.ndim().max(reps.len());
        let mut shape = vec![1usize; n - a.ndim()];
        shape.extend_from_slice(a.shape());
        let mut r = vec![1usize; n - reps.len()];
        r.extend_from_slice(reps);
        // (1, d0, 1, d1, …) broadcast to (r0, d0, r1, d1, …) then merged.
        let inter: Vec<isize> = shape.iter().flat_map(|&d| [1, d as isize]).collect();
        let target: Vec<usize> = shape.iter().zip(&r).flat_map(|(&d, &k)| [k, d]).collect();
        let b = super::broadcast_to(&super::reshape(a, &inter), &target);
        let out: Vec<isize> = shape.iter().zip(&r).map(|(&d, &k)| (d * k) as isize).collect();
        Ok(super::reshape(&super::contiguous(&b), &out))
    })
}

/// Rolls elements by `shift` along `axis` (`None`: the flattened array, then reshaped back).
#[track_caller]
pub fn roll(a: &Array, shift: isize, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, "roll")?;
        let n = x.shape().get(ax).copied().unwrap_or(0) as isize;
        if n == 0 {
            return Ok(a.clone());
        }
        let s = shift.rem_euclid(n);
        if s == 0 {
            return Ok(a.clone());
        }
        let parts = super::split_at(&x, &[n - s], ax as isize);
        let out = super::concatenate(&[parts[1].clone(), parts[0].clone()], ax as isize);
        Ok(if axis.is_none() { super::reshape(&out, &ishape(a.shape())) } else { out })
    })
}

/// Reverses the order of elements along `axes` (all axes when empty).
#[track_caller]
pub fn flip(a: &Array, axes: &[isize]) -> Array {
    Array::build(|| {
        let ax: Vec<usize> = if axes.is_empty() { (0..a.ndim()).collect() } else { crate::shape::normalize_axes(axes, a.ndim(), "flip")? };
        let specs: Vec<SliceSpec> =
            (0..a.ndim()).map(|d| if ax.contains(&d) { SliceSpec::new(None, None, -1) } else { SliceSpec::FULL }).collect();
        Ok(super::slice(a, &specs))
    })
}

/// Splits into the slices along `axis`, each without that axis.
#[track_caller]
pub fn unstack(a: &Array, axis: isize) -> Vec<Array> {
    let n = match normalize_axis(axis, a.ndim(), "unstack") {
        Ok(ax) => a.shape()[ax],
        Err(e) => return vec![Array::error(e.at(std::panic::Location::caller()))],
    };
    if n == 0 {
        return vec![];
    }
    super::split_equal(a, n, axis).iter().map(|p| super::squeeze(p, &[axis])).collect()
}

/// The diagonal `offset` of the plane (`axis1`, `axis2`), appended as the last axis.
#[track_caller]
pub fn diagonal(a: &Array, offset: isize, axis1: isize, axis2: isize) -> Array {
    Array::build(|| {
        let i = normalize_axis(axis1, a.ndim(), "diagonal")?;
        let j = normalize_axis(axis2, a.ndim(), "diagonal")?;
        if i == j {
            crate::bail!("[diagonal] axis1 and axis2 cannot be the same axis");
        }
        let strides = crate::shape::row_major_strides(a.shape());
        let (n1, n2) = (a.shape()[i] as isize, a.shape()[j] as isize);
        let len = if offset >= 0 { n1.min(n2 - offset) } else { (n1 + offset).min(n2) }.max(0) as usize;
        let start = if len == 0 {
            0
        } else if offset >= 0 {
            offset * strides[j]
        } else {
            -offset * strides[i]
        };
        let mut shape = Vec::new();
        let mut st = Vec::new();
        for d in 0..a.ndim() {
            if d != i && d != j {
                shape.push(a.shape()[d]);
                st.push(strides[d]);
            }
        }
        shape.push(len);
        st.push(strides[i] + strides[j]);
        if crate::shape::size_of(&shape) == 0 {
            return Ok(super::zeros(&shape, a.dtype()));
        }
        Ok(super::as_strided(a, &shape, &st, start as usize))
    })
}

/// 1-D input: a 2-D matrix with `a` on diagonal `k`; 2-D input: its diagonal `k`.
#[track_caller]
pub fn diag(a: &Array, k: isize) -> Array {
    Array::build(|| match a.ndim() {
        1 => {
            let n = a.size();
            let m = n + k.unsigned_abs();
            let mask = super::eye(m, None, k, Dtype::Bool);
            let padded = super::pad_constant(a, &[(0, k.unsigned_abs())], 0i32);
            let v = if k >= 0 { super::reshape(&padded, &[m as isize, 1]) } else { super::reshape(&padded, &[1, m as isize]) };
            Ok(super::where_(&mask, &v, &super::zeros(&[], a.dtype())))
        }
        2 => Ok(diagonal(a, k, 0, 1)),
        n => crate::bail!("[diag] array must be 1-D or 2-D, got {n}-D"),
    })
}

/// Sum along a diagonal (`dtype`: accumulation/output dtype, default as `sum`).
#[track_caller]
pub fn trace(a: &Array, offset: isize, axis1: isize, axis2: isize, dtype: Option<Dtype>) -> Array {
    let d = diagonal(a, offset, axis1, axis2);
    let d = match dtype {
        Some(dt) => d.astype(dt),
        None => d,
    };
    super::sum(&d, -1isize, false)
}

/// Pad modes as MLX: `Constant` fills with a value, `Edge` repeats the border values,
/// `Reflect` mirrors without repeating the border (`[2, 1 | 0, 1, 2]`), `Symmetric` mirrors
/// including it (`[1, 0 | 0, 1, 2]`); mirrored widths may exceed the axis (they wrap around).
#[derive(Clone, Debug)]
pub enum PadMode {
    Constant(Operand),
    Edge,
    Reflect,
    Symmetric,
}

/// Pads each axis by `(low, high)`.
#[track_caller]
pub fn pad(a: &Array, widths: &[(usize, usize)], mode: PadMode) -> Array {
    match mode {
        PadMode::Constant(v) => super::pad_constant(a, widths, v),
        PadMode::Edge => Array::build(|| pad_edge(a, widths)),
        PadMode::Reflect => Array::build(|| pad_mirror(a, widths, false)),
        PadMode::Symmetric => Array::build(|| pad_mirror(a, widths, true)),
    }
}

/// Reflect/symmetric padding: one gather per padded axis with indices computed here.
fn pad_mirror(a: &Array, widths: &[(usize, usize)], symmetric: bool) -> Result<Array> {
    if widths.len() != a.ndim() {
        crate::bail!("[pad] Invalid number of padding sizes passed to pad with axes of size {}", widths.len());
    }
    let mut x = a.clone();
    for (ax, &(lo, hi)) in widths.iter().enumerate() {
        if lo == 0 && hi == 0 {
            continue;
        }
        let n = x.shape()[ax] as i64;
        if n == 0 {
            crate::bail!("[pad] Cannot pad axis {ax} of size 0 in mode {}", if symmetric { "symmetric" } else { "reflect" });
        }
        let source = |j: i64| -> u32 {
            let (period, m) = if symmetric {
                (2 * n, j.rem_euclid(2 * n))
            } else if n == 1 {
                (1, 0)
            } else {
                (2 * n - 2, j.rem_euclid(2 * n - 2))
            };
            let k = if m < n {
                m
            } else if symmetric {
                period - 1 - m
            } else {
                period - m
            };
            k as u32
        };
        let idx: Vec<u32> = (-(lo as i64)..n + hi as i64).map(source).collect();
        x = super::take(&x, &Array::vec(&idx), Some(ax as isize));
    }
    Ok(x)
}

fn pad_edge(a: &Array, widths: &[(usize, usize)]) -> Result<Array> {
    if widths.len() != a.ndim() {
        crate::bail!("[pad] Invalid number of padding sizes passed to pad with axes of size {}", widths.len());
    }
    let mut x = a.clone();
    for (ax, &(lo, hi)) in widths.iter().enumerate() {
        if lo == 0 && hi == 0 {
            continue;
        }
        let n = x.shape()[ax];
        if n == 0 {
            crate::bail!("[pad] Cannot edge-pad axis {ax} of size 0");
        }
        let edge = |at: isize, count: usize| {
            let mut specs = vec![SliceSpec::FULL; x.ndim()];
            specs[ax] = SliceSpec::new(Some(at), Some(at + 1), 1);
            let e = super::slice(&x, &specs);
            let mut shape = e.shape().to_vec();
            shape[ax] = count;
            super::broadcast_to(&e, &shape)
        };
        let mut parts = vec![];
        if lo > 0 {
            parts.push(edge(0, lo));
        }
        parts.push(x.clone());
        if hi > 0 {
            parts.push(edge(n as isize - 1, hi));
        }
        x = super::concatenate(&parts, ax as isize);
    }
    Ok(x)
}
