//! Batching rules: each primitive applied to inputs whose batch axis (if batched) is axis 0,
//! producing outputs batched on axis 0. Most rules shift the primitive's axis parameters by
//! one; element-wise and matmul-like primitives broadcast unbatched operands; primitives without
//! a rule (random bits with batched keys, scatter, batched conv weights) loop
//! over the batch, which is always correct.

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::conv::ConvOp;
use crate::primitives::{FftOp, IndexOp, Primitive, ReduceOp, ShapeOp, SortOp};

fn up(axes: &[usize]) -> Vec<usize> {
    axes.iter().map(|a| a + 1).collect()
}

/// Every input batched: unbatched ones are broadcast along a new axis 0.
fn all_batched(ins: &[(Array, bool)], b: usize) -> Vec<Array> {
    ins.iter()
        .map(|(a, is_b)| if *is_b { a.clone() } else { o::broadcast_to(&o::expand_dims(a, &[0]), &[&[b][..], a.shape()].concat()) })
        .collect()
}

fn one(prim: Primitive, inputs: Vec<Array>) -> Vec<Array> {
    vec![Array::from_op(prim, inputs)]
}

pub(crate) fn batch(prim: &Primitive, ins: &[(Array, bool)], b: usize) -> Result<Vec<Array>> {
    let x = &ins[0].0;
    let only_first = ins.len() == 1 || ins[1..].iter().all(|(_, is_b)| !is_b);
    Ok(match prim {
        Primitive::Unary(_) | Primitive::Binary(_) | Primitive::Ternary(_) | Primitive::Cast(_) => one(prim.clone(), all_batched(ins, b)),
        Primitive::Reduce(op) => {
            let op = match op {
                ReduceOp::Reduce { kind, axes, dtype } => ReduceOp::Reduce { kind: *kind, axes: up(axes), dtype: *dtype },
                ReduceOp::ArgMax { axis } => ReduceOp::ArgMax { axis: axis + 1 },
                ReduceOp::ArgMin { axis } => ReduceOp::ArgMin { axis: axis + 1 },
                ReduceOp::Scan { kind, axis, reverse, inclusive } => {
                    ReduceOp::Scan { kind: *kind, axis: axis + 1, reverse: *reverse, inclusive: *inclusive }
                }
                // Row ops work on the last axis, which the batch axis does not move.
                ReduceOp::Softmax | ReduceOp::LogSumExp | ReduceOp::Var { .. } => op.clone(),
            };
            one(Primitive::Reduce(op), vec![x.clone()])
        }
        Primitive::Shape(op) => match op {
            ShapeOp::Reshape(s) => one(Primitive::Shape(ShapeOp::Reshape([&[b][..], s].concat())), vec![x.clone()]),
            ShapeOp::Broadcast(s) => {
                // Align x's dims under the target's trailing dims, batch first.
                let inner = &x.shape()[1..];
                let mut aligned = vec![b];
                aligned.extend(std::iter::repeat_n(1, s.len() - inner.len()));
                aligned.extend_from_slice(inner);
                one(Primitive::Shape(ShapeOp::Broadcast([&[b][..], s].concat())), vec![o::reshape_to(x, &aligned)])
            }
            ShapeOp::Transpose(perm) => {
                let mut p = vec![0];
                p.extend(up(perm));
                one(Primitive::Shape(ShapeOp::Transpose(p)), vec![x.clone()])
            }
            ShapeOp::Slice { start, step, len } => one(
                Primitive::Shape(ShapeOp::Slice {
                    start: [&[0][..], start].concat(),
                    step: [&[1][..], step].concat(),
                    len: [&[b][..], len].concat(),
                }),
                vec![x.clone()],
            ),
            ShapeOp::AsStrided { shape, strides, offset } => {
                // Each batch element is one contiguous block of the input's size.
                let n = x.size() / b.max(1);
                one(
                    Primitive::Shape(ShapeOp::AsStrided {
                        shape: [&[b][..], shape].concat(),
                        strides: [&[n as isize][..], strides].concat(),
                        offset: *offset,
                    }),
                    vec![o::contiguous(x)],
                )
            }
            ShapeOp::Copy | ShapeOp::StopGradient => one(prim.clone(), vec![x.clone()]),
            ShapeOp::Concatenate { axis } => one(Primitive::Shape(ShapeOp::Concatenate { axis: axis + 1 }), all_batched(ins, b)),
            ShapeOp::Pad { low, high } if only_first => one(
                Primitive::Shape(ShapeOp::Pad { low: [&[0][..], low].concat(), high: [&[0][..], high].concat() }),
                vec![x.clone(), ins[1].0.clone()],
            ),
            ShapeOp::Pad { .. } => return loop_over(prim, ins, b),
        },
        Primitive::Index(op) => match op {
            IndexOp::Gather { axes, slice_sizes } => {
                let idx_batched = ins[1..].iter().any(|(_, is_b)| *is_b);
                if !ins[0].1 {
                    // Only indices batched: the batch becomes a leading index dimension.
                    let idx: Vec<Array> = all_batched(&ins[1..], b);
                    let mut v = vec![x.clone()];
                    v.extend(idx);
                    one(prim.clone(), v)
                } else if !idx_batched {
                    // x batched: take the whole batch axis as part of each slice, then move it first.
                    let nidx = ins.get(1).map_or(0, |(i, _)| i.ndim());
                    let mut v = vec![x.clone()];
                    v.extend(ins[1..].iter().map(|(i, _)| i.clone()));
                    let g = Array::from_op(
                        Primitive::Index(IndexOp::Gather { axes: up(axes), slice_sizes: [&[b][..], slice_sizes].concat() }),
                        v,
                    );
                    vec![o::moveaxis(&g, nidx as isize, 0)]
                } else {
                    // Both batched: index the batch axis with iota alongside the others.
                    let idx = all_batched(&ins[1..], b);
                    let nidx = idx[0].ndim();
                    let mut iota_shape = vec![1usize; nidx];
                    iota_shape[0] = b;
                    let iota = o::broadcast_to(&o::reshape_to(&o::arange_n(b, Some(idx[0].dtype())), &iota_shape), idx[0].shape());
                    let mut v = vec![x.clone(), iota];
                    v.extend(idx);
                    let mut ax = vec![0];
                    ax.extend(up(axes));
                    let g =
                        Array::from_op(Primitive::Index(IndexOp::Gather { axes: ax, slice_sizes: [&[1][..], slice_sizes].concat() }), v);
                    vec![o::squeeze(&g, &[nidx as isize])]
                }
            }
            IndexOp::SliceUpdate { start, step, len } => one(
                Primitive::Index(IndexOp::SliceUpdate {
                    start: [&[0][..], start].concat(),
                    step: [&[1][..], step].concat(),
                    len: [&[b][..], len].concat(),
                }),
                all_batched(ins, b),
            ),
            IndexOp::Scatter { .. } => return loop_over(prim, ins, b),
        },
        Primitive::Matmul(_) | Primitive::Linalg(_) => {
            // Batched over leading axes already: give every operand the batch axis.
            multi(prim, all_batched(ins, b))?
        }
        Primitive::Quantized(op) => return quantized_batch(op, prim, ins, b),
        Primitive::Conv(ConvOp::Conv(_)) if only_first => {
            // Fold the batch into N.
            let s = x.shape();
            let folded = o::reshape_to(x, &[&[s[0] * s[1]][..], &s[2..]].concat());
            let y = Array::from_op(prim.clone(), vec![folded, ins[1].0.clone()]);
            let ys = y.shape().to_vec();
            vec![o::reshape_to(&y, &[&[b, s[1]][..], &ys[1..]].concat())]
        }
        Primitive::Sort(op) => {
            let op = match *op {
                SortOp::Sort { axis } => SortOp::Sort { axis: axis + 1 },
                SortOp::ArgSort { axis } => SortOp::ArgSort { axis: axis + 1 },
                SortOp::Partition { axis, kth } => SortOp::Partition { axis: axis + 1, kth },
                SortOp::ArgPartition { axis, kth } => SortOp::ArgPartition { axis: axis + 1, kth },
            };
            one(Primitive::Sort(op), vec![x.clone()])
        }
        Primitive::Fft(op) => {
            let op = match *op {
                FftOp::Fft { axis, inverse } => FftOp::Fft { axis: axis + 1, inverse },
                FftOp::Rfft { axis } => FftOp::Rfft { axis: axis + 1 },
                FftOp::Irfft { axis, n } => FftOp::Irfft { axis: axis + 1, n },
            };
            one(Primitive::Fft(op), vec![x.clone()])
        }
        Primitive::Fast(op) => super::rules::fast::batch(op, ins, b)?,
        Primitive::Distributed(op) => {
            use crate::primitives::distributed::DistributedOp;
            match op {
                // Element-wise over ranks: the batch axis rides along.
                DistributedOp::AllReduce { .. } | DistributedOp::Send { .. } => one(prim.clone(), vec![x.clone()]),
                // These split or join axis 0: move the batch out of the way, and back.
                DistributedOp::AllGather { .. } | DistributedOp::ReduceScatter { .. } => {
                    let x = if x.ndim() == 1 { o::reshape_to(x, &[b, 1]) } else { x.clone() };
                    let y = Array::from_op(prim.clone(), vec![o::swapaxes(&x, 0, 1)]);
                    vec![o::swapaxes(&y, 0, 1)]
                }
                // No inputs, so never batched.
                DistributedOp::Recv { .. } => loop_over(prim, ins, b)?,
            }
        }
        Primitive::Custom(op) => match &op.vmap {
            Some(rule) => {
                let n = op.n_primals;
                let axes: Vec<Option<usize>> = ins[..n].iter().map(|(_, is_b)| is_b.then_some(0)).collect();
                let prims: Vec<Array> = ins[..n].iter().map(|(a, _)| a.clone()).collect();
                let (outs, oaxes) = rule(&prims, &axes)?;
                outs.iter()
                    .zip(oaxes)
                    .map(|(a, ax)| match ax {
                        Some(ax) => o::moveaxis(a, ax as isize, 0),
                        None => o::broadcast_to(&o::expand_dims(a, &[0]), &[&[b][..], a.shape()].concat()),
                    })
                    .collect()
            }
            // Batch the forward function itself (through the other rules).
            None => {
                let n = op.n_primals;
                let in_axes: Vec<Option<isize>> = ins[..n].iter().map(|(_, is_b)| is_b.then_some(0)).collect();
                let fwd = op.forward.clone();
                let f = move |v: Vec<Array>| fwd(&v).unwrap_or_else(|e| vec![Array::error(e)]);
                let prims: Vec<Array> = ins[..n].iter().map(|(a, _)| a.clone()).collect();
                super::vmap::vmap(f, &in_axes, &[0])(prims)
            }
        },
        // A fused region is batched as the element-wise ops it stands for (each has a rule).
        Primitive::Fused(op) => {
            let in_axes: Vec<Option<isize>> = ins.iter().map(|(_, is_b)| is_b.then_some(0)).collect();
            let op = op.clone();
            let f = move |v: Vec<Array>| {
                super::rules::fused::expand(&op, &v).unwrap_or_else(|e| op.outputs.iter().map(|_| Array::error(e.clone())).collect())
            };
            let prims: Vec<Array> = ins.iter().map(|(a, _)| a.clone()).collect();
            super::vmap::vmap(f, &in_axes, &[0])(prims)
        }
        Primitive::Random(_) | Primitive::Creation(_) | Primitive::Conv(_) => return loop_over(prim, ins, b),
    })
}

/// Quantize/dequantize work row by row, so a leading batch axis passes through; a matmul with
/// only `x` batched against a 2-d matrix folds the batch into `x`'s leading axes; the rest
/// loops.
fn quantized_batch(op: &crate::primitives::QuantizedOp, prim: &Primitive, ins: &[(Array, bool)], b: usize) -> Result<Vec<Array>> {
    use crate::primitives::QuantizedOp;
    let only_first = ins[1..].iter().all(|(_, is_b)| !is_b);
    match op {
        QuantizedOp::Quantize(_) | QuantizedOp::Dequantize { .. } => multi(prim, all_batched(ins, b)),
        QuantizedOp::Matmul { .. } if only_first && ins[1].0.ndim() == 2 => multi(prim, ins.iter().map(|(a, _)| a.clone()).collect()),
        QuantizedOp::Matmul { .. } if ins[0].1 && ins[0].0.ndim() == ins[1].0.ndim() + usize::from(!ins[1].1) => {
            multi(prim, all_batched(ins, b))
        }
        _ => loop_over(prim, ins, b),
    }
}

/// The primitive applied to each batch element, results stacked: correct for anything.
fn loop_over(prim: &Primitive, ins: &[(Array, bool)], b: usize) -> Result<Vec<Array>> {
    let mut per_out: Vec<Vec<Array>> = Vec::new();
    for k in 0..b {
        let idx = Array::scalar(k as i32);
        let v: Vec<Array> = ins.iter().map(|(a, is_b)| if *is_b { o::take(a, &idx, Some(0)) } else { a.clone() }).collect();
        let outs = multi(prim, v)?;
        if per_out.is_empty() {
            per_out = vec![Vec::new(); outs.len()];
        }
        for (slot, a) in per_out.iter_mut().zip(outs) {
            slot.push(a);
        }
    }
    Ok(per_out.into_iter().map(|v| o::stack(&v, 0)).collect())
}

/// Builds a node with however many outputs the primitive has.
fn multi(prim: &Primitive, inputs: Vec<Array>) -> Result<Vec<Array>> {
    for a in &inputs {
        a.check()?;
    }
    let n = prim.output_specs(&inputs.iter().map(|a| (a.shape().to_vec(), a.dtype())).collect::<Vec<_>>())?.len();
    Ok(Array::from_op_multi(prim.clone(), inputs, n))
}
