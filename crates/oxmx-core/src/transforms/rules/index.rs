//! Derivatives of gather, scatter and slice_update.

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ops as o;
use crate::primitives::index::ScatterKind;
use crate::primitives::{IndexOp, Primitive, ShapeOp};

pub(super) fn vjp(op: &IndexOp, inputs: &[Array], g: &Array, i: usize) -> Result<Array> {
    let x = &inputs[0];
    let last = inputs.len() - 1;
    Ok(match op {
        IndexOp::Gather { axes, slice_sizes } => {
            if i != 0 {
                return Ok(o::zeros_like(&inputs[i]));
            }
            // Scatter-add the gathered slices back; slices narrower than x on non-indexed axes
            // (they start at 0 there) are padded to x's extent first.
            let nidx = g.ndim() - slice_sizes.len();
            let mut widths = vec![(0usize, 0usize); g.ndim()];
            for (d, &s) in slice_sizes.iter().enumerate() {
                if !axes.contains(&d) {
                    widths[nidx + d].1 = x.shape()[d] - s;
                }
            }
            let upd = if widths.iter().any(|w| w.1 > 0) { o::pad_constant(g, &widths, 0.0) } else { g.clone() };
            let mut ins = vec![o::zeros_like(x)];
            ins.extend(inputs[1..].iter().cloned());
            ins.push(upd);
            Array::from_op(Primitive::Index(IndexOp::Scatter { kind: ScatterKind::Add, axes: axes.clone() }), ins)
        }
        IndexOp::Scatter { kind, axes } => {
            if i != 0 && i != last {
                return Ok(o::zeros_like(&inputs[i]));
            }
            let upd = &inputs[last];
            match (kind, i) {
                (ScatterKind::Set, 0) => {
                    // Written positions no longer depend on x.
                    let mut ins = vec![g.clone()];
                    ins.extend(inputs[1..last].iter().cloned());
                    ins.push(o::zeros_like(upd));
                    Array::from_op(Primitive::Index(IndexOp::Scatter { kind: ScatterKind::Set, axes: axes.clone() }), ins)
                }
                (ScatterKind::Add, 0) => g.clone(),
                (ScatterKind::Set | ScatterKind::Add, _) => {
                    let nidx = inputs[1..last].first().map_or(0, |a| a.ndim());
                    let slice_sizes = upd.shape()[nidx..].to_vec();
                    let mut ins = vec![g.clone()];
                    ins.extend(inputs[1..last].iter().cloned());
                    Array::from_op(Primitive::Index(IndexOp::Gather { axes: axes.clone(), slice_sizes }), ins)
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "[vjp] the derivative of Scatter{kind:?} is not implemented (MLX supports only scatter and scatter_add)"
                    )))
                }
            }
        }
        IndexOp::SliceUpdate { start, step, len } => {
            if i == 0 {
                Array::from_op(
                    Primitive::Index(IndexOp::SliceUpdate { start: start.clone(), step: step.clone(), len: len.clone() }),
                    vec![g.clone(), o::zeros_like(&inputs[1])],
                )
            } else {
                Array::from_op(
                    Primitive::Shape(ShapeOp::Slice { start: start.clone(), step: step.clone(), len: len.clone() }),
                    vec![g.clone()],
                )
            }
        }
    })
}
