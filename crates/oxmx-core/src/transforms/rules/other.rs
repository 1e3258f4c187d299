//! Derivatives of matmul, convolution and sorting.

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::conv::{ConvOp, ConvParams};
use crate::primitives::{Primitive, SortOp};

/// `y = a @ b` (equal batch shapes): `da = g @ bᵀ`, `db = aᵀ @ g`, the latter built as
/// `(gᵀ @ a)ᵀ` so that `g` is the node's first input: evaluation visits inputs in order, and
/// finishing the cotangent chain before recomputed activations is what lets `checkpoint` keep
/// only one block's intermediates alive.
pub(super) fn matmul_vjp(inputs: &[Array], g: &Array, i: usize) -> Result<Array> {
    let t = |a: &Array| o::swapaxes(a, -1, -2);
    Ok(if i == 0 { o::matmul(g, &t(&inputs[1])) } else { t(&o::matmul(&t(g), &inputs[0])) })
}

fn conv(x: &Array, w: &Array, p: ConvParams) -> Array {
    Array::from_op(Primitive::Conv(ConvOp::Conv(p)), vec![x.clone(), w.clone()])
}

/// Convolution (channels last; cross-correlation unless `flip`). Per spatial axis, with input
/// dilation `di`, stride `s`, kernel dilation `dk`, kernel size `K`, padding `lo`:
/// `out[o] = Σ_k w[k] · xd[o·s + k·dk − lo]` where `xd` is the dilated input.
/// - input: `g` dilated by `s`, correlated with the reversed kernel (channels swapped per group),
///   padded so the result covers `xd`, then strided back by `di`;
/// - weight: `x` correlated with `g` as the kernel (kernel dilation `s`, stride `dk`), with
///   batch and group folded into the channels so one grouped convolution sums over the batch.
pub(super) fn conv_vjp(p: &ConvParams, inputs: &[Array], g: &Array, i: usize) -> Result<Array> {
    let (x, w) = (&inputs[0], &inputs[1]);
    let sp = x.ndim() - 2;
    let (n, c_in, c_out, groups) = (x.shape()[0], x.shape()[sp + 1], w.shape()[0], p.groups);
    let (cig, cog) = (c_in / groups, c_out / groups);
    let xd_len: Vec<isize> = (0..sp).map(|d| (x.shape()[d + 1] as isize - 1) * p.input_dilation[d] as isize + 1).collect();
    let ksize: Vec<usize> = (0..sp).map(|d| w.shape()[d + 1]).collect();
    let out_len: Vec<usize> = (0..sp).map(|d| g.shape()[d + 1]).collect();
    let spatial = |off: isize| -> Vec<isize> { (0..sp).map(|d| d as isize + off).collect() };
    if i == 0 {
        // Weight as (C_in, K…, C_out / groups), grouped.
        let mut ws: Vec<isize> = vec![groups as isize, cog as isize];
        ws.extend(ksize.iter().map(|&k| k as isize));
        ws.push(cig as isize);
        let wg = o::reshape(w, &ws);
        let mut perm: Vec<isize> = vec![0, sp as isize + 2];
        perm.extend(spatial(2));
        perm.push(1);
        let mut w2s: Vec<isize> = vec![c_in as isize];
        w2s.extend(ksize.iter().map(|&k| k as isize));
        w2s.push(cog as isize);
        let w2 = o::reshape(&o::transpose(&wg, &perm), &w2s);
        let mut lo = vec![];
        let mut hi = vec![];
        for d in 0..sp {
            let span = (ksize[d] as isize - 1) * p.kernel_dilation[d] as isize;
            let gd_len = (out_len[d] as isize - 1) * p.stride[d] as isize + 1;
            let l = span - p.pad_lo[d];
            lo.push(l);
            hi.push(xd_len[d] - gd_len - l + span);
        }
        let q = ConvParams {
            stride: vec![1; sp],
            pad_lo: lo,
            pad_hi: hi,
            kernel_dilation: p.kernel_dilation.clone(),
            input_dilation: p.stride.clone(),
            groups,
            flip: !p.flip,
        };
        let dxd = conv(g, &w2, q);
        if p.input_dilation.iter().all(|&d| d == 1) {
            return Ok(dxd);
        }
        let mut specs = vec![o::SliceSpec::FULL];
        specs.extend(p.input_dilation.iter().map(|&d| o::SliceSpec::new(None, None, d as isize)));
        Ok(o::slice(&dxd, &specs))
    } else {
        // x as (C_in/groups, S…, groups·N); g as (groups·C_out/groups, So…, N).
        let mut xs: Vec<isize> = vec![n as isize];
        xs.extend(x.shape()[1..=sp].iter().map(|&k| k as isize));
        xs.extend([groups as isize, cig as isize]);
        let mut perm: Vec<isize> = vec![sp as isize + 2];
        perm.extend(spatial(1));
        perm.extend([sp as isize + 1, 0]);
        let mut x2s: Vec<isize> = vec![cig as isize];
        x2s.extend(x.shape()[1..=sp].iter().map(|&k| k as isize));
        x2s.push((groups * n) as isize);
        let x2 = o::reshape(&o::transpose(&o::reshape(x, &xs), &perm), &x2s);
        let mut gs: Vec<isize> = vec![n as isize];
        gs.extend(out_len.iter().map(|&k| k as isize));
        gs.extend([groups as isize, cog as isize]);
        let mut gperm: Vec<isize> = vec![sp as isize + 1, sp as isize + 2];
        gperm.extend(spatial(1));
        gperm.push(0);
        let mut g2s: Vec<isize> = vec![c_out as isize];
        g2s.extend(out_len.iter().map(|&k| k as isize));
        g2s.push(n as isize);
        let g2 = o::reshape(&o::transpose(&o::reshape(g, &gs), &gperm), &g2s);
        let hi: Vec<isize> = (0..sp)
            .map(|d| {
                (ksize[d] as isize - 1) * p.kernel_dilation[d] as isize + p.stride[d] as isize * (out_len[d] as isize - 1) + 1
                    - xd_len[d]
                    - p.pad_lo[d]
            })
            .collect();
        let q = ConvParams {
            stride: p.kernel_dilation.clone(),
            pad_lo: p.pad_lo.clone(),
            pad_hi: hi,
            kernel_dilation: p.stride.clone(),
            input_dilation: p.input_dilation.clone(),
            groups,
            flip: false,
        };
        // (C_in/groups, K…, C_out) → (C_out, K…, C_in/groups).
        let dw = o::moveaxis(&o::moveaxis(&conv(&x2, &g2, q), -1, 0), 1, -1);
        Ok(if p.flip { o::flip(&dw, &spatial(1)) } else { dw })
    }
}

/// Sorting permutes: the cotangent goes back through the permutation.
pub(super) fn sort_vjp(op: &SortOp, x: &Array, g: &Array) -> Result<Array> {
    Ok(match *op {
        SortOp::Sort { axis } => o::put_along_axis(&o::zeros_like(x), &o::argsort(x, Some(axis as isize)), g, Some(axis as isize)),
        SortOp::Partition { axis, kth } => {
            o::put_along_axis(&o::zeros_like(x), &o::argpartition(x, kth as isize, Some(axis as isize)), g, Some(axis as isize))
        }
        SortOp::ArgSort { .. } | SortOp::ArgPartition { .. } => o::zeros_like(x),
    })
}
