//! The tape: a traced function recorded as a small owned program — instructions (a primitive,
//! its operands, the specs seen when tracing), input slots, captured constants and output
//! references. It holds no traced node, so the traced graph frees itself once recorded, and
//! the passes (simplify, fuse) rewrite it as plain data.

use crate::array::Array;
use crate::graph::node::Op;
use crate::graph::{trace, Spec};
use crate::primitives::Primitive;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// An operand: input slot, captured constant, or output `k` of instruction `i`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ref {
    Input(usize),
    Const(usize),
    Node(usize, usize),
}

#[derive(Clone, Debug)]
pub(crate) struct Instr {
    pub prim: Primitive,
    pub inputs: Vec<Ref>,
    /// Operand and output shapes/dtypes seen when tracing.
    pub in_specs: Vec<Spec>,
    pub out_specs: Vec<Spec>,
    /// Shapeless replay: a Broadcast that only restates the implicit broadcasting of its
    /// element-wise users, so it may be skipped for new shapes (see `replay`).
    pub passthrough: bool,
}

impl Instr {
    pub fn new(prim: Primitive, inputs: Vec<Ref>, in_specs: Vec<Spec>, out_specs: Vec<Spec>) -> Instr {
        Instr { prim, inputs, in_specs, out_specs, passthrough: false }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Tape {
    pub input_specs: Vec<Spec>,
    pub consts: Vec<Array>,
    pub instrs: Vec<Instr>,
    pub outputs: Vec<Ref>,
}

fn spec(a: &Array) -> Spec {
    (a.shape().to_vec(), a.dtype())
}

impl Tape {
    /// Records the traced graph between `tracers` and `outputs`. Only ops that depend on a
    /// tracer are recorded; any other array they read (closed-over arrays, values built from
    /// constants alone) becomes a captured constant, computed once.
    pub fn record(tracers: &[Array], outputs: &[Array]) -> Tape {
        let stop: HashSet<u64> = tracers.iter().map(|t| t.id()).collect();
        let ops = trace::traced_ops(outputs, &stop);
        let mut by_id: HashMap<u64, Ref> = tracers.iter().enumerate().map(|(i, t)| (t.id(), Ref::Input(i))).collect();
        let mut op_index: HashMap<*const Op, usize> = HashMap::new();
        let mut tape = Tape { input_specs: tracers.iter().map(spec).collect(), consts: vec![], instrs: vec![], outputs: vec![] };
        let mut const_ids: HashMap<u64, usize> = HashMap::new();
        for op in &ops {
            let refs: Vec<Option<Ref>> = op.inputs.iter().map(|a| tape.resolve(a, &by_id, &op_index)).collect();
            // A constant subgraph is captured where used, except the Broadcast of a constant:
            // kept as an instruction, its scalar can be merged with equal ones, and fusion
            // reads the scalar instead of a full-size broadcast view.
            let broadcast = matches!(op.prim, Primitive::Shape(crate::primitives::ShapeOp::Broadcast(_)));
            if refs.iter().all(|r| r.is_none()) && !broadcast {
                continue;
            }
            let inputs = refs.into_iter().zip(&op.inputs).map(|(r, a)| r.unwrap_or_else(|| tape.capture(a, &mut const_ids))).collect();
            op_index.insert(Arc::as_ptr(op), tape.instrs.len());
            tape.instrs.push(Instr::new(op.prim.clone(), inputs, op.inputs.iter().map(spec).collect(), op.specs.clone()));
            // Outputs that are also arrays the function returned keep their node ids.
            for (k, out) in trace::op_outputs(op).into_iter().enumerate() {
                if let Some(out) = out {
                    by_id.insert(out.id(), Ref::Node(tape.instrs.len() - 1, k));
                }
            }
        }
        tape.outputs =
            outputs.iter().map(|a| tape.resolve(a, &by_id, &op_index).unwrap_or_else(|| tape.capture(a, &mut const_ids))).collect();
        tape
    }

    /// The reference of a traced array, or `None` if it does not depend on the inputs.
    fn resolve(&self, a: &Array, by_id: &HashMap<u64, Ref>, op_index: &HashMap<*const Op, usize>) -> Option<Ref> {
        if let Some(r) = by_id.get(&a.id()) {
            return Some(*r);
        }
        let op = trace::traced_op(a)?;
        op_index.get(&Arc::as_ptr(&op)).map(|&i| Ref::Node(i, a.0.index))
    }

    fn capture(&mut self, a: &Array, ids: &mut HashMap<u64, usize>) -> Ref {
        let k = *ids.entry(a.id()).or_insert_with(|| {
            self.consts.push(a.clone());
            self.consts.len() - 1
        });
        Ref::Const(k)
    }

    /// The traced shape and dtype of `r`.
    pub fn spec_of(&self, r: Ref) -> Spec {
        match r {
            Ref::Input(i) => self.input_specs[i].clone(),
            Ref::Const(k) => spec(&self.consts[k]),
            Ref::Node(i, k) => self.instrs[i].out_specs[k].clone(),
        }
    }

    /// Users of every instruction output: `users[i]` lists the instructions reading instr `i`.
    pub fn users(&self) -> Vec<Vec<usize>> {
        let mut users = vec![vec![]; self.instrs.len()];
        for (j, ins) in self.instrs.iter().enumerate() {
            for r in &ins.inputs {
                if let Ref::Node(i, _) = *r {
                    if !users[i].contains(&j) {
                        users[i].push(j);
                    }
                }
            }
        }
        users
    }

    /// Rebuilds the tape from `slots` (instructions in any order, `None` for removed ones, refs
    /// pointing into `slots`): keeps what the outputs need, in topological order, and drops
    /// unused constants. Iterative, so deep tapes cannot overflow the stack.
    pub fn compact(&mut self, slots: Vec<Option<Instr>>) {
        let mut order: Vec<usize> = Vec::new();
        let mut state = vec![0u8; slots.len()]; // 0 new, 1 open, 2 done
        for r in self.outputs.clone() {
            let Ref::Node(root, _) = r else { continue };
            if state[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some((i, next)) = stack.last_mut() {
                let ins = slots[*i].as_ref().expect("compact: a live reference to a removed instruction");
                if *next < ins.inputs.len() {
                    let r = ins.inputs[*next];
                    *next += 1;
                    if let Ref::Node(j, _) = r {
                        if state[j] == 0 {
                            state[j] = 1;
                            stack.push((j, 0));
                        }
                    }
                } else {
                    state[*i] = 2;
                    order.push(*i);
                    stack.pop();
                }
            }
        }
        let new_index: HashMap<usize, usize> = order.iter().enumerate().map(|(n, &o)| (o, n)).collect();
        let mut slots = slots;
        let mut used_consts: Vec<usize> = Vec::new();
        let remap = |r: Ref, used: &mut Vec<usize>| match r {
            Ref::Node(i, k) => Ref::Node(new_index[&i], k),
            Ref::Const(c) => {
                let pos = used.iter().position(|&u| u == c).unwrap_or_else(|| {
                    used.push(c);
                    used.len() - 1
                });
                Ref::Const(pos)
            }
            r => r,
        };
        let mut instrs = Vec::with_capacity(order.len());
        for &o in &order {
            let mut ins = slots[o].take().expect("visited once");
            ins.inputs = ins.inputs.iter().map(|&r| remap(r, &mut used_consts)).collect();
            instrs.push(ins);
        }
        self.outputs = self.outputs.iter().map(|&r| remap(r, &mut used_consts)).collect();
        self.consts = used_consts.iter().map(|&c| self.consts[c].clone()).collect();
        self.instrs = instrs;
    }

    /// Replaces every reference by its image under `subst` (followed transitively), then drops
    /// what became unused.
    pub fn substitute(&mut self, subst: &HashMap<Ref, Ref>) {
        let canon = |mut r: Ref| {
            while let Some(&s) = subst.get(&r) {
                r = s;
            }
            r
        };
        for ins in &mut self.instrs {
            ins.inputs = ins.inputs.iter().map(|&r| canon(r)).collect();
        }
        self.outputs = self.outputs.iter().map(|&r| canon(r)).collect();
        let slots = std::mem::take(&mut self.instrs).into_iter().map(Some).collect();
        self.compact(slots);
    }
}
