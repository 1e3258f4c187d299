//! Shapes, strides, broadcasting and axis normalisation.

use crate::error::{Error, Result};

pub type Shape = Vec<usize>;
/// Strides in elements (not bytes); views may have zero (broadcast) or negative (flip) strides.
pub type Strides = Vec<isize>;

pub fn size_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a dense array of `shape`.
pub fn row_major_strides(shape: &[usize]) -> Strides {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i].max(1) as isize;
    }
    strides
}

/// NumPy broadcasting of two shapes.
#[track_caller]
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Shape> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::invalid(format!("[broadcast_shapes] Shapes {a:?} and {b:?} cannot be broadcast.")));
        };
    }
    Ok(out)
}

pub fn broadcast_many(shapes: &[&[usize]]) -> Result<Shape> {
    let mut out: Shape = vec![];
    for s in shapes {
        out = broadcast_shapes(&out, s)?;
    }
    Ok(out)
}

/// Resolves a possibly negative axis against `ndim`; out of range is an `IndexOutOfRange` error.
#[track_caller]
pub fn normalize_axis(axis: isize, ndim: usize, op: &str) -> Result<usize> {
    let n = ndim as isize;
    if axis < -n || axis >= n {
        return Err(Error::index(format!("[{op}] Axis {axis} is out of bounds for array with {ndim} dimensions.")));
    }
    Ok(if axis < 0 { (axis + n) as usize } else { axis as usize })
}

/// Normalises a list of axes, rejecting duplicates.
#[track_caller]
pub fn normalize_axes(axes: &[isize], ndim: usize, op: &str) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = normalize_axis(a, ndim, op)?;
        if out.contains(&ax) {
            return Err(Error::invalid(format!("[{op}] Received duplicate axis {a}.")));
        }
        out.push(ax);
    }
    Ok(out)
}

/// Whether `strides` describe a dense row-major layout of `shape`.
pub fn is_row_contiguous(shape: &[usize], strides: &[isize]) -> bool {
    let mut expected = 1isize;
    for i in (0..shape.len()).rev() {
        if shape[i] == 1 {
            continue;
        }
        if strides[i] != expected {
            return false;
        }
        expected *= shape[i] as isize;
    }
    true
}

/// Whether the elements occupy a dense block of `size` elements in some axis order (so an
/// element-wise op can run over the flat block and keep the strides).
pub fn is_dense(shape: &[usize], strides: &[isize]) -> bool {
    let mut dims: Vec<(usize, isize)> = shape.iter().copied().zip(strides.iter().copied()).filter(|(d, _)| *d != 1).collect();
    if dims.iter().any(|&(_, s)| s <= 0) {
        return dims.is_empty();
    }
    dims.sort_by_key(|&(_, s)| s);
    let mut expected = 1isize;
    for (d, s) in dims {
        if s != expected {
            return false;
        }
        expected *= d as isize;
    }
    true
}
