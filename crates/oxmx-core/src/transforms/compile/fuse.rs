//! Fusion: maximal regions of element-wise instructions (unary, binary, select, float casts)
//! become one `Fused` instruction whose kernel never materialises the intermediates.
//!
//! Regions grow along producer → consumer edges between fusable instructions of one compute
//! group (f16/bf16/f32 compute in f32, f64 in f64) and one shape. A merge is refused when some
//! path leaves the producer's region and re-enters the consumer's through an unfused
//! instruction: the fused node would then depend on itself. A value used outside its region
//! (or returned) becomes an output of the fused node. A Broadcast feeding a region is bypassed:
//! the region reads the smaller array with zero strides instead.

use super::tape::{Instr, Ref, Tape};
use crate::dtype::Dtype;
use crate::primitives::{BinaryOp, CastOp, FusedInstr, FusedOp, Primitive, ShapeOp, TernaryOp, UnaryOp};
use crate::shape::broadcast_many;
use std::collections::HashMap;

/// Fuses the tape in place; returns the number of regions made.
pub(crate) fn fuse(tape: &mut Tape) -> usize {
    let before_fusion = tape.clone();
    let n = tape.instrs.len();
    let group: Vec<Option<u8>> = tape.instrs.iter().map(fusable).collect();
    let users = tape.users();
    let mut region: Vec<usize> = (0..n).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            let Some(g) = group[i] else { continue };
            for r in tape.instrs[i].inputs.clone() {
                let Ref::Node(j, _) = r else { continue };
                let same = group[j] == Some(g) && tape.instrs[j].out_specs[0].0 == tape.instrs[i].out_specs[0].0;
                if same && region[j] != region[i] && legal(&group, &region, &users, region[j], region[i]) {
                    let (from, to) = (region[i], region[j]);
                    region.iter_mut().for_each(|x| {
                        if *x == from {
                            *x = to
                        }
                    });
                    changed = true;
                }
            }
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        if group[i].is_some() {
            members.entry(region[i]).or_default().push(i);
        }
    }
    let mut regions: Vec<Vec<usize>> = members.into_values().filter(|m| m.len() >= 2).collect();
    regions.sort();
    if regions.is_empty() {
        return 0;
    }
    let returned: Vec<bool> = (0..n).map(|i| tape.outputs.iter().any(|r| matches!(r, Ref::Node(j, _) if *j == i))).collect();
    let mut slots: Vec<Option<Instr>> = tape.instrs.iter().cloned().map(Some).collect();
    let mut subst: HashMap<Ref, Ref> = HashMap::new();
    for m in &regions {
        let fused = build(tape, m, &users, &returned);
        let at = slots.len();
        for (k, &member) in fused.1.iter().enumerate() {
            subst.insert(Ref::Node(member, 0), Ref::Node(at, k));
        }
        for &member in m {
            slots[member] = None;
        }
        slots.push(Some(fused.0));
    }
    let canon = |r: Ref| subst.get(&r).copied().unwrap_or(r);
    for ins in slots.iter_mut().flatten() {
        ins.inputs = ins.inputs.iter().map(|&r| canon(r)).collect();
    }
    tape.outputs = tape.outputs.iter().map(|&r| canon(r)).collect();
    tape.compact(slots);
    // Merged regions must not form a cycle through outside instructions (a region that both
    // feeds and reads an outside node): then some instruction would come before an input.
    // `legal` is meant to prevent it; should it miss a case, keep the unfused tape (correct,
    // just slower) instead of replaying an impossible order.
    let ordered = tape.instrs.iter().enumerate().all(|(i, ins)| ins.inputs.iter().all(|r| !matches!(r, Ref::Node(j, _) if *j >= i)));
    if !ordered {
        *tape = before_fusion;
        return 0;
    }
    regions.len()
}

/// The compute group of a fusable instruction (0: f32, 1: f64), or `None`.
fn fusable(ins: &Instr) -> Option<u8> {
    let float_in = ins.in_specs.iter().any(|(_, d)| d.is_float());
    let ok = match &ins.prim {
        Primitive::Unary(op) => float_in && *op != UnaryOp::BitwiseInvert,
        Primitive::Binary(op) => {
            use BinaryOp::*;
            // A half-precision floor_divide rounds its quotient before the floor (as MLX); the
            // fused loop keeps values in f32, so that op runs unfused.
            let half_out = ins.out_specs.iter().any(|(_, d)| matches!(d, Dtype::Float16 | Dtype::Bfloat16));
            float_in && !matches!(op, BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift) && !(*op == FloorDivide && half_out)
        }
        Primitive::Ternary(TernaryOp::Select) | Primitive::Cast(CastOp::AsType(_)) => true,
        _ => false,
    };
    if !ok {
        return None;
    }
    let mut g = None;
    for (_, d) in ins.in_specs.iter().chain(&ins.out_specs) {
        let gd = match d {
            Dtype::Bool => continue,
            Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 => 0,
            Dtype::Float64 => 1,
            _ => return None,
        };
        if g.is_some_and(|g| g != gd) {
            return None;
        }
        g = Some(gd);
    }
    g
}

/// Whether merging region `p` into the region `c` it feeds keeps the graph acyclic: no path
/// from `p` may reach `c` through an instruction outside both.
fn legal(group: &[Option<u8>], region: &[usize], users: &[Vec<usize>], p: usize, c: usize) -> bool {
    let in_r = |x: usize, r: usize| group[x].is_some() && region[x] == r;
    let mut stack: Vec<usize> = Vec::new();
    let mut seen = vec![false; region.len()];
    for m in (0..region.len()).filter(|&m| in_r(m, p)) {
        for &u in &users[m] {
            if !in_r(u, p) && !in_r(u, c) && !seen[u] {
                seen[u] = true;
                stack.push(u);
            }
        }
    }
    while let Some(u) = stack.pop() {
        for &w in &users[u] {
            if in_r(w, c) {
                return false;
            }
            if !seen[w] {
                seen[w] = true;
                stack.push(w);
            }
        }
    }
    true
}

/// The fused instruction for the region `members` (in tape order) and the members whose
/// values it returns, in output order.
fn build(tape: &Tape, members: &[usize], users: &[Vec<usize>], returned: &[bool]) -> (Instr, Vec<usize>) {
    let inside = |j: usize| members.binary_search(&j).is_ok();
    // Inputs: operands produced outside, with Broadcasts looked through.
    let mut inputs: Vec<Ref> = Vec::new();
    let mut in_specs = Vec::new();
    let mut value: HashMap<Ref, usize> = HashMap::new();
    for &m in members {
        for &r in &tape.instrs[m].inputs {
            if matches!(r, Ref::Node(j, _) if inside(j)) || value.contains_key(&r) {
                continue;
            }
            let (src, spec) = match r {
                Ref::Node(b, 0) if matches!(tape.instrs[b].prim, Primitive::Shape(ShapeOp::Broadcast(_))) => {
                    (tape.instrs[b].inputs[0], tape.instrs[b].in_specs[0].clone())
                }
                _ => (r, tape.spec_of(r)),
            };
            let v = match inputs.iter().position(|&x| x == src) {
                Some(v) => v,
                None => {
                    inputs.push(src);
                    in_specs.push(spec);
                    inputs.len() - 1
                }
            };
            value.insert(r, v);
        }
    }
    let n_in = inputs.len();
    let mut instrs = Vec::new();
    let mut outputs = Vec::new();
    let mut out_members = Vec::new();
    for (k, &m) in members.iter().enumerate() {
        let ins = &tape.instrs[m];
        let a: Vec<usize> = ins.inputs.iter().map(|r| value[r]).collect();
        let dtype = ins.out_specs[0].1;
        instrs.push(match &ins.prim {
            Primitive::Unary(op) => FusedInstr::Unary { op: *op, x: a[0], dtype },
            Primitive::Binary(op) => FusedInstr::Binary { op: *op, a: a[0], b: a[1], dtype },
            Primitive::Ternary(_) => FusedInstr::Select { cond: a[0], a: a[1], b: a[2], dtype },
            _ => FusedInstr::AsType { x: a[0], dtype },
        });
        value.insert(Ref::Node(m, 0), n_in + k);
        if returned[m] || users[m].iter().any(|&u| !inside(u)) {
            outputs.push(n_in + k);
            out_members.push(m);
        }
    }
    let shape = tape.instrs[members[0]].out_specs[0].0.clone();
    let shapes: Vec<&[usize]> = in_specs.iter().map(|(s, _)| s.as_slice()).collect();
    let implied = broadcast_many(&shapes).ok();
    let op = FusedOp {
        input_dtypes: in_specs.iter().map(|s| s.1).collect(),
        instrs,
        outputs: outputs.clone(),
        shape: if implied.as_ref() == Some(&shape) { None } else { Some(shape.clone()) },
    };
    let out_specs = outputs.iter().map(|&v| (shape.clone(), op.value_dtype(v))).collect();
    (Instr::new(Primitive::Fused(op), inputs, in_specs, out_specs), out_members)
}
