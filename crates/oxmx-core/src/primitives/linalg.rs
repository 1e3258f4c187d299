//! The linalg family: batched dense decompositions and solves over the last two axes
//! (mx.linalg). `norm`, `cross` and friends are compositions in the op layer and have no
//! primitive. Validation (and MLX's error messages) lives here so every path checks it once.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum LinalgOp {
    /// Inverse of a general square matrix (LU with partial pivoting; exact zero pivot errors).
    Inv,
    /// Inverse of the `upper`/lower triangle of a square matrix.
    TriInv { upper: bool },
    /// Cholesky factor of a symmetric positive-definite matrix, read from the `upper`/lower triangle.
    Cholesky { upper: bool },
    /// Inverse of `L @ L.T` (or `U.T @ U`) given the Cholesky factor.
    CholeskyInv { upper: bool },
    /// Moore–Penrose pseudo-inverse through the SVD.
    Pinv,
    /// Reduced QR: `Q` `[.., m, k]`, `R` `[.., k, n]` with `k = min(m, n)`.
    Qr,
    /// Full SVD (`U`, `S`, `Vt`) or only the singular values.
    Svd { compute_uv: bool },
    /// Symmetric eigendecomposition (values ascending) reading the `upper`/lower triangle.
    Eigh { upper: bool, vectors: bool },
    /// General eigendecomposition; complex64 outputs.
    Eig { vectors: bool },
    /// `(perm, L, U)` with `a = (L @ U)[perm]`; `perm` is uint32.
    Lu,
    /// LAPACK's packed form: `(LU, pivots)`, pivots 0-based uint32 row swaps.
    LuFactor,
    /// `a @ x = b`, `b` `[.., n, r]` with `a`'s batch shape and dtype (the op layer broadcasts).
    Solve,
    /// `a @ x = b` with `a` triangular.
    SolveTriangular { upper: bool },
}

impl LinalgOp {
    /// MLX's public name, used in error messages.
    pub fn api_name(&self) -> &'static str {
        match self {
            LinalgOp::Inv | LinalgOp::TriInv { .. } => "inv",
            LinalgOp::Cholesky { .. } => "cholesky",
            LinalgOp::CholeskyInv { .. } => "cholesky_inv",
            LinalgOp::Pinv => "pinv",
            LinalgOp::Qr => "qr",
            LinalgOp::Svd { .. } => "svd",
            LinalgOp::Eigh { vectors: true, .. } => "eigh",
            LinalgOp::Eigh { vectors: false, .. } => "eigvalsh",
            LinalgOp::Eig { vectors: true } => "eig",
            LinalgOp::Eig { vectors: false } => "eigvals",
            LinalgOp::Lu => "lu",
            LinalgOp::LuFactor => "lu_factor",
            LinalgOp::Solve => "solve",
            LinalgOp::SolveTriangular { .. } => "solve_triangular",
        }
    }

    pub fn name(&self) -> String {
        format!("{self:?}")
    }

    /// The message MLX gives for a non-square input, `None` where non-square is allowed.
    fn square_message(&self) -> Option<&'static str> {
        match self {
            LinalgOp::Inv | LinalgOp::TriInv { .. } => Some("Inverses are only defined for square matrices."),
            LinalgOp::Cholesky { .. } => Some("Cholesky decomposition is only defined for square matrices."),
            LinalgOp::CholeskyInv { .. } => Some("Cholesky inverse is only defined for square matrices."),
            LinalgOp::Eigh { .. } | LinalgOp::Eig { .. } => Some("Only defined for square matrices."),
            LinalgOp::Solve | LinalgOp::SolveTriangular { .. } => Some("First input must be a square matrix."),
            LinalgOp::Pinv | LinalgOp::Qr | LinalgOp::Svd { .. } | LinalgOp::Lu | LinalgOp::LuFactor => None,
        }
    }

    fn check_matrix(&self, (shape, dtype): &Spec) -> Result<()> {
        let name = self.api_name();
        if !matches!(dtype, Dtype::Float32 | Dtype::Float64) {
            // MLX accepts complex64 for svd/eig/eigh; oxmx's kernels are real-only so far.
            let allowed = match self {
                LinalgOp::Svd { .. } | LinalgOp::Eig { .. } | LinalgOp::Eigh { .. } => "float32, float64 or complex64",
                _ => "float32 or float64",
            };
            if *dtype == Dtype::Complex64 && allowed.contains("complex64") {
                return Err(Error::invalid(format!("[linalg::{name}] complex64 input is not supported yet (float32 or float64 only).")));
            }
            return Err(Error::invalid(format!("[linalg::{name}] Arrays must have type {allowed}. Received array with type {dtype}.")));
        }
        if shape.len() < 2 {
            return Err(Error::invalid(format!(
                "[linalg::{name}] Arrays must have >= 2 dimensions. Received array with {} dimensions.",
                shape.len()
            )));
        }
        let nd = shape.len();
        if let Some(msg) = self.square_message() {
            if shape[nd - 1] != shape[nd - 2] {
                return Err(Error::invalid(format!("[linalg::{name}] {msg} Received array with shape {shape:?}.")));
            }
        }
        Ok(())
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        let two = matches!(self, LinalgOp::Solve | LinalgOp::SolveTriangular { .. });
        super::expect_inputs(&self.name(), inputs, if two { 2 } else { 1 })?;
        self.check_matrix(&inputs[0])?;
        let (shape, dt) = (&inputs[0].0, inputs[0].1);
        let nd = shape.len();
        let (m, n) = (shape[nd - 2], shape[nd - 1]);
        let k = m.min(n);
        let batch = &shape[..nd - 2];
        let with = |tail: &[usize]| -> Vec<usize> { batch.iter().chain(tail).copied().collect() };
        Ok(match self {
            LinalgOp::Inv | LinalgOp::TriInv { .. } | LinalgOp::Cholesky { .. } | LinalgOp::CholeskyInv { .. } => vec![(shape.clone(), dt)],
            LinalgOp::Pinv => vec![(with(&[n, m]), dt)],
            LinalgOp::Qr => vec![(with(&[m, k]), dt), (with(&[k, n]), dt)],
            LinalgOp::Svd { compute_uv: true } => vec![(with(&[m, m]), dt), (with(&[k]), dt), (with(&[n, n]), dt)],
            LinalgOp::Svd { compute_uv: false } => vec![(with(&[k]), dt)],
            LinalgOp::Eigh { vectors, .. } => {
                let mut v = vec![(with(&[n]), dt)];
                if *vectors {
                    v.push((shape.clone(), dt));
                }
                v
            }
            LinalgOp::Eig { vectors } => {
                let mut v = vec![(with(&[n]), Dtype::Complex64)];
                if *vectors {
                    v.push((shape.clone(), Dtype::Complex64));
                }
                v
            }
            LinalgOp::Lu => vec![(with(&[m]), Dtype::Uint32), (with(&[m, k]), dt), (with(&[k, n]), dt)],
            LinalgOp::LuFactor => vec![(shape.clone(), dt), (with(&[k]), Dtype::Uint32)],
            LinalgOp::Solve | LinalgOp::SolveTriangular { .. } => {
                let (bs, bd) = &inputs[1];
                if bs.len() != nd || bs[..nd - 2] != *batch || bs[nd - 2] != n || *bd != dt {
                    return Err(Error::invalid(format!(
                        "[linalg::{}] expected a right-hand side [.., {n}, r] of dtype {dt} matching {shape:?}, got {bs:?} {bd}.",
                        self.api_name()
                    )));
                }
                vec![(bs.clone(), dt)]
            }
        })
    }
}
