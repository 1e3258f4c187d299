//! `linalg` namespace (mx.linalg): decompositions and solves over the last two axes, batched over
//! the leading ones (see primitives/linalg.rs for shapes and validation), plus `norm` and `cross`
//! composed from existing ops.

mod cross;
mod norm;

pub use cross::cross;
pub use norm::{norm, NormOrd};

use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::error::{Error, Result};
use crate::primitives::{LinalgOp, Primitive};
use crate::shape::broadcast_shapes;

/// Builds a multi-output node. Like `Array::build`, errors raised inside oxmx are attributed to
/// the caller of the public op; every output carries the error.
#[track_caller]
fn build_multi(n: usize, f: impl FnOnce() -> Result<Vec<Array>>) -> Vec<Array> {
    let mut out = Vec::with_capacity(n);
    match f() {
        Ok(v) => {
            for a in v {
                out.push(Array::build(|| Ok(a)));
            }
        }
        Err(e) => {
            for _ in 0..n {
                out.push(Array::build(|| Err(e.clone())));
            }
        }
    }
    out
}

#[track_caller]
fn multi(op: LinalgOp, a: &Array, n: usize) -> Vec<Array> {
    build_multi(n, || Ok(Array::from_op_multi(Primitive::Linalg(op), vec![a.clone()], n)))
}

fn missing() -> Array {
    Array::error(Error::runtime("internal: a linalg op returned too few outputs"))
}

fn three(v: Vec<Array>) -> (Array, Array, Array) {
    let mut it = v.into_iter();
    (it.next().unwrap_or_else(missing), it.next().unwrap_or_else(missing), it.next().unwrap_or_else(missing))
}

fn two(v: Vec<Array>) -> (Array, Array) {
    let mut it = v.into_iter();
    (it.next().unwrap_or_else(missing), it.next().unwrap_or_else(missing))
}

/// The inverse of a square matrix. An exactly singular matrix is an error at evaluation.
#[track_caller]
pub fn inv(a: &Array) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::Inv), vec![a.clone()])))
}

/// The inverse of the lower (or `upper`) triangle of a square matrix; the other triangle is ignored.
#[track_caller]
pub fn tri_inv(a: &Array, upper: bool) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::TriInv { upper }), vec![a.clone()])))
}

/// The Moore–Penrose pseudo-inverse (`[.., m, n]` → `[.., n, m]`).
#[track_caller]
pub fn pinv(a: &Array) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::Pinv), vec![a.clone()])))
}

/// The Cholesky factor of a symmetric positive-definite matrix: lower `L` with `a = L @ L.T`
/// read from the lower triangle, or (`upper`) `U` with `a = U.T @ U` read from the upper one.
/// Like MLX, a matrix that is not positive definite is not an error (the result holds NaN).
#[track_caller]
pub fn cholesky(a: &Array, upper: bool) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::Cholesky { upper }), vec![a.clone()])))
}

/// The inverse of `L @ L.T` (or `U.T @ U` when `upper`) given the Cholesky factor.
#[track_caller]
pub fn cholesky_inv(l: &Array, upper: bool) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::CholeskyInv { upper }), vec![l.clone()])))
}

/// Reduced QR: `(Q, R)` with `Q` `[.., m, k]`, `R` `[.., k, n]`, `k = min(m, n)`. Signs follow
/// LAPACK (what MLX returns).
#[track_caller]
pub fn qr(a: &Array) -> (Array, Array) {
    two(multi(LinalgOp::Qr, a, 2))
}

/// Full SVD `(U, S, Vt)` with `a = U[.., :, :k] @ diag(S) @ Vt[.., :k, :]`, `S` descending
/// (MLX's `svd(a)`).
#[track_caller]
pub fn svd(a: &Array) -> (Array, Array, Array) {
    three(multi(LinalgOp::Svd { compute_uv: true }, a, 3))
}

/// Only the singular values, descending (MLX's `svd(a, compute_uv=False)`).
#[track_caller]
pub fn svd_values(a: &Array) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::Svd { compute_uv: false }), vec![a.clone()])))
}

fn uplo_upper(uplo: &str, name: &str) -> Result<bool> {
    match uplo {
        "L" => Ok(false),
        "U" => Ok(true),
        // MLX silently treats anything but "L" as "U"; a typo is more likely than intent.
        _ => Err(Error::invalid(format!("[linalg::{name}] UPLO must be 'L' or 'U', got '{uplo}'."))),
    }
}

/// Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix read from the
/// `uplo` ("L" or "U") triangle.
#[track_caller]
pub fn eigh(a: &Array, uplo: &str) -> (Array, Array) {
    two(build_multi(2, || {
        let upper = uplo_upper(uplo, "eigh")?;
        Ok(Array::from_op_multi(Primitive::Linalg(LinalgOp::Eigh { upper, vectors: true }), vec![a.clone()], 2))
    }))
}

/// Eigenvalues (ascending) of a symmetric matrix read from the `uplo` triangle.
#[track_caller]
pub fn eigvalsh(a: &Array, uplo: &str) -> Array {
    Array::build(|| {
        let upper = uplo_upper(uplo, "eigvalsh")?;
        Ok(Array::from_op(Primitive::Linalg(LinalgOp::Eigh { upper, vectors: false }), vec![a.clone()]))
    })
}

/// Eigenvalues and eigenvectors (columns, unit norm) of a general square matrix, as complex64.
/// Their order is unspecified, as in MLX.
#[track_caller]
pub fn eig(a: &Array) -> (Array, Array) {
    two(multi(LinalgOp::Eig { vectors: true }, a, 2))
}

/// Eigenvalues of a general square matrix, as complex64.
#[track_caller]
pub fn eigvals(a: &Array) -> Array {
    Array::build(|| Ok(Array::from_op(Primitive::Linalg(LinalgOp::Eig { vectors: false }), vec![a.clone()])))
}

/// LU with partial pivoting: `(perm, L, U)` with `a = (L @ U)[perm]`, i.e. `a = P @ L @ U` where
/// `P[i, perm[i]] = 1` (MLX's convention); `perm` is uint32 `[.., m]`, `L` `[.., m, k]` unit
/// lower, `U` `[.., k, n]` upper.
#[track_caller]
pub fn lu(a: &Array) -> (Array, Array, Array) {
    three(multi(LinalgOp::Lu, a, 3))
}

/// LAPACK's packed LU: `(LU, pivots)`, `pivots[j]` (uint32, 0-based) the row swapped with row `j`.
#[track_caller]
pub fn lu_factor(a: &Array) -> (Array, Array) {
    two(multi(LinalgOp::LuFactor, a, 2))
}

/// Shared front of `solve`/`solve_triangular`: promotion, shape checks, batch broadcasting, and
/// a vector right-hand side (1-d `b`) treated as one column.
fn solve_like(a: &Array, b: &Array, op: LinalgOp) -> Result<Array> {
    let name = op.api_name();
    let dt = promote_types(a.dtype(), b.dtype());
    if !matches!(dt, Dtype::Float32 | Dtype::Float64) {
        crate::bail!(
            "[linalg::{name}] Input arrays must promote to float32 or float64. Received arrays with type {} and {}.",
            a.dtype(),
            b.dtype()
        );
    }
    if a.ndim() < 2 {
        crate::bail!("[linalg::{name}] First input must have >= 2 dimensions. Received array with {} dimensions.", a.ndim());
    }
    let nd = a.ndim();
    let (m, n) = (a.shape()[nd - 2], a.shape()[nd - 1]);
    if m != n {
        crate::bail!("[linalg::{name}] First input must be a square matrix. Received array with shape {:?}.", a.shape());
    }
    if b.ndim() == 0 {
        crate::bail!("[linalg::{name}] Second input must have >= 1 dimensions.");
    }
    // Only a 1-d `b` is a vector (NumPy 2's rule); it broadcasts over `a`'s batch.
    let vector = b.ndim() == 1;
    let bm = if vector { super::expand_dims(b, &[-1]) } else { b.clone() };
    let bnd = bm.ndim();
    if bm.shape()[bnd - 2] != n {
        crate::bail!(
            "[linalg::{name}] Last dimension of first input with shape {:?} must match second to last dimension of second input with shape {:?}.",
            a.shape(),
            b.shape()
        );
    }
    let batch = broadcast_shapes(&a.shape()[..nd - 2], &bm.shape()[..bnd - 2])?;
    let at: Vec<usize> = batch.iter().chain(&a.shape()[nd - 2..]).copied().collect();
    let bt: Vec<usize> = batch.iter().chain(&bm.shape()[bnd - 2..]).copied().collect();
    let x = super::broadcast_to(&a.astype(dt), &at);
    let y = super::broadcast_to(&bm.astype(dt), &bt);
    let out = Array::from_op(Primitive::Linalg(op), vec![x, y]);
    Ok(if vector { super::squeeze(&out, &[-1]) } else { out })
}

/// Solves `a @ x = b` for square `a` (LU with partial pivoting). `b` is `[.., n, r]` or a
/// vector `[n]`; batch axes broadcast. An exactly singular `a` is an error at evaluation.
#[track_caller]
pub fn solve(a: &Array, b: &Array) -> Array {
    Array::build(|| solve_like(a, b, LinalgOp::Solve))
}

/// Solves `a @ x = b` using only the lower (or `upper`) triangle of `a`.
#[track_caller]
pub fn solve_triangular(a: &Array, b: &Array, upper: bool) -> Array {
    Array::build(|| solve_like(a, b, LinalgOp::SolveTriangular { upper }))
}
