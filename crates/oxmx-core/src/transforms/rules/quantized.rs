//! Derivatives of the quantized family. As in MLX, a quantized matmul is differentiable in `x`
//! only: `y = x @ Wᵀ` gives `dx = g @ W`, the same primitive with `transpose` flipped. The
//! packed weights (and their scales/biases) are constants; asking for their cotangent is an
//! error rather than a silent zero. Quantize/dequantize are not differentiable.

use crate::array::Array;
use crate::error::{Error, Result};
use crate::primitives::{Primitive, QuantizedOp};

pub(super) fn vjp(op: &QuantizedOp, inputs: &[Array], cots: &[Option<Array>], argnums: &[usize]) -> Result<Vec<Array>> {
    let g = || -> Result<Array> {
        cots.first().cloned().flatten().ok_or_else(|| Error::runtime("internal: [vjp] quantized matmul called without a cotangent"))
    };
    let no = |what: &str| {
        Error::invalid(format!("[{}] no gradient with respect to {what}: quantized weights are not differentiable", op.name()))
    };
    argnums
        .iter()
        .map(|&i| match op {
            QuantizedOp::Matmul { p, transpose } if i == 0 => {
                let mut ins = inputs.to_vec();
                ins[0] = g()?;
                let dx = Array::from_op(Primitive::Quantized(QuantizedOp::Matmul { p: *p, transpose: !transpose }), ins);
                dx.check()?;
                Ok(dx)
            }
            QuantizedOp::GatherMatmul { p, transpose } if i == 0 => {
                // out[i] = x[lhs[i]] @ W[rhs[i]]: scatter-add g[i] @ W[rhs[i]]ᵀ back to x[lhs[i]].
                let nb = usize::from(p.mode.has_biases());
                let (lhs, rhs) = (&inputs[3 + nb], &inputs[4 + nb]);
                let gg = g()?;
                let n = lhs.size();
                let (m, k) = (inputs[0].shape()[1], inputs[0].shape()[2]);
                let gf = crate::ops::reshape_to(&gg, &[n, m, gg.shape()[gg.ndim() - 1]]);
                let mut ins = inputs.to_vec();
                ins[0] = gf;
                ins[3 + nb] = crate::ops::arange_n(n, Some(crate::dtype::Dtype::Uint32));
                ins[4 + nb] = crate::ops::reshape_to(rhs, &[n]);
                let per = Array::from_op(Primitive::Quantized(QuantizedOp::GatherMatmul { p: *p, transpose: !transpose }), ins);
                let zeros = crate::ops::zeros_like(&inputs[0]);
                let idx = crate::ops::reshape_to(lhs, &[n]);
                let dx = crate::ops::scatter_add(&zeros, &[idx], &crate::ops::reshape_to(&per, &[n, 1, m, k]), &[0]);
                dx.check()?;
                Ok(dx)
            }
            QuantizedOp::NormMatmul { p, eps } if i < 2 => {
                // Through the two-node composition, in x and the norm weight.
                let (p, eps, rest) = (*p, *eps, inputs[2..].to_vec());
                let f = move |xs: Vec<Array>| {
                    let n = crate::ops::fast::rms_norm(&xs[0], Some(&xs[1]), eps);
                    let ins = [vec![n], rest.clone()].concat();
                    Array::from_op(Primitive::Quantized(QuantizedOp::Matmul { p, transpose: true }), ins)
                };
                let (_, grads) = crate::transforms::vjp(f, &inputs[..2].to_vec(), &g()?)?;
                Ok(grads[i].clone())
            }
            QuantizedOp::SwigluMatmul { p } if i < 2 => {
                // Through the composition, in gate and up.
                let (p, rest) = (*p, inputs[2..].to_vec());
                let f = move |xs: Vec<Array>| {
                    let h = crate::ops::multiply(&crate::ops::multiply(&xs[0], &crate::ops::sigmoid(&xs[0])), &xs[1]);
                    let ins = [vec![h], rest.clone()].concat();
                    Array::from_op(Primitive::Quantized(QuantizedOp::Matmul { p, transpose: true }), ins)
                };
                let (_, grads) = crate::transforms::vjp(f, &inputs[..2].to_vec(), &g()?)?;
                Ok(grads[i].clone())
            }
            QuantizedOp::Matmul { .. }
            | QuantizedOp::GatherMatmul { .. }
            | QuantizedOp::NormMatmul { .. }
            | QuantizedOp::SwigluMatmul { .. } => Err(no("the packed weights, scales or biases")),
            QuantizedOp::Quantize(_) | QuantizedOp::Dequantize { .. } => Err(no("its inputs")),
        })
        .collect()
}
