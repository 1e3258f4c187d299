//! Simplification passes on a tape: constant merge, no-op removal and common-subexpression
//! elimination, each followed by dead-code removal (`Tape::substitute` compacts).

use super::tape::{Ref, Tape};
use crate::graph::node::State;
use crate::primitives::{CastOp, Primitive, ShapeOp};
use std::collections::HashMap;

pub(crate) fn simplify(tape: &mut Tape) {
    merge_constants(tape);
    remove_noops(tape);
    eliminate_common_subexpressions(tape);
}

/// Identical scalar constants (the `0.5` in `x * 0.5` is a fresh 0-d array each time an op is
/// called) become one, so CSE can then see through them. Only evaluated one-element constants
/// are compared, by dtype, shape and bytes.
fn merge_constants(tape: &mut Tape) {
    let mut seen: HashMap<(crate::dtype::Dtype, Vec<usize>, Vec<u8>), usize> = HashMap::new();
    let mut subst = HashMap::new();
    for (k, c) in tape.consts.iter().enumerate() {
        if c.size() != 1 {
            continue;
        }
        let bytes = match &*c.0.lock() {
            State::Ready(d) => {
                let sz = d.dtype.size();
                let off = d.offset as usize * sz;
                d.buffer.bytes()[off..off + sz].to_vec()
            }
            _ => continue,
        };
        let key = (c.dtype(), c.shape().to_vec(), bytes);
        match seen.get(&key) {
            Some(&first) => {
                subst.insert(Ref::Const(k), Ref::Const(first));
            }
            None => {
                seen.insert(key, k);
            }
        }
    }
    if !subst.is_empty() {
        tape.substitute(&subst);
    }
}

/// Ops that return their input unchanged for the traced shapes and dtypes: `astype` to the same
/// dtype, reshape or broadcast to the same shape, identity transposes, copies (a copy changes
/// the layout, never the values).
fn remove_noops(tape: &mut Tape) {
    let mut subst = HashMap::new();
    for (i, ins) in tape.instrs.iter().enumerate() {
        let Some(&x) = ins.inputs.first() else { continue };
        let (in_shape, in_dt) = &ins.in_specs[0];
        let noop = match &ins.prim {
            Primitive::Cast(CastOp::AsType(d)) => d == in_dt,
            Primitive::Shape(ShapeOp::Reshape(s) | ShapeOp::Broadcast(s)) => s == in_shape,
            Primitive::Shape(ShapeOp::Transpose(p)) => p.iter().enumerate().all(|(i, &a)| i == a),
            Primitive::Shape(ShapeOp::Copy) => true,
            _ => false,
        };
        if noop {
            subst.insert(Ref::Node(i, 0), x);
        }
    }
    if !subst.is_empty() {
        tape.substitute(&subst);
    }
}

/// Instructions with the same primitive, equal parameters and the same operands compute the
/// same values: later ones are replaced by the first. Random, custom and communication nodes
/// are never merged (CustomOp's equality compares function pointers, two draws are two draws,
/// two sends are two messages).
fn eliminate_common_subexpressions(tape: &mut Tape) {
    let mut seen: HashMap<(String, Vec<Ref>), Vec<usize>> = HashMap::new();
    let mut subst: HashMap<Ref, Ref> = HashMap::new();
    let canon = |subst: &HashMap<Ref, Ref>, r: Ref| subst.get(&r).copied().unwrap_or(r);
    for i in 0..tape.instrs.len() {
        let ins = &tape.instrs[i];
        if matches!(ins.prim, Primitive::Random(_) | Primitive::Custom(_) | Primitive::Distributed(_)) {
            continue;
        }
        // Earlier instructions are already canonical, so one lookup per operand suffices.
        let inputs: Vec<Ref> = ins.inputs.iter().map(|&r| canon(&subst, r)).collect();
        let key = (format!("{:?}", ins.prim), inputs);
        let bucket = seen.entry(key).or_default();
        match bucket.iter().find(|&&j| tape.instrs[j].prim == ins.prim && tape.instrs[j].out_specs.len() == ins.out_specs.len()) {
            Some(&j) => {
                for k in 0..ins.out_specs.len() {
                    subst.insert(Ref::Node(i, k), Ref::Node(j, k));
                }
            }
            None => bucket.push(i),
        }
    }
    if !subst.is_empty() {
        tape.substitute(&subst);
    }
}
