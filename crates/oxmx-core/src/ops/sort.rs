//! Sorting ops: sort, argsort, partition, argpartition, topk (see primitives/sort.rs).
//! `axis: None` sorts the flattened array, as in MLX.

use super::SliceSpec;
use crate::array::Array;
use crate::error::{Error, Result};
use crate::primitives::{Primitive, SortOp};
use crate::shape::normalize_axis;

/// The array to work on and the resolved axis (`None` flattens).
fn prepare(a: &Array, axis: Option<isize>, name: &str) -> Result<(Array, usize)> {
    match axis {
        None => Ok((super::reshape(a, &[-1]), 0)),
        Some(ax) => {
            if a.ndim() == 0 {
                return Err(Error::invalid(format!("[{name}] Cannot sort a 0-d array along an axis.")));
            }
            Ok((a.clone(), normalize_axis(ax, a.ndim(), name)?))
        }
    }
}

/// Resolves a (possibly negative) `kth` against an axis of size `n`.
fn resolve_kth(kth: isize, n: usize, name: &str) -> Result<usize> {
    let k = if kth < 0 { kth + n as isize } else { kth };
    if k < 0 || k >= n as isize {
        return Err(Error::invalid(format!("[{name}] Received invalid kth {kth} along axis of size {n}")));
    }
    Ok(k as usize)
}

/// The values sorted along `axis` (ascending, NaNs last).
#[track_caller]
pub fn sort(a: &Array, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = prepare(a, axis, "sort")?;
        Ok(Array::from_op(Primitive::Sort(SortOp::Sort { axis: ax }), vec![x]))
    })
}

/// Indices (uint32) that sort `a` along `axis`; stable for equal values.
#[track_caller]
pub fn argsort(a: &Array, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = prepare(a, axis, "argsort")?;
        Ok(Array::from_op(Primitive::Sort(SortOp::ArgSort { axis: ax }), vec![x]))
    })
}

#[track_caller]
fn partition_impl(a: &Array, kth: isize, axis: Option<isize>, arg: bool) -> Array {
    let name = if arg { "argpartition" } else { "partition" };
    Array::build(|| {
        let (x, ax) = prepare(a, axis, name)?;
        let n = x.shape()[ax];
        if n == 0 {
            return Ok(if arg { x.astype(crate::dtype::Dtype::Uint32) } else { x });
        }
        let k = resolve_kth(kth, n, name)?;
        let op = if arg { SortOp::ArgPartition { axis: ax, kth: k } } else { SortOp::Partition { axis: ax, kth: k } };
        Ok(Array::from_op(Primitive::Sort(op), vec![x]))
    })
}

/// `a` rearranged along `axis` so that position `kth` holds the value it would have when sorted,
/// with no larger value before it and no smaller value after it. Negative `kth` counts from the end.
#[track_caller]
pub fn partition(a: &Array, kth: isize, axis: Option<isize>) -> Array {
    partition_impl(a, kth, axis, false)
}

/// Indices (uint32) that partition `a` (see [`partition`]).
#[track_caller]
pub fn argpartition(a: &Array, kth: isize, axis: Option<isize>) -> Array {
    partition_impl(a, kth, axis, true)
}

/// The `k` largest values along `axis` (in no particular order), as MLX: the last `k` entries of
/// `partition(a, -k)`.
#[track_caller]
pub fn topk(a: &Array, k: usize, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = prepare(a, axis, "topk")?;
        let n = x.shape()[ax];
        if k > n {
            crate::bail!("[topk] Received invalid k={k} along axis {ax} of size {n}");
        }
        let mut specs = vec![SliceSpec::FULL; x.ndim()];
        specs[ax] = SliceSpec::new(Some((n - k) as isize), None, 1);
        if k == 0 {
            return Ok(super::slice(&x, &specs));
        }
        let p = Array::from_op(Primitive::Sort(SortOp::Partition { axis: ax, kth: n - k }), vec![x]);
        Ok(super::slice(&p, &specs))
    })
}
