//! Quantization ops with MLX's names, argument order and defaults (`mx.quantize`,
//! `mx.dequantize`, `mx.quantized_matmul`, `mx.gather_qmm`); see primitives/quantized.rs for
//! the packed layout. `group_size`/`bits` of `None` take the mode's default (affine: 64, 4;
//! mxfp4: 32, 4; mxfp8: 32, 8; nvfp4: 16, 4).

use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::error::{Error, Result};
use crate::primitives::{Primitive, QuantMode, QuantParams, QuantizedOp};
use crate::shape::broadcast_shapes;

fn params(tag: &str, mode: &str, group_size: Option<usize>, bits: Option<usize>) -> Result<QuantParams> {
    let m = QuantMode::parse(mode, tag)?;
    let (g, b) = m.defaults();
    let p = QuantParams { group_size: group_size.unwrap_or(g), bits: bits.unwrap_or(b), mode: m };
    m.check(p.group_size, p.bits, tag)?;
    Ok(p)
}

fn float_ok(tag: &str, what: &str, d: Dtype) -> Result<()> {
    if matches!(d, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        Ok(())
    } else {
        Err(Error::invalid(format!("[{tag}] Only float32, float16 and bfloat16 are supported but {what}.dtype() == {d}.")))
    }
}

/// Quantizes `w` (`[.., K]`, K divisible by the group size) along its last axis. Returns the
/// packed `uint32` weights `[.., K * bits / 32]`, the scales `[.., K / group_size]` (`w`'s
/// dtype for affine, `uint8` codes for the float modes) and the biases (affine only).
/// Bit-identical to `mx.quantize`.
#[track_caller]
pub fn quantize(w: &Array, group_size: Option<usize>, bits: Option<usize>, mode: &str) -> (Array, Array, Option<Array>) {
    let loc = std::panic::Location::caller();
    let built = (|| -> Result<(QuantParams, Vec<Array>)> {
        let p = params("quantize", mode, group_size, bits)?;
        float_ok("quantize", "w", w.dtype())?;
        if w.ndim() < 2 {
            return Err(Error::invalid(format!(
                "[quantize] The matrix to be quantized must have at least 2 dimension but it has only {}.",
                w.ndim()
            )));
        }
        if w.shape()[w.ndim() - 1] % p.group_size != 0 {
            return Err(Error::invalid(format!(
                "[quantize] The last dimension of the matrix needs to be divisible by the quantization group size {}. However the provided matrix has shape {:?}",
                p.group_size,
                w.shape()
            )));
        }
        let n = if p.mode.has_biases() { 3 } else { 2 };
        let outs = Array::from_op_multi(Primitive::Quantized(QuantizedOp::Quantize(p)), vec![w.clone()], n);
        Ok((p, outs))
    })();
    match built {
        Ok((p, outs)) => {
            let mut it = outs.into_iter();
            let wq = it.next().unwrap_or_else(|| Array::error(Error::runtime("internal: quantize lost an output")));
            let s = it.next().unwrap_or_else(|| Array::error(Error::runtime("internal: quantize lost an output")));
            let b = if p.mode.has_biases() { it.next() } else { None };
            (wq, s, b)
        }
        Err(e) => {
            let e = e.at(loc);
            let affine = mode == "affine";
            (Array::error(e.clone()), Array::error(e.clone()), affine.then(|| Array::error(e)))
        }
    }
}

/// Checks scales/biases against the mode and returns the affine compute dtype.
fn scales_dtype(tag: &str, p: &QuantParams, scales: &Array, biases: Option<&Array>) -> Result<Option<Dtype>> {
    if p.mode.has_biases() {
        let Some(b) = biases else { return Err(Error::invalid(format!("[{tag}] Biases must be provided for affine quantization."))) };
        let dt = promote_types(scales.dtype(), b.dtype());
        float_ok(tag, "scales", dt)?;
        Ok(Some(dt))
    } else {
        if scales.dtype() != Dtype::Uint8 {
            return Err(Error::invalid(format!("[{tag}] Scale type must be uint8 but received type {}.", scales.dtype())));
        }
        if biases.is_some() {
            return Err(Error::invalid(format!("[{tag}] Biases must be null for quantization mode '{}'.", p.mode.as_str())));
        }
        Ok(None)
    }
}

/// Inverse of [`quantize`]: `scale * q + bias` per group (affine, computed in the scales'
/// dtype as MLX does, then cast to `dtype` if given), or the float codes times the group scale
/// (result `dtype`, default bfloat16). Bit-identical to `mx.dequantize`.
#[track_caller]
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
    dtype: Option<Dtype>,
) -> Array {
    Array::build(|| {
        let p = params("dequantize", mode, group_size, bits)?;
        if let Some(d) = dtype {
            float_ok("dequantize", "dtype", d)?;
        }
        let sdt = scales_dtype("dequantize", &p, scales, biases)?;
        let bspec = biases.map(|b| (b.shape().to_vec(), sdt.unwrap_or(b.dtype())));
        crate::primitives::quantized::check_packed(
            "dequantize",
            &p,
            &(w.shape().to_vec(), w.dtype()),
            &(scales.shape().to_vec(), sdt.unwrap_or(scales.dtype())),
            bspec.as_ref(),
        )?;
        match sdt {
            Some(sd) => {
                let y = Array::from_op(
                    Primitive::Quantized(QuantizedOp::Dequantize { p, dtype: sd }),
                    vec![w.clone(), scales.astype(sd), biases.map(|b| b.astype(sd)).unwrap_or_else(|| scales.clone())],
                );
                Ok(match dtype {
                    Some(d) if d != sd => y.astype(d),
                    _ => y,
                })
            }
            None => Ok(Array::from_op(
                Primitive::Quantized(QuantizedOp::Dequantize { p, dtype: dtype.unwrap_or(Dtype::Bfloat16) }),
                vec![w.clone(), scales.clone()],
            )),
        }
    })
}

/// `quantized_matmul(fast::rms_norm(x, norm_weight, eps), w, scales, biases, transpose=true)`
/// (affine, 2-d `w`) as one node: a pre-norm layer's normalisation and its first product. On a
/// GPU one row of `x` (decoding) is normalised inside the mat-vec kernel, which holds the row in
/// registers anyway: one kernel less per norm. Elsewhere the two kernels run back to back, with
/// the two nodes' results.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_quantized_matmul(
    x: &Array,
    norm_weight: &Array,
    eps: f32,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: Option<usize>,
    bits: Option<usize>,
) -> Array {
    Array::build(|| {
        fused_product("rms_norm_quantized_matmul", [x, norm_weight], w, scales, biases, group_size, bits, |p| QuantizedOp::NormMatmul {
            p,
            eps,
        })
    })
}

/// `quantized_matmul(silu(gate) * up, w, scales, biases, transpose=true)` (affine, 2-d `w`) as
/// one node, the activation computed in float32 and rounded once to the dtype (as a compiled
/// SwiGLU): an MLP's activation and its down projection. On a GPU one row (decoding) gets its
/// activation inside the mat-vec kernel, one kernel less per MLP.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn swiglu_quantized_matmul(
    gate: &Array,
    up: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: Option<usize>,
    bits: Option<usize>,
) -> Array {
    Array::build(|| {
        fused_product("swiglu_quantized_matmul", [gate, up], w, scales, biases, group_size, bits, |p| QuantizedOp::SwigluMatmul { p })
    })
}

/// The node of a fused `f(x, y) @ deq(w).T` (affine, 2-d `w`): `x`, `y` and the scales promoted
/// to one float dtype, `x` at least 1-d; the op checks the rest.
#[allow(clippy::too_many_arguments)]
fn fused_product(
    name: &str,
    [x, y]: [&Array; 2],
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: Option<usize>,
    bits: Option<usize>,
    op: impl FnOnce(QuantParams) -> QuantizedOp,
) -> Result<Array> {
    let p = params(name, "affine", group_size, bits)?;
    let sdt = scales_dtype(name, &p, scales, Some(biases))?.unwrap_or(scales.dtype());
    let dt = promote_types(promote_types(x.dtype(), y.dtype()), sdt);
    float_ok(name, "x", dt)?;
    if x.ndim() == 0 || w.ndim() != 2 {
        return Err(Error::invalid(format!(
            "[{name}] x must have at least one axis and the quantized matrix two, got shapes {:?} and {:?}",
            x.shape(),
            w.shape()
        )));
    }
    let ins = vec![x.astype(dt), y.astype(dt), w.clone(), scales.astype(dt), biases.astype(dt)];
    Ok(Array::from_op(Primitive::Quantized(op(p)), ins))
}

/// Matrix product with a quantized matrix: `x @ dequantize(w).T` (`transpose`, MLX's default,
/// `w` is `[N, K]` unpacked) or `x @ dequantize(w)`. Affine promotes `x` with the scales'
/// dtype; the float modes keep `x`'s dtype. Batched `w` (`[.., N, K']`) broadcasts its batch
/// axes with `x`'s.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    transpose: bool,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
) -> Array {
    Array::build(|| {
        let p = params("quantized_matmul", mode, group_size, bits)?;
        let sdt = scales_dtype("quantized_matmul", &p, scales, biases)?;
        let dt = match sdt {
            Some(sd) => promote_types(x.dtype(), sd),
            None => x.dtype(),
        };
        float_ok("quantized_matmul", "x", dt)?;
        let bspec = biases.map(|b| (b.shape().to_vec(), sdt.unwrap_or(b.dtype())));
        crate::primitives::quantized::check_packed(
            "quantized_matmul",
            &p,
            &(w.shape().to_vec(), w.dtype()),
            &(scales.shape().to_vec(), sdt.unwrap_or(scales.dtype())),
            bspec.as_ref(),
        )?;
        if x.ndim() == 0 {
            return Err(Error::invalid("[quantized_matmul] x must have at least one dimension."));
        }
        let mut ins = vec![x.astype(dt), w.clone()];
        match sdt {
            Some(_) => {
                ins.push(scales.astype(dt));
                ins.push(biases.map(|b| b.astype(dt)).unwrap_or_else(|| scales.clone()));
            }
            None => ins.push(scales.clone()),
        }
        if w.ndim() > 2 {
            // Broadcast batch axes of x and of w/scales/biases together.
            let xb = if x.ndim() >= 2 { &x.shape()[..x.ndim() - 2] } else { &[][..] };
            let batch = broadcast_shapes(xb, &w.shape()[..w.ndim() - 2])?;
            let xm: Vec<usize> = if x.ndim() >= 2 { x.shape()[x.ndim() - 2..].to_vec() } else { vec![1, x.shape()[0]] };
            let xs = [batch.clone(), xm].concat();
            ins[0] = crate::ops::broadcast_to(
                &crate::ops::reshape_to(&ins[0], &[&vec![1; xs.len() - xb.len() - 2][..], xb, &xs[xs.len() - 2..]].concat()),
                &xs,
            );
            for a in ins.iter_mut().skip(1) {
                let s = a.shape();
                let t = [batch.clone(), s[s.len() - 2..].to_vec()].concat();
                if s != t {
                    *a = crate::ops::broadcast_to(a, &t);
                }
            }
        }
        Ok(Array::from_op(Primitive::Quantized(QuantizedOp::Matmul { p, transpose }), ins))
    })
}

/// The quantized `gather_mm` (mixture of experts): `out[i] = x[lhs[i]] @ dequantize(w[rhs[i]])(.T)`
/// with flat indices into the batch axes of `x` and `w` (default: all, in order), broadcast
/// together; result shape `indices.shape + [M, N]`. Without indices it is
/// [`quantized_matmul`]. `sorted_indices` is a hint; the result does not depend on it.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn gather_qmm(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    lhs_indices: Option<&Array>,
    rhs_indices: Option<&Array>,
    transpose: bool,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
    sorted_indices: bool,
) -> Array {
    let _ = sorted_indices;
    if lhs_indices.is_none() && rhs_indices.is_none() {
        return quantized_matmul(x, w, scales, biases, transpose, group_size, bits, mode);
    }
    Array::build(|| {
        let p = params("gather_qmm", mode, group_size, bits)?;
        let sdt = scales_dtype("gather_qmm", &p, scales, biases)?;
        let dt = match sdt {
            Some(sd) => promote_types(x.dtype(), sd),
            None => x.dtype(),
        };
        float_ok("gather_qmm", "x", dt)?;
        let bspec = biases.map(|b| (b.shape().to_vec(), sdt.unwrap_or(b.dtype())));
        crate::primitives::quantized::check_packed(
            "gather_qmm",
            &p,
            &(w.shape().to_vec(), w.dtype()),
            &(scales.shape().to_vec(), sdt.unwrap_or(scales.dtype())),
            bspec.as_ref(),
        )?;
        if x.ndim() < 2 || w.ndim() < 2 {
            return Err(Error::invalid(format!("[gather_qmm] x and w must have at least 2 axes, got {:?} and {:?}", x.shape(), w.shape())));
        }
        let flat3 = |a: &Array| -> Array {
            let s = a.shape();
            let n: usize = s[..s.len() - 2].iter().product();
            crate::ops::reshape_to(a, &[n, s[s.len() - 2], s[s.len() - 1]])
        };
        let idx = |given: Option<&Array>, a: &Array, name: &str| -> Result<Array> {
            match given {
                Some(i) if !i.dtype().is_integer() => {
                    Err(Error::invalid(format!("[gather_qmm] {name} must be integers, got {}.", i.dtype())))
                }
                Some(i) => Ok(i.astype(Dtype::Uint32)),
                None => {
                    let b = &a.shape()[..a.ndim() - 2];
                    Ok(crate::ops::reshape_to(&crate::ops::arange_n(b.iter().product(), Some(Dtype::Uint32)), b))
                }
            }
        };
        let (li, ri) = (idx(lhs_indices, x, "lhs_indices")?, idx(rhs_indices, w, "rhs_indices")?);
        let shape = broadcast_shapes(li.shape(), ri.shape())?;
        let mut ins = vec![flat3(&x.astype(dt)), flat3(w)];
        match sdt {
            Some(_) => {
                ins.push(flat3(&scales.astype(dt)));
                ins.push(flat3(&biases.map(|b| b.astype(dt)).unwrap_or_else(|| scales.clone())));
            }
            None => ins.push(flat3(scales)),
        }
        ins.push(crate::ops::broadcast_to(&li, &shape));
        ins.push(crate::ops::broadcast_to(&ri, &shape));
        Ok(Array::from_op(Primitive::Quantized(QuantizedOp::GatherMatmul { p, transpose }), ins))
    })
}
