//! Derivatives of reductions, scans and the fused row ops. Reduce keeps reduced axes as size 1,
//! so the cotangent broadcasts straight back to the input.

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ops as o;
use crate::primitives::reduce::{ReduceKind, ScanKind};
use crate::primitives::ReduceOp;

pub(super) fn vjp(op: &ReduceOp, x: &Array, y: &Array, g: &Array) -> Result<Array> {
    let last = x.ndim() as isize - 1;
    Ok(match op {
        ReduceOp::Reduce { kind, axes, .. } => {
            let gb = o::broadcast_to(g, x.shape());
            match kind {
                ReduceKind::Sum => gb.astype(x.dtype()),
                // Exact when x has no zeros (as MLX's rule).
                ReduceKind::Prod => gb * o::broadcast_to(y, x.shape()) / x,
                ReduceKind::Max | ReduceKind::Min => {
                    // Ties share the cotangent equally.
                    let mask = o::equal(x, &o::broadcast_to(y, x.shape())).astype(x.dtype());
                    let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
                    gb * &mask / o::sum(&mask, ax, true)
                }
                ReduceKind::And | ReduceKind::Or => o::zeros_like(x),
            }
        }
        ReduceOp::ArgMax { .. } | ReduceOp::ArgMin { .. } => o::zeros_like(x),
        ReduceOp::Scan { kind, axis, reverse, inclusive } => scan(*kind, *axis, *reverse, *inclusive, x, y, g)?,
        ReduceOp::Softmax => y * (g - o::sum(&(g * y), last, true)),
        ReduceOp::LogSumExp => g * o::exp(&(x - y)),
        ReduceOp::Var { ddof } => {
            let n = x.shape()[x.ndim() - 1] as f64;
            let centred = x - o::mean(x, last, true);
            g * centred * (2.0 / (n - *ddof as f64))
        }
    })
}

fn scan(kind: ScanKind, axis: usize, reverse: bool, inclusive: bool, x: &Array, y: &Array, g: &Array) -> Result<Array> {
    let ax = Some(axis as isize);
    Ok(match kind {
        // dy_j/dx_i = 1 for every j the sum at i reaches: the sum taken the other way.
        ScanKind::Sum => o::cumsum(g, ax, !reverse, inclusive),
        // dy_j/dx_i = y_j / x_i for those j (exact when x has no zeros, as MLX's rule).
        ScanKind::Prod => o::cumsum(&(g * y), ax, !reverse, inclusive) / x,
        // dy_j/dx_i = exp(x_i - y_j); shifted by the row max of x to keep exp in range.
        ScanKind::LogAddExp => {
            let c = o::max(x, axis as isize, true);
            o::exp(&(x - &c)) * o::cumsum(&(g * o::exp(&(&c - y))), ax, !reverse, inclusive)
        }
        ScanKind::Max | ScanKind::Min => {
            if !inclusive {
                return Err(Error::invalid("[vjp] the derivative of an exclusive cummax/cummin is not implemented"));
            }
            if reverse {
                let f = |a: &Array| o::flip(a, &[axis as isize]);
                return Ok(f(&running_extreme(axis, &f(x), &f(y), &f(g))));
            }
            running_extreme(axis, x, y, g)
        }
    })
}

/// Forward inclusive cummax/cummin: y_j comes from the last "record" position i <= j (where
/// x_i == y_i), so x_i receives the sum of g over [i, next record), zero if i is no record.
fn running_extreme(axis: usize, x: &Array, y: &Array, g: &Array) -> Array {
    let n = x.shape()[axis];
    let ax = Some(axis as isize);
    let mut iota_shape = vec![1usize; x.ndim()];
    iota_shape[axis] = n;
    let iota = o::broadcast_to(&o::reshape_to(&o::arange_n(n, Some(crate::Dtype::Int32)), &iota_shape), x.shape());
    let record = o::equal(x, y);
    // Position of the next record after i (n if none), then the inclusive sum of g up to it.
    let rec_pos = o::where_(&record, &iota, n as i32);
    let next = o::cummin(&rec_pos, ax, true, false);
    let next = o::minimum(&next, n as i32); // the exclusive scan's identity at the end
    let s = o::cumsum(g, ax, false, true);
    let mut zero_shape = x.shape().to_vec();
    zero_shape[axis] = 1;
    let zero = o::zeros(&zero_shape, g.dtype());
    let s_pad = o::concatenate(&[zero, s], axis as isize); // s_pad[k] = sum of g[..k]
    let upto_next = o::take_along_axis(&s_pad, &next, ax);
    let before = o::take_along_axis(&s_pad, &iota, ax);
    o::where_(&record, upto_next - before, 0.0)
}
