//! The reverse- and forward-mode engines over traced graphs.
//!
//! A transform wraps each primal in a fresh `Copy` node (the "tracer": a view, no data is
//! copied) so the traced graph has distinct entry points even when the same array is passed
//! twice or was itself built by an outer transform; runs the function with tracing on; then walks
//! the traced ops between the tracers and the outputs, applying the rules in `rules`.

use super::rules::{self, JvpKind};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::trace;
use crate::ops as o;
use crate::primitives::{Primitive, ShapeOp};
use std::collections::{HashMap, HashSet};

/// A fresh traced node standing for `p`.
pub(crate) fn tracer(p: &Array) -> Array {
    Array::from_op(Primitive::Shape(ShapeOp::Copy), vec![p.clone()])
}

/// Whether cotangents/tangents flow through values of this array's dtype.
fn differentiable(a: &Array) -> bool {
    a.dtype().is_inexact()
}

fn add_into(map: &mut HashMap<u64, Array>, key: &Array, value: Array) {
    let value = if value.dtype() != key.dtype() { value.astype(key.dtype()) } else { value };
    let v = match map.remove(&key.id()) {
        Some(prev) => prev + value,
        None => value,
    };
    map.insert(key.id(), v);
}

fn check_shape(what: &str, prim: &Primitive, expected: &Array, got: &Array) -> Result<()> {
    got.check()?;
    if got.shape() != expected.shape() {
        return Err(Error::runtime(format!(
            "internal: [{what}] the rule of {} produced shape {:?} for an input of shape {:?}",
            prim.name(),
            got.shape(),
            expected.shape()
        )));
    }
    Ok(())
}

/// Ops between tracers and outputs with the set of node ids that depend on a tracer.
fn active_graph(tracers: &[Array], outputs: &[Array]) -> (Vec<std::sync::Arc<crate::graph::node::Op>>, HashSet<u64>) {
    let stop: HashSet<u64> = tracers.iter().map(|t| t.id()).collect();
    let ops = trace::traced_ops(outputs, &stop);
    let mut active: HashSet<u64> = tracers.iter().filter(|t| differentiable(t)).map(|t| t.id()).collect();
    for op in &ops {
        if matches!(op.prim, Primitive::Shape(ShapeOp::StopGradient)) {
            continue;
        }
        if op.inputs.iter().any(|i| active.contains(&i.id())) {
            for out in trace::op_outputs(op).into_iter().flatten() {
                if differentiable(&out) {
                    active.insert(out.id());
                }
            }
        }
    }
    (ops, active)
}

/// Reverse mode: cotangents of `tracers` given cotangents of `outputs` (inside a trace).
pub(crate) fn backprop(tracers: &[Array], outputs: &[Array], cotangents: &[Array]) -> Result<Vec<Array>> {
    let (ops, active) = active_graph(tracers, outputs);
    let mut cot: HashMap<u64, Array> = HashMap::new();
    for (out, c) in outputs.iter().zip(cotangents) {
        if active.contains(&out.id()) {
            add_into(&mut cot, out, c.clone());
        }
    }
    for op in ops.iter().rev() {
        let outs = trace::op_outputs(op);
        let out_cots: Vec<Option<Array>> = outs.iter().map(|o| o.as_ref().and_then(|o| cot.remove(&o.id()))).collect();
        if out_cots.iter().all(|c| c.is_none()) {
            continue;
        }
        let argnums: Vec<usize> = (0..op.inputs.len()).filter(|&i| active.contains(&op.inputs[i].id())).collect();
        if argnums.is_empty() {
            continue;
        }
        let in_cots = rules::vjp(&op.prim, &op.inputs, &outs, &out_cots, &argnums)?;
        for (&i, c) in argnums.iter().zip(in_cots) {
            check_shape("vjp", &op.prim, &op.inputs[i], &c)?;
            add_into(&mut cot, &op.inputs[i], c);
        }
    }
    Ok(tracers.iter().map(|t| cot.remove(&t.id()).unwrap_or_else(|| o::zeros_like(t))).collect())
}

/// Forward mode: tangents of `outputs` given tangents of `tracers` (inside a trace).
pub(crate) fn forward(tracers: &[Array], tangents: &[Array], outputs: &[Array]) -> Result<Vec<Array>> {
    let (ops, active) = active_graph(tracers, outputs);
    let mut tan: HashMap<u64, Array> = HashMap::new();
    for (t, v) in tracers.iter().zip(tangents) {
        if active.contains(&t.id()) {
            add_into(&mut tan, t, v.clone());
        }
    }
    for op in &ops {
        let outs = trace::op_outputs(op);
        if !outs.iter().flatten().any(|o| active.contains(&o.id())) {
            continue;
        }
        let in_tans: Vec<Option<Array>> =
            op.inputs.iter().map(|i| if active.contains(&i.id()) { tan.get(&i.id()).cloned() } else { None }).collect();
        if in_tans.iter().all(|t| t.is_none()) {
            continue;
        }
        let out_tans = jvp_op(op, &outs, &in_tans)?;
        for (out, t) in outs.iter().zip(out_tans) {
            if let (Some(out), Some(t)) = (out, t) {
                check_shape("jvp", &op.prim, out, &t)?;
                add_into(&mut tan, out, t);
            }
        }
    }
    Ok(outputs.iter().map(|out| tan.get(&out.id()).cloned().unwrap_or_else(|| o::zeros_like(out))).collect())
}

/// Output tangents of one op (`None` for outputs without one).
fn jvp_op(op: &crate::graph::node::Op, outs: &[Option<Array>], in_tans: &[Option<Array>]) -> Result<Vec<Option<Array>>> {
    let (prim, inputs) = (&op.prim, &op.inputs[..]);
    let n = inputs.len();
    match rules::jvp_kind(prim) {
        JvpKind::Elementwise => {
            // Σ_i vjp_i(t_i): each term is t_i · ∂y/∂x_i.
            let mut total: Option<Array> = None;
            for (i, t) in in_tans.iter().enumerate() {
                if let Some(t) = t {
                    // Complex vjp rules return ḡ·conj(f'); the tangent needs t·f' = conj(vjp(conj(t))).
                    let holo = inputs[i].dtype().is_complex() && matches!(prim, Primitive::Unary(_) | Primitive::Binary(_));
                    let t = if holo { o::conjugate(t) } else { t.clone() };
                    let term = rules::vjp(prim, inputs, outs, &[Some(t)], &[i])?.remove(0);
                    let term = if holo { o::conjugate(&term) } else { term };
                    total = Some(match total {
                        Some(s) => s + term,
                        None => term,
                    });
                }
            }
            Ok(vec![total])
        }
        JvpKind::Linear => {
            let ins: Vec<Array> = (0..n)
                .map(|i| match &in_tans[i] {
                    Some(t) => t.clone(),
                    None if rules::is_linear_input(prim, i, n) => o::zeros_like(&inputs[i]),
                    None => inputs[i].clone(),
                })
                .collect();
            Ok(vec![Some(Array::from_op(prim.clone(), ins))])
        }
        JvpKind::Multilinear => {
            let mut total: Option<Array> = None;
            for (i, t) in in_tans.iter().enumerate() {
                if let Some(t) = t {
                    let mut ins = inputs.to_vec();
                    ins[i] = t.clone();
                    let term = Array::from_op(prim.clone(), ins);
                    total = Some(match total {
                        Some(s) => s + term,
                        None => term,
                    });
                }
            }
            Ok(vec![total])
        }
        JvpKind::Custom => {
            let Primitive::Custom(op) = prim else { unreachable!() };
            let np = op.n_primals;
            let ts: Vec<Array> = (0..np).map(|i| in_tans[i].clone().unwrap_or_else(|| o::zeros_like(&inputs[i]))).collect();
            let f = op.jvp.as_ref().expect("checked by jvp_kind");
            let res = f(&inputs[..np], &ts)?;
            if res.len() != outs.len() {
                return Err(Error::invalid(format!(
                    "[custom_function] the jvp of {} returned {} tangents for {} outputs",
                    op.name,
                    res.len(),
                    outs.len()
                )));
            }
            Ok(res.into_iter().map(Some).collect())
        }
        JvpKind::Fused => {
            let Primitive::Fused(f) = prim else { unreachable!() };
            rules::fused::jvp(f, inputs, in_tans)
        }
        JvpKind::Transpose => {
            // u ↦ vjp(u) is linear; its transpose applied to the input tangents is the jvp.
            let argnums: Vec<usize> = (0..n).filter(|&i| in_tans[i].is_some()).collect();
            let seeds: Vec<Array> = outs
                .iter()
                .enumerate()
                .map(|(k, o)| match o {
                    Some(o) => o::zeros_like(o),
                    None => o::zeros(&op.specs[k].0, op.specs[k].1),
                })
                .collect();
            let us: Vec<Array> = seeds.iter().map(tracer).collect();
            let cots: Vec<Option<Array>> = us.iter().map(|u| Some(u.clone())).collect();
            let vj = rules::vjp(prim, inputs, outs, &cots, &argnums)?;
            let t: Vec<Array> = argnums.iter().map(|&i| in_tans[i].clone().unwrap()).collect();
            let res = backprop(&us, &vj, &t)?;
            Ok(res.into_iter().map(Some).collect())
        }
    }
}
