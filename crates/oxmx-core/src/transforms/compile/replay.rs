//! Replaying a tape on new inputs: every instruction becomes a node again through
//! `Array::from_op`, which re-infers output shapes and dtypes (no retrace). Replayed nodes are
//! ordinary nodes, so an enclosing transform traces and differentiates them as usual.
//!
//! Shapeless replay with shapes other than the traced ones re-infers what it can: element-wise
//! instructions broadcast their operands afresh, a Broadcast that only restated implicit
//! broadcasting is skipped, and primitives without shape parameters (reductions over axes,
//! transposes, matmul, sorts, ...) replay as they are. A primitive whose parameters fix a shape
//! (Reshape, explicit Broadcast, Slice, Pad, ...) is an error unless its operands kept their
//! traced shapes.

use super::tape::{Instr, Ref, Tape};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::trace;
use crate::ops as o;
use crate::primitives::{CastOp, DistributedOp, Primitive, ShapeOp, SortOp};
use crate::shape::broadcast_many;

pub(crate) fn replay(tape: &Tape, inputs: &[Array], shapeless: bool) -> Result<Vec<Array>> {
    let mut vals: Vec<Vec<Array>> = Vec::with_capacity(tape.instrs.len());
    let get = |vals: &Vec<Vec<Array>>, r: Ref| match r {
        Ref::Input(i) => inputs[i].clone(),
        Ref::Const(k) => tape.consts[k].clone(),
        Ref::Node(i, k) => vals[i][k].clone(),
    };
    for ins in &tape.instrs {
        let args: Vec<Array> = ins.inputs.iter().map(|&r| get(&vals, r)).collect();
        let same = args.iter().zip(&ins.in_specs).all(|(a, (s, _))| a.shape() == s.as_slice());
        let outs = if shapeless && !same { reinfer(ins, args)? } else { rebuild(ins, args)? };
        for a in &outs {
            a.check()?;
        }
        vals.push(outs);
    }
    Ok(tape.outputs.iter().map(|&r| get(&vals, r)).collect())
}

/// The instruction as a node on `args`.
fn rebuild(ins: &Instr, args: Vec<Array>) -> Result<Vec<Array>> {
    if let Primitive::Custom(op) = &ins.prim {
        // The forward outputs the node passes through were computed, outside the trace, from
        // the traced inputs: compute them again from these.
        let primals = &args[..op.n_primals];
        let mut all = primals.to_vec();
        all.extend(trace::untraced(|| (op.forward)(primals))?);
        return Ok(Array::from_op_multi(ins.prim.clone(), all, ins.out_specs.len()));
    }
    Ok(Array::from_op_multi(ins.prim.clone(), args, ins.out_specs.len()))
}

/// Shapeless replay of an instruction whose operands changed shape.
fn reinfer(ins: &Instr, args: Vec<Array>) -> Result<Vec<Array>> {
    match &ins.prim {
        Primitive::Binary(_) | Primitive::Ternary(_) => {
            let shapes: Vec<&[usize]> = args.iter().map(|a| a.shape()).collect();
            let shape = broadcast_many(&shapes).map_err(|e| e.context(format!("compile (shapeless) {}", ins.prim.name())))?;
            let args = args.iter().map(|a| o::broadcast_to(a, &shape)).collect();
            rebuild(ins, args)
        }
        Primitive::Shape(ShapeOp::Broadcast(_)) if ins.passthrough => Ok(args),
        // The squeeze after a reduction without keepdims: drop the same size-1 axes again.
        Primitive::Shape(ShapeOp::Reshape(s)) if squeezed_axes(&ins.in_specs[0].0, s).is_some() => {
            let removed = squeezed_axes(&ins.in_specs[0].0, s).unwrap_or_default();
            let x = &args[0];
            if removed.iter().all(|&ax| x.shape()[ax] == 1) {
                let shape: Vec<usize> = x.shape().iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, &d)| d).collect();
                rebuild(&Instr { prim: Primitive::Shape(ShapeOp::Reshape(shape)), ..ins.clone() }, args)
            } else {
                Err(shape_fixed(ins, &args))
            }
        }
        Primitive::Unary(_)
        | Primitive::Cast(CastOp::AsType(_))
        | Primitive::Fused(_)
        | Primitive::Reduce(_)
        | Primitive::Matmul(_)
        | Primitive::Custom(_)
        | Primitive::Fast(_)
        | Primitive::Distributed(
            DistributedOp::AllReduce { .. }
            | DistributedOp::AllGather { .. }
            | DistributedOp::ReduceScatter { .. }
            | DistributedOp::Send { .. },
        )
        | Primitive::Sort(SortOp::Sort { .. } | SortOp::ArgSort { .. })
        | Primitive::Shape(ShapeOp::Transpose(_) | ShapeOp::Copy | ShapeOp::StopGradient | ShapeOp::Concatenate { .. }) => {
            rebuild(ins, args)
        }
        _ => Err(shape_fixed(ins, &args)),
    }
}

fn shape_fixed(ins: &Instr, args: &[Array]) -> Error {
    let got: Vec<&[usize]> = args.iter().map(|a| a.shape()).collect();
    let traced: Vec<&[usize]> = ins.in_specs.iter().map(|(s, _)| s.as_slice()).collect();
    Error::invalid(format!(
        "[compile] shapeless compile cannot replay {} for operands of shapes {got:?}: its parameters fix the shapes it was traced with ({traced:?}). Compile without shapeless, or keep these shapes.",
        ins.prim.name()
    ))
}

/// The axes of `from` that a reshape to `to` drops, when it only drops size-1 axes.
fn squeezed_axes(from: &[usize], to: &[usize]) -> Option<Vec<usize>> {
    if to.len() >= from.len() {
        return None;
    }
    let (mut j, mut removed) = (0, vec![]);
    for (i, &d) in from.iter().enumerate() {
        if j < to.len() && to[j] == d {
            j += 1;
        } else if d == 1 {
            removed.push(i);
        } else {
            return None;
        }
    }
    (j == to.len()).then_some(removed)
}

/// Marks the Broadcasts that shapeless replay may skip: every user is element-wise, and the
/// user's shape is what its operands broadcast to anyway (so the Broadcast came from the op
/// layer's implicit broadcasting, not an explicit `broadcast_to` to a larger shape).
pub(crate) fn mark_passthrough(tape: &mut Tape) {
    let users = tape.users();
    let returned: Vec<bool> =
        (0..tape.instrs.len()).map(|i| tape.outputs.iter().any(|r| matches!(r, Ref::Node(j, _) if *j == i))).collect();
    let pre_broadcast = |tape: &Tape, r: Ref| -> Vec<usize> {
        match r {
            Ref::Node(b, 0) if matches!(tape.instrs[b].prim, Primitive::Shape(ShapeOp::Broadcast(_))) => {
                tape.instrs[b].in_specs[0].0.clone()
            }
            r => tape.spec_of(r).0,
        }
    };
    let mut marks = vec![false; tape.instrs.len()];
    for (i, ins) in tape.instrs.iter().enumerate() {
        if !matches!(ins.prim, Primitive::Shape(ShapeOp::Broadcast(_))) || returned[i] {
            continue;
        }
        marks[i] = users[i].iter().all(|&u| {
            let user = &tape.instrs[u];
            let elementwise = matches!(
                user.prim,
                Primitive::Unary(_) | Primitive::Binary(_) | Primitive::Ternary(_) | Primitive::Cast(CastOp::AsType(_))
            );
            let shapes: Vec<Vec<usize>> = user.inputs.iter().map(|&r| pre_broadcast(tape, r)).collect();
            let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
            elementwise && broadcast_many(&refs).ok().as_ref() == Some(&user.out_specs[0].0)
        });
    }
    for (ins, m) in tape.instrs.iter_mut().zip(marks) {
        ins.passthrough = m;
    }
}
