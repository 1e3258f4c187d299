//! Derivatives of `Fused`: the region's ops are rebuilt from the stored program as ordinary
//! nodes on the inputs and differentiated with the engines, so every element-wise rule is reused
//! and the results are themselves differentiable (higher orders, nested transforms).

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::{CastOp, FusedInstr, FusedOp, Primitive, TernaryOp};
use crate::transforms::api;

/// The region as ordinary ops on `inputs` (broadcast to the output shape first, which is what
/// the op layer had done before the region was fused).
pub(crate) fn expand(op: &FusedOp, inputs: &[Array]) -> Result<Vec<Array>> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let shape = op.out_shape(&shapes)?;
    let mut vals: Vec<Array> = inputs.iter().map(|a| o::broadcast_to(a, &shape)).collect();
    for ins in &op.instrs {
        let v = |i: usize| vals[i].clone();
        let a = match *ins {
            FusedInstr::Unary { op, x, .. } => Array::from_op(Primitive::Unary(op), vec![v(x)]),
            FusedInstr::Binary { op, a, b, .. } => Array::from_op(Primitive::Binary(op), vec![v(a), v(b)]),
            FusedInstr::Select { cond, a, b, .. } => Array::from_op(Primitive::Ternary(TernaryOp::Select), vec![v(cond), v(a), v(b)]),
            FusedInstr::AsType { x, dtype } => Array::from_op(Primitive::Cast(CastOp::AsType(dtype)), vec![v(x)]),
        };
        a.check()?;
        vals.push(a);
    }
    Ok(op.outputs.iter().map(|&v| vals[v].clone()).collect())
}

/// The region as a function of its inputs, for the engines (errors travel in the arrays).
fn region(op: &FusedOp) -> impl Fn(Vec<Array>) -> Vec<Array> + '_ {
    move |ins: Vec<Array>| expand(op, &ins).unwrap_or_else(|e| op.outputs.iter().map(|_| Array::error(e.clone())).collect())
}

pub(super) fn vjp(
    op: &FusedOp,
    inputs: &[Array],
    outputs: &[Option<Array>],
    cots: &[Option<Array>],
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let shape = op.out_shape(&shapes)?;
    let cts: Vec<Array> = (0..op.outputs.len())
        .map(|k| match (cots.get(k).cloned().flatten(), outputs.get(k).cloned().flatten()) {
            (Some(c), _) => c,
            (None, Some(y)) => o::zeros_like(&y),
            (None, None) => o::zeros(&shape, op.value_dtype(op.outputs[k])),
        })
        .collect();
    let (_, grads) = api::vjp(region(op), &inputs.to_vec(), &cts)?;
    Ok(argnums.iter().map(|&i| grads[i].clone()).collect())
}

pub(crate) fn jvp(op: &FusedOp, inputs: &[Array], tangents: &[Option<Array>]) -> Result<Vec<Option<Array>>> {
    let ts: Vec<Array> = inputs.iter().zip(tangents).map(|(x, t)| t.clone().unwrap_or_else(|| o::zeros_like(x))).collect();
    let (_, tans) = api::jvp(region(op), &inputs.to_vec(), &ts)?;
    Ok(tans.into_iter().map(Some).collect())
}
