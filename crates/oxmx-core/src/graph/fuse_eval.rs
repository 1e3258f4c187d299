//! Eval-time fusion: when `eval` submits a graph, chains of large element-wise ops on a CPU
//! stream whose intermediates nobody else can see become one `Fused` node, the same node
//! `compile` makes. The fused kernel keeps the intermediates in L1-sized blocks, so
//! `(x - mean) * rsqrt(var + eps)` streams `x` once and writes the result once instead of
//! writing and re-reading a full-size intermediate (a third of layer norm's memory traffic).
//!
//! Unlike `compile`'s fusion, this one must not change a single bit of any result: uncompiled
//! code has to give what the separate kernels give. So it only takes ops whose fused form is the
//! same IEEE operation as the standalone kernel (add, subtract, multiply, divide, maximum,
//! minimum, negation, abs, square, sqrt, rsqrt as `1 / sqrt`, reciprocal, floor, ceil), and only
//! in f32 or f64 (the fused kernel keeps half-precision intermediates in f32, where the separate
//! ops round each one). `tests/eval_fusion.rs` checks the bits against the unfused kernels.
//!
//! An intermediate qualifies when its only handle is the op that consumes it (no user handle,
//! no other consumer, no transform's tape), so every region is a tree hanging from one root
//! whose node the user holds: no value computed inside is ever needed outside, and no cycle
//! can form. Regions are built from the ops of one submission only. GPU streams keep their
//! ops unfused (their step functions are compiled and replayed as CUDA graphs instead).
//!
//! `OXMX_EVAL_FUSION=0` at start-up, or `set_eval_fusion(false)`, turns it off.

use super::node::{Op, State};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::primitives::{BinaryOp, FusedInstr, FusedOp, Primitive, ShapeOp, UnaryOp};
use crate::shape::{broadcast_many, size_of};
use crate::switch::Switch;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Outputs smaller than this stay unfused. Fusion saves memory traffic, which only costs once
/// the arrays outgrow the caches: below this the separate kernels, each a tight vector loop
/// over data in L2/L3, beat the fused interpreter's block-by-block program (a transformer
/// training step whose Adam updates and residual adds on 16K-262K elements were fused ran 1-4%
/// slower on Zen 2; a 16M-element layer-norm tail runs in 0.75x the time fused).
const MIN_ELEMENTS: usize = 1 << 20;

/// `MIN_ELEMENTS`, or `OXMX_EVAL_FUSION_MIN` (experiments).
fn min_elements() -> usize {
    static M: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *M.get_or_init(|| std::env::var("OXMX_EVAL_FUSION_MIN").ok().and_then(|v| v.parse().ok()).unwrap_or(MIN_ELEMENTS))
}

/// Off when `OXMX_EVAL_FUSION` is `0` or `false`.
fn disables(v: &str) -> bool {
    v == "0" || v.eq_ignore_ascii_case("false")
}

static SWITCH: Switch = Switch::new("OXMX_EVAL_FUSION", disables);

/// Whether `eval` fuses element-wise chains (on unless `OXMX_EVAL_FUSION=0` or turned off).
pub fn eval_fusion_enabled() -> bool {
    SWITCH.get()
}

static REGIONS: AtomicUsize = AtomicUsize::new(0);

/// How many regions eval-time fusion has made in this process (a diagnostic: tests and
/// benchmarks read it to see that a chain was fused).
pub fn eval_fused_regions() -> usize {
    REGIONS.load(Ordering::Relaxed)
}

/// Turns eval-time fusion on or off for the whole process; returns the previous setting.
pub fn set_eval_fusion(on: bool) -> bool {
    SWITCH.set(on)
}

/// Whether `op` may join a region: an exact element-wise op on a CPU stream, all of whose
/// operands and its result are f32 (or all f64), with one output of at least `MIN_ELEMENTS`.
fn fusable(op: &Op) -> bool {
    use BinaryOp as B;
    use UnaryOp as U;
    let exact = match &op.prim {
        Primitive::Unary(u) => {
            matches!(u, U::Abs | U::Negative | U::Square | U::Sqrt | U::Rsqrt | U::Reciprocal | U::Floor | U::Ceil)
        }
        Primitive::Binary(b) => matches!(b, B::Add | B::Subtract | B::Multiply | B::Divide | B::Maximum | B::Minimum),
        _ => false,
    };
    if !exact || op.stream.device.is_gpu() || op.specs.len() != 1 || size_of(&op.specs[0].0) < min_elements() {
        return false;
    }
    let dt = op.specs[0].1;
    matches!(dt, Dtype::Float32 | Dtype::Float64) && op.inputs.iter().all(|a| a.dtype() == dt)
}

/// The pending op computing `a`, when `a` is an intermediate only `consumer` holds: its node's
/// handles are exactly `consumer`'s references to it, and no transform keeps a tape of it.
fn private_producer(a: &Array, consumer: &Op) -> Option<Arc<Op>> {
    let uses = consumer.inputs.iter().filter(|b| Arc::ptr_eq(&a.0, &b.0)).count();
    if Arc::strong_count(&a.0) != uses || a.0.tape().is_some() || a.0.waited.load(Ordering::SeqCst) {
        return None;
    }
    match &*a.0.lock() {
        State::Scheduled(p) if p.outputs.get().is_some_and(|o| o.len() == 1) => Some(p.clone()),
        _ => None,
    }
}

/// Fuses the regions among `order` (ops just scheduled, in topological order) in place.
pub(super) fn fuse(order: &mut Vec<Arc<Op>>) {
    if !eval_fusion_enabled() || super::trace::is_tracing() {
        return;
    }
    let ok: Vec<bool> = order.iter().map(|op| fusable(op)).collect();
    if ok.iter().filter(|&&f| f).count() < 2 {
        return;
    }
    let pos: HashMap<*const Op, usize> = order.iter().enumerate().map(|(i, op)| (Arc::as_ptr(op), i)).collect();
    // parent[i]: the op that consumes op i's private result inside a region.
    let mut parent: Vec<Option<usize>> = vec![None; order.len()];
    for (c, op) in order.iter().enumerate() {
        if !ok[c] {
            continue;
        }
        for a in &op.inputs {
            let Some(p) = private_producer(a, op) else { continue };
            let Some(&pi) = pos.get(&Arc::as_ptr(&p)) else { continue };
            if ok[pi] && p.stream == op.stream && p.specs[0].0 == op.specs[0].0 {
                parent[pi] = Some(c);
            }
        }
    }
    // A consumer comes after its producer in `order`, so walking backwards gives every op its
    // region's root in one pass.
    let mut root: Vec<usize> = (0..order.len()).collect();
    for i in (0..order.len()).rev() {
        if let Some(p) = parent[i] {
            root[i] = root[p];
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, p) in parent.iter().enumerate() {
        if p.is_some() {
            members.entry(root[i]).or_default().push(i);
        }
    }
    if members.is_empty() {
        return;
    }
    let mut drop_op = vec![false; order.len()];
    for (root, mut m) in members {
        m.push(root);
        m.sort_unstable();
        let Some(fused) = build(order, &m) else { continue };
        // The root's node now waits on the fused op; the members (and with them their private
        // intermediates) go once `order` lets go of them.
        let Some(node) = order[root].outputs.get().and_then(|o| o[0].upgrade()) else { continue };
        *node.lock() = State::Scheduled(fused.clone());
        for &i in &m {
            drop_op[i] = true;
        }
        order[root] = fused;
        drop_op[root] = false;
        REGIONS.fetch_add(1, Ordering::Relaxed);
    }
    let mut i = 0;
    order.retain(|_| {
        i += 1;
        !drop_op[i - 1]
    });
}

/// The `Fused` op computing region `m` (indices into `order`, topological, the root last).
fn build(order: &[Arc<Op>], m: &[usize]) -> Option<Arc<Op>> {
    let inside: HashMap<*const super::node::Node, usize> =
        m.iter().enumerate().filter_map(|(k, &i)| order[i].outputs.get()?.first()?.upgrade().map(|n| (Arc::as_ptr(&n), k))).collect();
    if inside.len() != m.len() {
        return None;
    }
    // External inputs, a private broadcast looked through (the kernel reads the smaller array
    // with zero strides; the broadcast op then has no reader left and is skipped).
    let mut inputs: Vec<Array> = Vec::new();
    let mut value_of = |a: &Array, consumer: &Op| -> usize {
        let src = match private_producer(a, consumer) {
            Some(b) if matches!(b.prim, Primitive::Shape(ShapeOp::Broadcast(_))) && b.inputs.len() == 1 => b.inputs[0].clone(),
            _ => a.clone(),
        };
        match inputs.iter().position(|x| Arc::ptr_eq(&x.0, &src.0)) {
            Some(v) => v,
            None => {
                inputs.push(src);
                inputs.len() - 1
            }
        }
    };
    // Operands as (external input) or (member k); resolved to value numbers below.
    enum Operand {
        In(usize),
        Member(usize),
    }
    let mut operands: Vec<Vec<Operand>> = Vec::new();
    for &i in m {
        let op = &order[i];
        operands.push(
            op.inputs
                .iter()
                .map(|a| match inside.get(&Arc::as_ptr(&a.0)) {
                    Some(&k) => Operand::Member(k),
                    None => Operand::In(value_of(a, op)),
                })
                .collect(),
        );
    }
    let n_in = inputs.len();
    let val = |o: &Operand| match *o {
        Operand::In(v) => v,
        Operand::Member(k) => n_in + k,
    };
    let mut instrs = Vec::with_capacity(m.len());
    for (k, &i) in m.iter().enumerate() {
        let dtype = order[i].specs[0].1;
        let a = &operands[k];
        instrs.push(match order[i].prim {
            Primitive::Unary(op) => FusedInstr::Unary { op, x: val(&a[0]), dtype },
            Primitive::Binary(op) => FusedInstr::Binary { op, a: val(&a[0]), b: val(&a[1]), dtype },
            _ => return None,
        });
    }
    let root = &order[*m.last()?];
    let shape = root.specs[0].0.clone();
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let implied = broadcast_many(&shapes).ok();
    let prim = Primitive::Fused(FusedOp {
        input_dtypes: inputs.iter().map(|a| a.dtype()).collect(),
        instrs,
        outputs: vec![n_in + m.len() - 1],
        shape: if implied.as_ref() == Some(&shape) { None } else { Some(shape) },
    });
    let op = Arc::new(Op { prim, inputs, stream: root.stream, specs: root.specs.clone(), outputs: OnceLock::new() });
    let _ = op.outputs.set(root.outputs.get()?.clone());
    Some(op)
}
