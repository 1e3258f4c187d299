//! `vmap`: vectorise a function over a batch axis of some of its inputs.
//!
//! The function is traced once on inputs with the batch axis removed; the traced graph is then
//! replayed with batched arrays, each op through its batching rule (`vmap_rules`), with the batch
//! axis kept first. Ops that touch no batched value are reused as traced. Because the rules build
//! ordinary (traced) ops, vmap nests with itself and with the derivative transforms.

use super::api::{error_out, error_tree};
use super::autodiff::tracer;
use super::tree::{tree_flatten, tree_unflatten, Tree};
use super::vmap_rules;
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::trace;
use crate::ops as o;
use crate::shape::normalize_axis;
use std::collections::HashMap;

/// Per-leaf axes: one entry per leaf, or a single entry for every leaf. `None`: not batched
/// (inputs) / not batched or broadcast (outputs: an unbatched output gets the batch axis by
/// broadcasting, as MLX).
fn expand_axes(what: &str, axes: &[Option<isize>], n: usize) -> Result<Vec<Option<isize>>> {
    match axes.len() {
        1 => Ok(vec![axes[0]; n]),
        k if k == n => Ok(axes.to_vec()),
        k => Err(Error::invalid(format!("[vmap] {what} has {k} entries but the tree has {n} leaves (give one per leaf, or one for all)"))),
    }
}

/// `f` vectorised over `in_axes` of its input leaves, batch placed at `out_axes` of its outputs.
pub fn vmap<I: Tree, O: Tree>(f: impl Fn(I) -> O, in_axes: &[Option<isize>], out_axes: &[isize]) -> impl Fn(I) -> O {
    let (in_axes, out_axes) = (in_axes.to_vec(), out_axes.to_vec());
    move |x: I| match vmap_impl(&f, &x, &in_axes, &out_axes) {
        Ok(o) => o,
        Err(e) => error_tree(&error_out(&f, &unbatched_like(&x, &in_axes), &e), &e),
    }
}

/// Inputs with the batch axis taken at 0, for discovering the output structure on errors.
fn unbatched_like<I: Tree>(x: &I, in_axes: &[Option<isize>]) -> I {
    let leaves = tree_flatten(x);
    let axes = expand_axes("in_axes", in_axes, leaves.len()).unwrap_or_else(|_| vec![None; leaves.len()]);
    let v = leaves.iter().zip(&axes).map(|(l, a)| a.map_or(l.clone(), |a| o::take(l, &Array::scalar(0i32), Some(a)))).collect();
    tree_unflatten(x, v).expect("same tree")
}

fn vmap_impl<I: Tree, O: Tree>(f: &dyn Fn(I) -> O, x: &I, in_axes: &[Option<isize>], out_axes: &[isize]) -> Result<O> {
    let leaves = tree_flatten(x);
    let axes = expand_axes("in_axes", in_axes, leaves.len())?;
    let mut batch: Option<usize> = None;
    let mut resolved = Vec::with_capacity(leaves.len());
    for (i, (l, a)) in leaves.iter().zip(&axes).enumerate() {
        l.check()?;
        let Some(a) = a else {
            resolved.push(None);
            continue;
        };
        let ax = normalize_axis(*a, l.ndim(), "vmap")
            .map_err(|_| Error::invalid(format!("[vmap] in_axes {a} is out of range for input leaf {i} with shape {:?}", l.shape())))?;
        let b = l.shape()[ax];
        if let Some(prev) = batch {
            if prev != b {
                crate::bail!("[vmap] Inconsistent axis sizes: input leaf {i} has size {b} on its mapped axis, an earlier one {prev}.");
            }
        }
        batch = Some(b);
        resolved.push(Some(ax));
    }
    let Some(bsize) = batch else {
        crate::bail!("[vmap] At least one of in_axes must be non-None.");
    };
    let r = trace::tracing(|| -> Result<O> {
        let mut tracers = Vec::new();
        let mut batched: HashMap<u64, Array> = HashMap::new();
        let mut stop = Vec::new();
        for (l, ax) in leaves.iter().zip(&resolved) {
            match ax {
                None => tracers.push(l.clone()),
                Some(ax) => {
                    let t = tracer(&o::take(l, &Array::scalar(0i32), Some(*ax as isize)));
                    batched.insert(t.id(), o::moveaxis(l, *ax as isize, 0));
                    stop.push(t.clone());
                    tracers.push(t);
                }
            }
        }
        let out = f(tree_unflatten(x, tracers)?);
        let outs = tree_flatten(&out);
        let stop_ids = stop.iter().map(|t| t.id()).collect();
        for op in trace::traced_ops(&outs, &stop_ids) {
            if !op.inputs.iter().any(|i| batched.contains_key(&i.id())) {
                continue;
            }
            let ins: Vec<(Array, bool)> = op
                .inputs
                .iter()
                .map(|i| match batched.get(&i.id()) {
                    Some(b) => (b.clone(), true),
                    None => (i.clone(), false),
                })
                .collect();
            let res = vmap_rules::batch(&op.prim, &ins, bsize)?;
            for (node, b) in trace::op_outputs(&op).into_iter().zip(res) {
                if let Some(node) = node {
                    b.check()?;
                    batched.insert(node.id(), b);
                }
            }
        }
        let oaxes = expand_axes("out_axes", &out_axes.iter().map(|&a| Some(a)).collect::<Vec<_>>(), outs.len())?;
        let mut res = Vec::with_capacity(outs.len());
        for (i, (out, ax)) in outs.iter().zip(oaxes).enumerate() {
            let b = match batched.get(&out.id()) {
                Some(b) => b.clone(),
                None => o::broadcast_to(&o::expand_dims(out, &[0]), &[&[bsize][..], out.shape()].concat()),
            };
            let ax = ax.unwrap_or(0);
            let nd = b.ndim() as isize;
            if ax < -nd || ax >= nd {
                crate::bail!("[vmap] out_axes {ax} is out of range for output leaf {i} with {} dimensions (batch included).", nd);
            }
            res.push(o::moveaxis(&b, 0, ax));
        }
        tree_unflatten(&out, res)
    })?;
    trace::release_tapes(&tree_flatten(&r));
    Ok(r)
}
