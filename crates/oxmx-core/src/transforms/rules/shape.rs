//! Derivatives of the shape/layout family: each cotangent is the adjoint layout change.

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::{IndexOp, Primitive, ShapeOp};

/// Sums `g` over the axes that broadcasting from `shape` added or stretched.
pub(crate) fn sum_to_shape(g: &Array, shape: &[usize]) -> Array {
    if g.shape() == shape {
        return g.clone();
    }
    let lead = g.ndim() - shape.len();
    let axes: Vec<isize> = (0..g.ndim()).filter(|&d| d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)).map(|d| d as isize).collect();
    o::reshape_to(&o::sum(g, axes, true), shape)
}

pub(super) fn vjp(op: &ShapeOp, inputs: &[Array], g: &Array, i: usize) -> Result<Array> {
    let x = &inputs[0];
    Ok(match op {
        ShapeOp::Reshape(_) => o::reshape_to(g, x.shape()),
        ShapeOp::Broadcast(_) => sum_to_shape(g, x.shape()),
        ShapeOp::Transpose(perm) => {
            let mut inv = vec![0isize; perm.len()];
            for (d, &p) in perm.iter().enumerate() {
                inv[p] = d as isize;
            }
            o::transpose(g, &inv)
        }
        ShapeOp::Slice { start, step, len } => Array::from_op(
            Primitive::Index(IndexOp::SliceUpdate { start: start.clone(), step: step.clone(), len: len.clone() }),
            vec![o::zeros_like(x), g.clone()],
        ),
        ShapeOp::AsStrided { shape, strides, offset } => {
            // Every output element reads one flat input position: add the cotangents there.
            let n = x.size();
            let pos = o::as_strided(&o::arange_n(n, Some(crate::Dtype::Int64)), shape, strides, *offset);
            let m = g.size();
            let flat = o::scatter_add(&o::zeros(&[n], g.dtype()), &[o::reshape_to(&pos, &[m])], &o::reshape_to(g, &[m, 1]), &[0]);
            o::reshape_to(&flat, x.shape())
        }
        ShapeOp::Copy => g.clone(),
        ShapeOp::StopGradient => o::zeros_like(x),
        ShapeOp::Concatenate { axis } => {
            let at: usize = inputs[..i].iter().map(|a| a.shape()[*axis]).sum();
            let mut start = vec![0isize; g.ndim()];
            let mut stop: Vec<isize> = g.shape().iter().map(|&d| d as isize).collect();
            start[*axis] = at as isize;
            stop[*axis] = (at + inputs[i].shape()[*axis]) as isize;
            o::slice_range(g, &start, &stop)
        }
        ShapeOp::Pad { low, .. } => {
            let start: Vec<isize> = low.iter().map(|&l| l as isize).collect();
            let stop: Vec<isize> = low.iter().zip(x.shape()).map(|(&l, &d)| (l + d) as isize).collect();
            let inner = o::slice_range(g, &start, &stop);
            if i == 0 {
                inner
            } else {
                // The pad value fills every position outside x.
                o::sum(g, None, false) - o::sum(&inner, None, false)
            }
        }
    })
}
