//! Derivatives and batching of the fast family: both go through the op-built fallback
//! (ops::fast::fallback), so they are as differentiable as the ordinary ops it is made of.

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::ops::fast::fallback;
use crate::primitives::fast::FastOp;
use crate::primitives::Primitive;

/// The vjp of the fallback composition with respect to the float inputs; integer (rope
/// offsets) and boolean (masks) inputs get zero cotangents.
pub(crate) fn vjp(op: &FastOp, inputs: &[Array], g: &Array, argnums: &[usize]) -> Result<Vec<Array>> {
    let diff: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].dtype().is_float()).collect();
    let (op2, all, diff2) = (op.clone(), inputs.to_vec(), diff.clone());
    let f = move |xs: Vec<Array>| {
        let mut full = all.clone();
        for (j, &i) in diff2.iter().enumerate() {
            full[i] = xs[j].clone();
        }
        fallback(&op2, &full)
    };
    let primals: Vec<Array> = diff.iter().map(|&i| inputs[i].clone()).collect();
    let (_, grads) = crate::transforms::vjp(f, &primals, g)?;
    Ok(argnums
        .iter()
        .map(|&i| match diff.iter().position(|&d| d == i) {
            Some(j) => grads[j].clone(),
            None => o::zeros_like(&inputs[i]),
        })
        .collect())
}

/// Batching: norms and rope (with one offset) work on the trailing axes, so a batch axis in
/// front of `x` alone keeps the fused node; anything else is batched through the fallback.
pub(crate) fn batch(op: &FastOp, ins: &[(Array, bool)], b: usize) -> Result<Vec<Array>> {
    let only_x = ins[1..].iter().all(|(_, is_b)| !is_b);
    let keep = match op {
        FastOp::RmsNorm { .. } | FastOp::LayerNorm { .. } => only_x,
        FastOp::Rope { .. } => only_x && ins[1].0.ndim() == 0,
        FastOp::Sdpa { .. } => false,
    };
    let prims: Vec<Array> = ins.iter().map(|(a, _)| a.clone()).collect();
    if keep {
        return Ok(vec![Array::from_op(Primitive::Fast(op.clone()), prims)]);
    }
    let in_axes: Vec<Option<isize>> = ins.iter().map(|(_, is_b)| is_b.then_some(0)).collect();
    let op = op.clone();
    let f = move |v: Vec<Array>| vec![fallback(&op, &v)];
    let _ = b;
    Ok(crate::transforms::vmap::vmap(f, &in_axes, &[0])(prims))
}
