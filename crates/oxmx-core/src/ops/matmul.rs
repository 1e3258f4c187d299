//! Matrix products (see primitives/matmul.rs): `matmul` with NumPy's batch broadcasting and
//! 1-d promotion, and `addmm`, `inner`, `outer`, `tensordot`, `kron` built on it.

use super::shape::SliceSpec;
use crate::array::Array;
use crate::dtype::{promote_types, Dtype, Scalar};
use crate::error::Result;
use crate::primitives::{MatmulOp, Primitive};
use crate::shape::{broadcast_shapes, normalize_axis};

/// Matrix product of `a` and `b`. 1-d operands are promoted to a row (for `a`) or a column
/// (for `b`) and the added axis removed from the result; batch axes broadcast.
#[track_caller]
pub fn matmul(a: &Array, b: &Array) -> Array {
    Array::build(|| {
        if a.ndim() == 0 || b.ndim() == 0 {
            crate::bail!("[matmul] Got 0 dimension input. Inputs must have at least one dimension.");
        }
        let dt = promote_types(a.dtype(), b.dtype());
        let dt = if dt == Dtype::Bool { Dtype::Int32 } else { dt };
        let (mut x, mut y) = (a.astype(dt), b.astype(dt));
        let (a1, b1) = (a.ndim() == 1, b.ndim() == 1);
        if a1 {
            x = super::reshape_to(&x, &[1, a.shape()[0]]);
        }
        if b1 {
            y = super::reshape_to(&y, &[b.shape()[0], 1]);
        }
        let (xs, ys) = (x.shape().to_vec(), y.shape().to_vec());
        let (xn, yn) = (xs.len(), ys.len());
        if xs[xn - 1] != ys[yn - 2] {
            crate::bail!("[matmul] Last dimension of first input with shape {:?} must match second to last dimension of second input with shape {:?}.", a.shape(), b.shape());
        }
        if xn > 2 && yn == 2 {
            // A batch of `x` against one matrix (`Linear` on [batch, seq, dims]) is one product
            // with the batch folded into the rows, as MLX does. Broadcasting the matrix instead
            // made many small products, and its gradient a batch of them summed afterwards
            // (x_bᵀ·g_b per batch element, through a transposed copy) rather than one xᵀ·g.
            let rows: usize = xs[..xn - 1].iter().product();
            let flat = matmul(&super::reshape_to(&x, &[rows, xs[xn - 1]]), &y);
            let mut shape = xs[..xn - 1].to_vec();
            if !b1 {
                shape.push(ys[1]);
            }
            return Ok(super::reshape_to(&flat, &shape));
        }
        let batch = broadcast_shapes(&xs[..xn - 2], &ys[..yn - 2])?;
        let mut xt = batch.clone();
        xt.extend_from_slice(&xs[xn - 2..]);
        let mut yt = batch.clone();
        yt.extend_from_slice(&ys[yn - 2..]);
        if xt != xs {
            x = super::broadcast_to(&x, &xt);
        }
        if yt != ys {
            y = super::broadcast_to(&y, &yt);
        }
        let out = Array::from_op(Primitive::Matmul(MatmulOp::Matmul), vec![x, y]);
        let mut shape = batch;
        if !a1 {
            shape.push(xs[xn - 2]);
        }
        if !b1 {
            shape.push(ys[yn - 1]);
        }
        Ok(if a1 || b1 { super::reshape_to(&out, &shape) } else { out })
    })
}

/// `alpha * (a @ b) + beta * c`.
#[track_caller]
pub fn addmm(c: &Array, a: &Array, b: &Array, alpha: f64, beta: f64) -> Array {
    Array::build(|| {
        let mut p = matmul(a, b);
        if alpha != 1.0 {
            p = super::multiply(&p, Scalar::Float(alpha));
        }
        if beta == 0.0 {
            return Ok(p);
        }
        let cc = if beta != 1.0 { super::multiply(c, Scalar::Float(beta)) } else { c.clone() };
        Ok(super::add(&p, &cc))
    })
}

/// The sum of products over the last axes (`a` and `b` must agree there); 0-d operands multiply.
#[track_caller]
pub fn inner(a: &Array, b: &Array) -> Array {
    Array::build(|| {
        if a.ndim() == 0 || b.ndim() == 0 {
            return Ok(super::multiply(a, b));
        }
        if a.shape()[a.ndim() - 1] != b.shape()[b.ndim() - 1] {
            crate::bail!("[inner] a and b must have the same last dimension, got {:?} and {:?}.", a.shape(), b.shape());
        }
        Ok(tensordot(a, b, &[-1], &[-1]))
    })
}

/// The outer product of the flattened `a` and `b`.
#[track_caller]
pub fn outer(a: &Array, b: &Array) -> Array {
    Array::build(|| Ok(super::multiply(&super::reshape(a, &[-1, 1]), &super::reshape(b, &[-1]))))
}

/// Contracts `axes_a` of `a` with `axes_b` of `b`; result axes are `a`'s free axes then `b`'s.
#[track_caller]
pub fn tensordot(a: &Array, b: &Array, axes_a: &[isize], axes_b: &[isize]) -> Array {
    Array::build(|| {
        if axes_a.len() != axes_b.len() {
            crate::bail!("[tensordot] axes must have the same length, got {axes_a:?} and {axes_b:?}.");
        }
        let ca: Vec<usize> = axes_a.iter().map(|&x| normalize_axis(x, a.ndim(), "tensordot")).collect::<Result<_>>()?;
        let cb: Vec<usize> = axes_b.iter().map(|&x| normalize_axis(x, b.ndim(), "tensordot")).collect::<Result<_>>()?;
        for (&i, &j) in ca.iter().zip(&cb) {
            if a.shape()[i] != b.shape()[j] {
                crate::bail!(
                    "[tensordot] contracted dimensions must match, got {} and {} for shapes {:?} and {:?}.",
                    a.shape()[i],
                    b.shape()[j],
                    a.shape(),
                    b.shape()
                );
            }
        }
        let fa: Vec<usize> = (0..a.ndim()).filter(|i| !ca.contains(i)).collect();
        let fb: Vec<usize> = (0..b.ndim()).filter(|i| !cb.contains(i)).collect();
        let csize: usize = ca.iter().map(|&i| a.shape()[i]).product();
        let fa_size: usize = fa.iter().map(|&i| a.shape()[i]).product();
        let fb_size: usize = fb.iter().map(|&i| b.shape()[i]).product();
        let pa: Vec<isize> = fa.iter().chain(&ca).map(|&i| i as isize).collect();
        let pb: Vec<isize> = cb.iter().chain(&fb).map(|&i| i as isize).collect();
        let x = super::reshape_to(&super::transpose(a, &pa), &[fa_size, csize]);
        let y = super::reshape_to(&super::transpose(b, &pb), &[csize, fb_size]);
        let out_shape: Vec<usize> = fa.iter().map(|&i| a.shape()[i]).chain(fb.iter().map(|&i| b.shape()[i])).collect();
        Ok(super::reshape_to(&matmul(&x, &y), &out_shape))
    })
}

/// `tensordot` over the last `n` axes of `a` and the first `n` of `b`.
#[track_caller]
pub fn tensordot_n(a: &Array, b: &Array, n: usize) -> Array {
    let axes_a: Vec<isize> = (0..n).map(|i| a.ndim() as isize - n as isize + i as isize).collect();
    let axes_b: Vec<isize> = (0..n as isize).collect();
    tensordot(a, b, &axes_a, &axes_b)
}

/// The Kronecker product.
#[track_caller]
pub fn kron(a: &Array, b: &Array) -> Array {
    Array::build(|| {
        let nd = a.ndim().max(b.ndim());
        let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat(1).take(nd - s.len()).chain(s.iter().copied()).collect() };
        let (sa, sb) = (pad(a.shape()), pad(b.shape()));
        let ia: Vec<usize> = sa.iter().flat_map(|&d| [d, 1]).collect();
        let ib: Vec<usize> = sb.iter().flat_map(|&d| [1, d]).collect();
        let p = super::multiply(&super::reshape_to(a, &ia), &super::reshape_to(b, &ib));
        let out: Vec<usize> = sa.iter().zip(&sb).map(|(x, y)| x * y).collect();
        Ok(super::reshape_to(&p, &out))
    })
}

/// `matmul` of matrices gathered from the batch dims of `a` and `b`: `lhs_indices` and
/// `rhs_indices` hold flat indices into those batch dims (default: every matrix in order) and
/// broadcast together; the result has their broadcast shape followed by `[M, N]`. This is the
/// mixture-of-experts product. `sorted_indices` is a hint MLX accepts; the result is the same.
#[track_caller]
pub fn gather_mm(a: &Array, b: &Array, lhs_indices: Option<&Array>, rhs_indices: Option<&Array>, sorted_indices: bool) -> Array {
    let _ = sorted_indices;
    Array::build(|| {
        if a.ndim() < 2 || b.ndim() < 2 {
            crate::bail!("[gather_mm] Expected inputs of rank >= 2, got {:?} and {:?}.", a.shape(), b.shape());
        }
        if lhs_indices.is_none() && rhs_indices.is_none() {
            return Ok(matmul(a, b));
        }
        let dt = promote_types(a.dtype(), b.dtype());
        let flat = |x: &Array| -> (Array, Vec<usize>) {
            let nd = x.ndim();
            let batch = x.shape()[..nd - 2].to_vec();
            let n: usize = batch.iter().product();
            (super::reshape_to(&x.astype(dt), &[n, x.shape()[nd - 2], x.shape()[nd - 1]]), batch)
        };
        let (ka, kb) = (a.shape()[a.ndim() - 1], b.shape()[b.ndim() - 2]);
        if ka != kb {
            crate::bail!("[gather_mm] Last dimension of first input with shape {:?} must match second to last dimension of second input with shape {:?}.", a.shape(), b.shape());
        }
        let ((fa, ba), (fb, bb)) = (flat(a), flat(b));
        let indices = |given: Option<&Array>, batch: &[usize], name: &str| -> Result<Array> {
            match given {
                Some(i) if !i.dtype().is_integer() => {
                    crate::bail!("[gather_mm] {name} must be integers, got {}.", i.dtype())
                }
                Some(i) => Ok(i.clone()),
                None => Ok(super::reshape_to(&super::arange_n(batch.iter().product(), Some(Dtype::Uint32)), batch)),
            }
        };
        let (li, ri) = (indices(lhs_indices, &ba, "lhs_indices")?, indices(rhs_indices, &bb, "rhs_indices")?);
        let shape = broadcast_shapes(li.shape(), ri.shape())?;
        let n: usize = shape.iter().product();
        let take = |m: &Array, i: &Array| super::take(m, &super::reshape_to(&super::broadcast_to(i, &shape), &[n]), Some(0));
        let out = matmul(&take(&fa, &li), &take(&fb, &ri));
        let mut out_shape = shape.clone();
        out_shape.extend_from_slice(&[a.shape()[a.ndim() - 2], b.shape()[b.ndim() - 1]]);
        Ok(super::reshape_to(&out, &out_shape))
    })
}

/// `matmul` with `block_size`-square blocks of the operands and the output scaled by masks
/// (bool masks zero blocks out; float masks multiply them). Masks have shape
/// `[..., ceil(rows / block_size), ceil(cols / block_size)]`; block_size is 32 or 64.
#[track_caller]
pub fn block_masked_mm(
    a: &Array,
    b: &Array,
    block_size: usize,
    mask_out: Option<&Array>,
    mask_lhs: Option<&Array>,
    mask_rhs: Option<&Array>,
) -> Array {
    Array::build(|| {
        if block_size != 32 && block_size != 64 {
            crate::bail!("[block_masked_mm] Only block_sizes 32, 64 are supported. Got block size {block_size}.");
        }
        if a.ndim() < 2 || b.ndim() < 2 {
            crate::bail!("[block_masked_mm] Expected inputs of rank >= 2, got {:?} and {:?}.", a.shape(), b.shape());
        }
        let dt = promote_types(a.dtype(), b.dtype());
        // Expands a block mask to `rows x cols` elements: each entry becomes a bs x bs block.
        let expand = |m: &Array, rows: usize, cols: usize, name: &str| -> Result<Array> {
            let (r, c) = (rows.div_ceil(block_size), cols.div_ceil(block_size));
            let nd = m.ndim();
            if nd < 2 || m.shape()[nd - 2..] != [r, c] {
                crate::bail!("[block_masked_mm] {name} must have shape [..., {r}, {c}] for block size {block_size}, got {:?}.", m.shape());
            }
            let lead = &m.shape()[..nd - 2];
            let with = |extra: &[usize]| -> Vec<usize> { lead.iter().chain(extra).copied().collect() };
            let x = super::reshape_to(&m.astype(dt), &with(&[r, 1, c, 1]));
            let x = super::reshape_to(
                &super::broadcast_to(&x, &with(&[r, block_size, c, block_size])),
                &with(&[r * block_size, c * block_size]),
            );
            let mut spec = vec![SliceSpec::FULL; nd - 2];
            spec.push(SliceSpec::new(Some(0), Some(rows as isize), 1));
            spec.push(SliceSpec::new(Some(0), Some(cols as isize), 1));
            Ok(super::slice(&x, &spec))
        };
        let (m, k, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1], b.shape()[b.ndim() - 1]);
        let mut x = a.astype(dt);
        let mut y = b.astype(dt);
        if let Some(ml) = mask_lhs {
            x = super::multiply(&x, &expand(ml, m, k, "mask_lhs")?);
        }
        if let Some(mr) = mask_rhs {
            y = super::multiply(&y, &expand(mr, k, n, "mask_rhs")?);
        }
        let mut out = matmul(&x, &y);
        if let Some(mo) = mask_out {
            out = super::multiply(&out, &expand(mo, m, n, "mask_out")?);
        }
        Ok(out)
    })
}
