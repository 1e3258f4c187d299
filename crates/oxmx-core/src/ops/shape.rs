//! Shape ops: reshape, flatten, squeeze, expand_dims, transpose, broadcast_to, slicing,
//! concatenate/stack/split, pad, and friends.

use crate::array::Array;
use crate::error::{Error, Result};
use crate::primitives::{Primitive, ShapeOp};
use crate::shape::{normalize_axes, normalize_axis, size_of, Shape};

/// Reshapes; one dimension may be -1 (inferred).
#[track_caller]
pub fn reshape(a: &Array, shape: &[isize]) -> Array {
    Array::build(|| {
        let s = infer_shape(a.size(), shape)?;
        if s == a.shape() {
            return Ok(a.clone());
        }
        Ok(Array::from_op(Primitive::Shape(ShapeOp::Reshape(s)), vec![a.clone()]))
    })
}

/// Resolves a shape with at most one -1 against `size` elements.
pub fn infer_shape(size: usize, shape: &[isize]) -> Result<Shape> {
    let mut infer = None;
    let mut known = 1usize;
    for (i, &d) in shape.iter().enumerate() {
        if d == -1 {
            if infer.is_some() {
                crate::bail!("[reshape] Reshape can only infer one dimension.");
            }
            infer = Some(i);
        } else if d < 0 {
            crate::bail!("[reshape] Invalid dimension {d} in shape {shape:?}.");
        } else {
            known *= d as usize;
        }
    }
    let mut out: Shape = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || size % known != 0 {
            crate::bail!("[reshape] Cannot infer the shape of an empty array or reshape array of size {size} into shape {shape:?}.");
        }
        out[i] = size / known;
    } else if known != size {
        crate::bail!("[reshape] Cannot reshape array of size {size} into shape {shape:?}.");
    }
    Ok(out)
}

/// Shorthand for a `usize` shape.
#[track_caller]
pub fn reshape_to(a: &Array, shape: &[usize]) -> Array {
    let s: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    reshape(a, &s)
}

/// Merges axes `start_axis..=end_axis` into one.
#[track_caller]
pub fn flatten(a: &Array, start_axis: isize, end_axis: isize) -> Array {
    Array::build(|| {
        let nd = a.ndim().max(1);
        let s = normalize_axis(start_axis, nd, "flatten")?;
        let e = normalize_axis(end_axis, nd, "flatten")?;
        if a.ndim() == 0 {
            return Ok(reshape(a, &[1]));
        }
        if s > e {
            crate::bail!("[flatten] start_axis must be less than or equal to end_axis");
        }
        let mut shape: Vec<isize> = a.shape()[..s].iter().map(|&d| d as isize).collect();
        shape.push(a.shape()[s..=e].iter().product::<usize>() as isize);
        shape.extend(a.shape()[e + 1..].iter().map(|&d| d as isize));
        Ok(reshape(a, &shape))
    })
}

/// Splits `axis` into `shape` (which may hold one -1).
#[track_caller]
pub fn unflatten(a: &Array, axis: isize, shape: &[isize]) -> Array {
    Array::build(|| {
        let ax = normalize_axis(axis, a.ndim(), "unflatten")?;
        if shape.is_empty() {
            crate::bail!("[unflatten] Shape to unflatten to cannot be empty.");
        }
        let inner = infer_shape(a.shape()[ax], shape)?;
        let mut out: Vec<isize> = a.shape()[..ax].iter().map(|&d| d as isize).collect();
        out.extend(inner.iter().map(|&d| d as isize));
        out.extend(a.shape()[ax + 1..].iter().map(|&d| d as isize));
        Ok(reshape(a, &out))
    })
}

/// Removes size-1 axes (all of them when `axes` is empty).
#[track_caller]
pub fn squeeze(a: &Array, axes: &[isize]) -> Array {
    Array::build(|| {
        let ax = normalize_axes(axes, a.ndim(), "squeeze")?;
        for &x in &ax {
            if a.shape()[x] != 1 {
                crate::bail!("[squeeze] Cannot squeeze axis {x} with size {} which is not equal to 1.", a.shape()[x]);
            }
        }
        let shape: Vec<isize> = a
            .shape()
            .iter()
            .enumerate()
            .filter(|(i, &d)| if ax.is_empty() { d != 1 } else { !ax.contains(i) })
            .map(|(_, &d)| d as isize)
            .collect();
        Ok(reshape(a, &shape))
    })
}

/// Inserts size-1 axes at `axes` (positions in the output).
#[track_caller]
pub fn expand_dims(a: &Array, axes: &[isize]) -> Array {
    Array::build(|| {
        let out_nd = a.ndim() + axes.len();
        let ax = normalize_axes(axes, out_nd, "expand_dims")?;
        let mut shape = Vec::with_capacity(out_nd);
        let mut src = a.shape().iter();
        for i in 0..out_nd {
            if ax.contains(&i) {
                shape.push(1isize);
            } else {
                shape.push(*src.next().unwrap() as isize);
            }
        }
        Ok(reshape(a, &shape))
    })
}

/// Permutes axes (reverses them when `axes` is empty).
#[track_caller]
pub fn transpose(a: &Array, axes: &[isize]) -> Array {
    Array::build(|| {
        let perm: Vec<usize> = if axes.is_empty() {
            (0..a.ndim()).rev().collect()
        } else {
            if axes.len() != a.ndim() {
                crate::bail!("[transpose] Received {} axes for array with {} dimensions.", axes.len(), a.ndim());
            }
            normalize_axes(axes, a.ndim(), "transpose")?
        };
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(a.clone());
        }
        Ok(Array::from_op(Primitive::Shape(ShapeOp::Transpose(perm)), vec![a.clone()]))
    })
}

#[track_caller]
pub fn swapaxes(a: &Array, axis1: isize, axis2: isize) -> Array {
    Array::build(|| {
        let i = normalize_axis(axis1, a.ndim(), "swapaxes")?;
        let j = normalize_axis(axis2, a.ndim(), "swapaxes")?;
        let mut perm: Vec<isize> = (0..a.ndim() as isize).collect();
        perm.swap(i, j);
        Ok(transpose(a, &perm))
    })
}

#[track_caller]
pub fn moveaxis(a: &Array, source: isize, destination: isize) -> Array {
    Array::build(|| {
        let s = normalize_axis(source, a.ndim(), "moveaxis")?;
        let d = normalize_axis(destination, a.ndim(), "moveaxis")?;
        let mut perm: Vec<isize> = (0..a.ndim() as isize).collect();
        let v = perm.remove(s);
        perm.insert(d, v);
        Ok(transpose(a, &perm))
    })
}

/// Broadcasts to `shape` (a zero-copy view).
#[track_caller]
pub fn broadcast_to(a: &Array, shape: &[usize]) -> Array {
    if a.shape() == shape {
        return a.clone();
    }
    Array::from_op(Primitive::Shape(ShapeOp::Broadcast(shape.to_vec())), vec![a.clone()])
}

/// A strided slice with Python semantics per axis (`None` bounds mean the ends).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct SliceSpec {
    pub start: Option<isize>,
    pub stop: Option<isize>,
    pub step: isize,
}

impl SliceSpec {
    pub const FULL: SliceSpec = SliceSpec { start: None, stop: None, step: 1 };
    pub fn new(start: Option<isize>, stop: Option<isize>, step: isize) -> SliceSpec {
        SliceSpec { start, stop, step }
    }
    /// Resolved (start, length) for an axis of size `n` (Python's `slice.indices`).
    pub fn resolve(&self, n: usize) -> Result<(usize, usize)> {
        let n = n as isize;
        let step = self.step;
        if step == 0 {
            crate::bail!("[slice] slice step cannot be zero");
        }
        let clamp = |v: isize, lo: isize, hi: isize| v.max(lo).min(hi);
        let norm = |v: isize| if v < 0 { v + n } else { v };
        let (start, stop) = if step > 0 {
            (self.start.map_or(0, |s| clamp(norm(s), 0, n)), self.stop.map_or(n, |s| clamp(norm(s), 0, n)))
        } else {
            (self.start.map_or(n - 1, |s| clamp(norm(s), -1, n - 1)), self.stop.map_or(-1, |s| clamp(norm(s), -1, n - 1)))
        };
        let len = if step > 0 { (stop - start + step - 1).div_euclid(step) } else { (start - stop - step - 1).div_euclid(-step) };
        let len = len.max(0) as usize;
        Ok((if len == 0 { 0 } else { start as usize }, len))
    }
}

/// Per-axis (start, step, length) of `specs` over `shape` (missing trailing axes taken whole).
pub(crate) fn resolve_slices(shape: &[usize], specs: &[SliceSpec], op: &str) -> Result<(Vec<usize>, Vec<isize>, Vec<usize>)> {
    if specs.len() > shape.len() {
        return Err(Error::index(format!("[{op}] Too many indices ({}) for array with {} dimensions.", specs.len(), shape.len())));
    }
    let (mut start, mut step, mut len) = (vec![], vec![], vec![]);
    for (i, &n) in shape.iter().enumerate() {
        let s = specs.get(i).copied().unwrap_or(SliceSpec::FULL);
        let (st, l) = s.resolve(n)?;
        start.push(st);
        step.push(s.step);
        len.push(l);
    }
    Ok((start, step, len))
}

/// Slices every axis with `specs` (missing trailing axes are taken whole).
#[track_caller]
pub fn slice(a: &Array, specs: &[SliceSpec]) -> Array {
    Array::build(|| {
        let (start, step, len) = resolve_slices(a.shape(), specs, "slice")?;
        if len == a.shape() && step.iter().all(|&s| s == 1) {
            return Ok(a.clone());
        }
        Ok(Array::from_op(Primitive::Shape(ShapeOp::Slice { start, step, len }), vec![a.clone()]))
    })
}

/// `a[start:stop]` along every axis with step 1 (MLX's `slice(a, start, stop)` with static bounds).
#[track_caller]
pub fn slice_range(a: &Array, start: &[isize], stop: &[isize]) -> Array {
    let specs: Vec<SliceSpec> = start.iter().zip(stop).map(|(&s, &e)| SliceSpec::new(Some(s), Some(e), 1)).collect();
    slice(a, &specs)
}

/// A row-major contiguous copy (or the array itself if already so).
#[track_caller]
pub fn contiguous(a: &Array) -> Array {
    Array::from_op(Primitive::Shape(ShapeOp::Copy), vec![a.clone()])
}

/// A strided view of the row-major data (`shape`, element `strides`, element `offset`).
#[track_caller]
pub fn as_strided(a: &Array, shape: &[usize], strides: &[isize], offset: usize) -> Array {
    Array::build(|| {
        if shape.len() != strides.len() {
            crate::bail!("[as_strided] shape {shape:?} and strides {strides:?} must have the same length");
        }
        // The view must stay inside the data.
        if size_of(shape) > 0 {
            let (mut lo, mut hi) = (offset as isize, offset as isize);
            for (&d, &s) in shape.iter().zip(strides) {
                let span = (d as isize - 1) * s;
                if span < 0 {
                    lo += span
                } else {
                    hi += span
                }
            }
            if lo < 0 || hi >= a.size() as isize {
                crate::bail!("[as_strided] The view reads elements {lo}..={hi} of an array of size {}.", a.size());
            }
        }
        Ok(Array::from_op(
            Primitive::Shape(ShapeOp::AsStrided { shape: shape.to_vec(), strides: strides.to_vec(), offset }),
            vec![a.clone()],
        ))
    })
}

/// Joins arrays along an existing axis (dtypes are promoted).
#[track_caller]
pub fn concatenate(arrays: &[Array], axis: isize) -> Array {
    Array::build(|| {
        let Some(first) = arrays.first() else { crate::bail!("[concatenate] No arrays provided for concatenation") };
        let ax = normalize_axis(axis, first.ndim(), "concatenate")?;
        let dt = arrays.iter().skip(1).fold(first.dtype(), |d, a| crate::dtype::promote_types(d, a.dtype()));
        let inputs: Vec<Array> = arrays.iter().map(|a| a.astype(dt)).collect();
        if inputs.len() == 1 {
            return Ok(inputs[0].clone());
        }
        Ok(Array::from_op(Primitive::Shape(ShapeOp::Concatenate { axis: ax }), inputs))
    })
}

/// Joins arrays along a new axis.
#[track_caller]
pub fn stack(arrays: &[Array], axis: isize) -> Array {
    Array::build(|| {
        let Some(first) = arrays.first() else { crate::bail!("[stack] No arrays provided for stacking") };
        if arrays.iter().any(|a| a.shape() != first.shape()) {
            crate::bail!("[stack] All arrays must have the same shape");
        }
        let ax = normalize_axis(axis, first.ndim() + 1, "stack")? as isize;
        let expanded: Vec<Array> = arrays.iter().map(|a| expand_dims(a, &[ax])).collect();
        Ok(concatenate(&expanded, ax))
    })
}

/// Splits into `n` equal parts along `axis`.
#[track_caller]
pub fn split_equal(a: &Array, n: usize, axis: isize) -> Vec<Array> {
    let res = (|| -> Result<Vec<Array>> {
        let ax = normalize_axis(axis, a.ndim(), "split")?;
        if n == 0 || a.shape()[ax] % n != 0 {
            crate::bail!("[split] Array split does not result in sub arrays with equal size");
        }
        let step = a.shape()[ax] / n;
        let idx: Vec<isize> = (1..n).map(|i| (i * step) as isize).collect();
        Ok(split_at(a, &idx, axis))
    })();
    res.unwrap_or_else(|e| vec![Array::error(e.at(std::panic::Location::caller()))])
}

/// Splits at the given indices along `axis`.
#[track_caller]
pub fn split_at(a: &Array, indices: &[isize], axis: isize) -> Vec<Array> {
    let res = (|| -> Result<Vec<Array>> {
        let ax = normalize_axis(axis, a.ndim(), "split")?;
        let n = a.shape()[ax] as isize;
        let mut bounds = vec![0isize];
        bounds.extend(indices.iter().map(|&i| if i < 0 { (i + n).max(0) } else { i.min(n) }));
        bounds.push(n);
        let mut out = Vec::new();
        for w in bounds.windows(2) {
            let mut specs = vec![SliceSpec::FULL; a.ndim()];
            specs[ax] = SliceSpec::new(Some(w[0]), Some(w[1].max(w[0])), 1);
            out.push(slice(a, &specs));
        }
        Ok(out)
    })();
    res.unwrap_or_else(|e| vec![Array::error(e.at(std::panic::Location::caller()))])
}

/// Constant padding with `(low, high)` per axis.
#[track_caller]
pub fn pad_constant(a: &Array, widths: &[(usize, usize)], value: impl Into<super::Operand>) -> Array {
    Array::build(|| {
        if widths.len() != a.ndim() {
            crate::bail!("[pad] Invalid number of padding sizes passed to pad with axes of size {}", widths.len());
        }
        let v = super::to_array(value, Some(a.dtype()));
        let (low, high) = widths.iter().copied().unzip();
        Ok(Array::from_op(Primitive::Shape(ShapeOp::Pad { low, high }), vec![a.clone(), v]))
    })
}

/// Views with at least 1, 2 or 3 dimensions.
#[track_caller]
pub fn atleast_1d(a: &Array) -> Array {
    if a.ndim() >= 1 {
        a.clone()
    } else {
        reshape(a, &[1])
    }
}
#[track_caller]
pub fn atleast_2d(a: &Array) -> Array {
    match a.ndim() {
        0 => reshape(a, &[1, 1]),
        1 => reshape(a, &[1, a.shape()[0] as isize]),
        _ => a.clone(),
    }
}
#[track_caller]
pub fn atleast_3d(a: &Array) -> Array {
    match a.ndim() {
        0 => reshape(a, &[1, 1, 1]),
        1 => reshape(a, &[1, a.shape()[0] as isize, 1]),
        2 => reshape(a, &[a.shape()[0] as isize, a.shape()[1] as isize, 1]),
        _ => a.clone(),
    }
}
