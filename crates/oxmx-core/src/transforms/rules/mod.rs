//! Derivative rules, one file per primitive family. Every rule is written with ops, so the
//! derivatives are themselves differentiable (higher orders, any nesting of transforms).
//!
//! `vjp` gets the op's inputs, its outputs (`None` where an output was dropped — such an output
//! has no cotangent), the cotangent of each output (`None`: zero) and the input positions that
//! need a cotangent; it returns one cotangent per requested position.
//!
//! `jvp` forward-propagates tangents. Element-wise families reuse their vjp rule (the vjp of an
//! element-wise op with cotangent `t` is `t * ∂y/∂x`); linear primitives apply themselves to the
//! tangents; everything else falls back to transposing the (linear) vjp with a second vjp.

mod distributed;
mod elementwise;
pub(crate) mod fast;
mod fft;
pub(crate) mod fused;
mod index;
mod linalg;
mod other;
mod quantized;
mod reduce;
mod shape;

use crate::array::Array;
use crate::error::{Error, Result};
use crate::primitives::Primitive;

pub(crate) fn vjp(
    prim: &Primitive,
    inputs: &[Array],
    outputs: &[Option<Array>],
    cots: &[Option<Array>],
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let out = outputs.first().cloned().flatten();
    // Single-output families: the output carries the (only) cotangent.
    let single = || -> Result<(Array, Array)> {
        match (out.clone(), cots.first().cloned().flatten()) {
            (Some(y), Some(g)) => Ok((y, g)),
            _ => Err(Error::runtime(format!("internal: [vjp] {} called without a cotangent", prim.name()))),
        }
    };
    match prim {
        Primitive::Unary(op) => {
            let (y, g) = single()?;
            if inputs[0].dtype().is_complex() {
                return Ok(vec![elementwise::complex_unary(*op, &inputs[0], &y, &g)?]);
            }
            Ok(vec![elementwise::unary(*op, &inputs[0], &y, &g)?])
        }
        Primitive::Binary(op) => {
            let (y, g) = single()?;
            if inputs[0].dtype().is_complex() {
                // Holomorphic in each argument: ḡ · conj(∂y/∂x).
                let gc = crate::ops::conjugate(&g);
                return argnums
                    .iter()
                    .map(|&i| Ok(crate::ops::conjugate(&elementwise::binary(*op, &inputs[0], &inputs[1], &y, &gc, i)?)))
                    .collect();
            }
            argnums.iter().map(|&i| elementwise::binary(*op, &inputs[0], &inputs[1], &y, &g, i)).collect()
        }
        Primitive::Ternary(_) => {
            let (_, g) = single()?;
            argnums.iter().map(|&i| elementwise::select(&inputs[0], &g, i)).collect()
        }
        Primitive::Cast(op) => {
            let (_, g) = single()?;
            Ok(vec![elementwise::cast(op, &inputs[0], &g)?])
        }
        Primitive::Reduce(op) => {
            let (y, g) = single()?;
            Ok(vec![reduce::vjp(op, &inputs[0], &y, &g)?])
        }
        Primitive::Shape(op) => {
            let (_, g) = single()?;
            argnums.iter().map(|&i| shape::vjp(op, inputs, &g, i)).collect()
        }
        Primitive::Index(op) => {
            let (_, g) = single()?;
            argnums.iter().map(|&i| index::vjp(op, inputs, &g, i)).collect()
        }
        Primitive::Matmul(_) => {
            let (_, g) = single()?;
            argnums.iter().map(|&i| other::matmul_vjp(inputs, &g, i)).collect()
        }
        Primitive::Conv(crate::primitives::ConvOp::Conv(p)) => {
            let (_, g) = single()?;
            argnums.iter().map(|&i| other::conv_vjp(p, inputs, &g, i)).collect()
        }
        Primitive::Sort(op) => {
            let (_, g) = single()?;
            Ok(vec![other::sort_vjp(op, &inputs[0], &g)?])
        }
        Primitive::Linalg(op) => linalg::vjp(op, inputs, outputs, cots, argnums),
        Primitive::Quantized(op) => quantized::vjp(op, inputs, cots, argnums),
        Primitive::Fast(op) => {
            let (_, g) = single()?;
            fast::vjp(op, inputs, &g, argnums)
        }
        Primitive::Creation(_) | Primitive::Random(_) => Ok(argnums.iter().map(|&i| crate::ops::zeros_like(&inputs[i])).collect()),
        Primitive::Fft(op) => {
            let (_, g) = single()?;
            Ok(vec![fft::vjp(op, &inputs[0], &g)?])
        }
        Primitive::Fused(op) => fused::vjp(op, inputs, outputs, cots, argnums),
        Primitive::Distributed(op) => {
            if argnums.is_empty() {
                return Ok(vec![]);
            }
            let (y, g) = single()?;
            distributed::vjp(op, inputs, &y, &g, argnums)
        }
        Primitive::Custom(op) => {
            let Some(f) = &op.vjp else { return Err(not_differentiable(prim)) };
            let n = op.n_primals;
            let outs: Vec<Array> =
                (0..inputs.len() - n).map(|k| outputs.get(k).cloned().flatten().unwrap_or_else(|| inputs[n + k].clone())).collect();
            let cts: Vec<Array> = outs.iter().zip(cots).map(|(o, c)| c.clone().unwrap_or_else(|| crate::ops::zeros_like(o))).collect();
            let res = f(&inputs[..n], &outs, &cts)?;
            if res.len() != n {
                return Err(Error::invalid(format!(
                    "[custom_function] the vjp of {} returned {} cotangents for {n} primals",
                    op.name,
                    res.len()
                )));
            }
            // Positions past the primals are the forward outputs: no cotangent flows there.
            Ok(argnums.iter().map(|&i| if i < n { res[i].clone() } else { crate::ops::zeros_like(&inputs[i]) }).collect())
        }
    }
}

pub(crate) fn not_differentiable(prim: &Primitive) -> Error {
    Error::invalid(format!("[vjp] the derivative of {} is not implemented", prim.name()))
}

/// How `jvp` handles a primitive (see the module comment).
pub(crate) enum JvpKind {
    /// Sum over inputs of the vjp rule applied to that input's tangent.
    Elementwise,
    /// The primitive itself applied to the tangents (zeros for inputs without one); index
    /// inputs keep their values.
    Linear,
    /// Multi-linear in its inputs (matmul, conv): the sum over inputs of the primitive with that
    /// one input replaced by its tangent.
    Multilinear,
    /// Transpose of the vjp.
    Transpose,
    /// A custom function with a user jvp.
    Custom,
    /// A fused region: the jvp of its rebuilt ops.
    Fused,
}

pub(crate) fn jvp_kind(prim: &Primitive) -> JvpKind {
    use crate::primitives::index::ScatterKind;
    use crate::primitives::reduce::{ReduceKind, ScanKind};
    use crate::primitives::{CastOp, IndexOp, ReduceOp, ShapeOp, UnaryOp};
    match prim {
        // Real-linear but not complex-linear: apply the op to the tangent.
        Primitive::Unary(UnaryOp::Real | UnaryOp::Imag | UnaryOp::Conjugate) | Primitive::Fft(_) => JvpKind::Linear,
        Primitive::Unary(UnaryOp::Abs) => JvpKind::Transpose,
        Primitive::Index(IndexOp::Scatter { kind: ScatterKind::Prod | ScatterKind::Max | ScatterKind::Min, .. }) => JvpKind::Transpose,
        Primitive::Matmul(_) | Primitive::Conv(_) => JvpKind::Multilinear,
        Primitive::Fused(_) => JvpKind::Fused,
        Primitive::Custom(op) if op.jvp.is_some() => JvpKind::Custom,
        // Collectives of the tangents, run by every rank alike; a send's tangent stays here (the
        // receiver's tangent is zero), and max/min take the winners' tangents.
        Primitive::Distributed(op) => {
            use crate::primitives::distributed::{CollectiveReduce, DistributedOp};
            match op {
                DistributedOp::AllReduce { kind: CollectiveReduce::Sum, .. }
                | DistributedOp::AllGather { .. }
                | DistributedOp::ReduceScatter { .. } => JvpKind::Linear,
                _ => JvpKind::Elementwise,
            }
        }
        Primitive::Unary(_) | Primitive::Binary(_) | Primitive::Ternary(_) | Primitive::Cast(CastOp::AsType(_)) => JvpKind::Elementwise,
        Primitive::Shape(ShapeOp::StopGradient) => JvpKind::Transpose,
        Primitive::Shape(_) | Primitive::Index(_) => JvpKind::Linear,
        Primitive::Reduce(ReduceOp::Reduce { kind: ReduceKind::Sum, .. }) => JvpKind::Linear,
        Primitive::Reduce(ReduceOp::Scan { kind: ScanKind::Sum, .. }) => JvpKind::Linear,
        _ => JvpKind::Transpose,
    }
}

/// Whether inputs at position `i` of `prim` are data that tangents flow through (not indices).
pub(crate) fn is_linear_input(prim: &Primitive, i: usize, n_inputs: usize) -> bool {
    use crate::primitives::IndexOp;
    match prim {
        Primitive::Index(IndexOp::Gather { .. }) => i == 0,
        Primitive::Index(IndexOp::Scatter { .. }) => i == 0 || i == n_inputs - 1,
        _ => true,
    }
}
