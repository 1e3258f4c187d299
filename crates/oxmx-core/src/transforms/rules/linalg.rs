//! Derivatives of the linalg family (batched over leading axes). Factorisations that read one
//! triangle of a symmetric input return the symmetrised cotangent, as PyTorch and MLX do.

use crate::array::Array;
use crate::error::{Error, Result};
use crate::ops as o;
use crate::primitives::{LinalgOp, Primitive};

fn t(a: &Array) -> Array {
    o::swapaxes(a, -1, -2)
}

fn triangle(a: &Array, upper: bool) -> Array {
    if upper {
        o::triu(a, 0)
    } else {
        o::tril(a, 0)
    }
}

fn sym(a: &Array) -> Array {
    (a + t(a)) * 0.5
}

pub(super) fn vjp(
    op: &LinalgOp,
    inputs: &[Array],
    outputs: &[Option<Array>],
    cots: &[Option<Array>],
    argnums: &[usize],
) -> Result<Vec<Array>> {
    let a = &inputs[0];
    let cot = |k: usize| cots.get(k).cloned().flatten();
    let out = |k: usize| outputs.get(k).cloned().flatten();
    let missing = || Error::invalid(format!("[vjp] the derivative of {} is not implemented", Primitive::Linalg(op.clone()).name()));
    let g0 = cot(0);
    let res: Vec<Array> = match op {
        LinalgOp::Inv | LinalgOp::TriInv { .. } => {
            let (y, g) = (out(0).ok_or_else(missing)?, g0.ok_or_else(missing)?);
            let d = o::negative(&o::matmul(&o::matmul(&t(&y), &g), &t(&y)));
            vec![match op {
                LinalgOp::TriInv { upper } => triangle(&d, *upper),
                _ => d,
            }]
        }
        LinalgOp::Solve | LinalgOp::SolveTriangular { .. } => {
            let (x, g) = (out(0).ok_or_else(missing)?, g0.ok_or_else(missing)?);
            let db = match op {
                LinalgOp::SolveTriangular { upper } => o::linalg::solve_triangular(&t(a), &g, !upper),
                _ => o::linalg::solve(&t(a), &g),
            };
            let da = o::negative(&o::matmul(&db, &t(&x)));
            argnums
                .iter()
                .map(|&i| match (i, op) {
                    (0, LinalgOp::SolveTriangular { upper }) => triangle(&da, *upper),
                    (0, _) => da.clone(),
                    _ => db.clone(),
                })
                .collect()
        }
        LinalgOp::Cholesky { upper } => {
            let (f, g) = (out(0).ok_or_else(missing)?, g0.ok_or_else(missing)?);
            let (l, gl) = if *upper { (t(&f), t(&g)) } else { (f, g) };
            // Φ(Lᵀ Ḡ): lower triangle with the diagonal halved; Ā = L⁻ᵀ Φ L⁻¹, symmetrised.
            let s = o::matmul(&t(&l), &gl);
            let phi = o::tril(&s, -1) + o::tril(&s, 0) * 0.5 - o::tril(&s, -1) * 0.5;
            let x = o::linalg::solve_triangular(&t(&l), &phi, true);
            let abar = t(&o::linalg::solve_triangular(&t(&l), &t(&x), true));
            vec![sym(&abar)]
        }
        LinalgOp::Eigh { upper, vectors } => {
            let uplo = if *upper { "U" } else { "L" };
            let (w, v) = match (out(0), out(1)) {
                (Some(w), Some(v)) if *vectors => (w, v),
                _ => o::linalg::eigh(a, uplo),
            };
            // Ā = V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ with F_ij = 1 / (w_j − w_i) off the diagonal.
            let mut inner = match cot(0) {
                Some(gw) => o::multiply(&o::expand_dims(&gw, &[-2]), &o::eye(a.shape()[a.ndim() - 1], None, 0, a.dtype())),
                None => o::zeros_like(a),
            };
            if *vectors {
                if let Some(gv) = cot(1) {
                    let diff = o::expand_dims(&w, &[-2]) - o::expand_dims(&w, &[-1]);
                    let eye = o::eye(a.shape()[a.ndim() - 1], None, 0, crate::Dtype::Bool);
                    let f = o::where_(&eye, 0.0, o::reciprocal(&o::where_(&eye, 1.0, &diff)));
                    inner = inner + f * o::matmul(&t(&v), &gv);
                }
            }
            vec![sym(&o::matmul(&o::matmul(&v, &inner), &t(&v)))]
        }
        _ => return Err(missing()),
    };
    if res.len() == argnums.len() {
        Ok(res)
    } else {
        Ok(argnums.iter().map(|&i| if i == 0 { res[0].clone() } else { o::zeros_like(&inputs[i]) }).collect())
    }
}
