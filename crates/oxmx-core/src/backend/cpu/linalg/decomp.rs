//! QR, SVD, pseudo-inverse and eigendecompositions. SVD and eigen come from faer; QR is a short
//! Householder loop of our own so its signs follow LAPACK's geqrf (what MLX returns): each
//! reflector maps the column onto `-sign(a_kk) * |x|`, so `R`'s diagonal has the opposite sign of
//! the pivot it replaced.

use super::{flat, Flat};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use faer::{Mat, Side};

/// Reduced QR: `Q` `m x k` with orthonormal columns, `R` `k x n` upper trapezoidal.
pub fn qr(a: &Mat<f64>) -> Vec<Flat> {
    let (m, n) = (a.nrows(), a.ncols());
    let k = m.min(n);
    let mut r = a.clone();
    // Householder vectors v (v[0] = 1 implicit in LAPACK; stored whole here) and their taus.
    let mut refl: Vec<(Vec<f64>, f64)> = Vec::with_capacity(k);
    for j in 0..k {
        let alpha = r[(j, j)];
        let xnorm = (j + 1..m).map(|i| r[(i, j)] * r[(i, j)]).sum::<f64>().sqrt();
        if xnorm == 0.0 {
            // Already reduced: LAPACK uses H = I (tau = 0) and keeps alpha's sign.
            refl.push((vec![0.0; m - j], 0.0));
            continue;
        }
        let beta = -alpha.signum() * alpha.hypot(xnorm);
        let tau = (beta - alpha) / beta;
        let scale = 1.0 / (alpha - beta);
        let mut v = vec![1.0; m - j];
        for i in j + 1..m {
            v[i - j] = r[(i, j)] * scale;
        }
        // Apply H = I - tau v v^T to the trailing columns.
        for c in j..n {
            let dot: f64 = (j..m).map(|i| v[i - j] * r[(i, c)]).sum();
            for i in j..m {
                r[(i, c)] -= tau * v[i - j] * dot;
            }
        }
        refl.push((v, tau));
    }
    // Q = H_0 H_1 ... H_{k-1} applied to the first k columns of the identity.
    let mut q = Mat::<f64>::identity(m, k);
    for (j, (v, tau)) in refl.iter().enumerate().rev() {
        if *tau == 0.0 {
            continue;
        }
        for c in 0..k {
            let dot: f64 = (j..m).map(|i| v[i - j] * q[(i, c)]).sum();
            for i in j..m {
                q[(i, c)] -= tau * v[i - j] * dot;
            }
        }
    }
    let rr = Mat::from_fn(k, n, |i, j| if j >= i { r[(i, j)] } else { 0.0 });
    vec![flat(&q), flat(&rr)]
}

fn failed(op: &str, e: impl std::fmt::Debug) -> Error {
    Error::runtime(format!("[linalg::{op}] the decomposition did not converge ({e:?})."))
}

/// Full SVD `(U, S, Vt)` (`U` `m x m`, `Vt` `n x n`, `S` descending) or only `S`.
pub fn svd(a: &Mat<f64>, compute_uv: bool) -> Result<Vec<Flat>> {
    if !compute_uv {
        return Ok(vec![a.singular_values().map_err(|e| failed("svd", e))?]);
    }
    let s = a.svd().map_err(|e| failed("svd", e))?;
    let vals: Flat = (0..a.nrows().min(a.ncols())).map(|i| s.S().column_vector()[i]).collect();
    Ok(vec![flat(&s.U().to_owned()), vals, flat(&s.V().transpose().to_owned())])
}

/// Pseudo-inverse: `V diag(1/s) U^T`, dropping singular values at or below
/// `max(m, n) * eps * s_max` (eps of the input dtype, so float32 rank deficiency is seen).
pub fn pinv(a: &Mat<f64>, dt: Dtype) -> Result<Vec<Flat>> {
    let (m, n) = (a.nrows(), a.ncols());
    if m == 0 || n == 0 {
        return Ok(vec![vec![0.0; m * n]]);
    }
    let s = a.thin_svd().map_err(|e| failed("pinv", e))?;
    let (u, v) = (s.U(), s.V());
    let sv: Vec<f64> = (0..m.min(n)).map(|i| s.S().column_vector()[i]).collect();
    let eps = if dt == Dtype::Float32 { f32::EPSILON as f64 } else { f64::EPSILON };
    let cutoff = m.max(n) as f64 * eps * sv.iter().cloned().fold(0.0, f64::max);
    let inv: Vec<f64> = sv.iter().map(|&x| if x > cutoff { 1.0 / x } else { 0.0 }).collect();
    let p = Mat::from_fn(n, m, |i, j| (0..inv.len()).map(|k| v[(i, k)] * inv[k] * u[(j, k)]).sum());
    Ok(vec![flat(&p)])
}

/// Symmetric eigendecomposition: values ascending, vectors as columns.
pub fn eigh(a: &Mat<f64>, upper: bool, vectors: bool) -> Result<Vec<Flat>> {
    let side = if upper { Side::Upper } else { Side::Lower };
    if !vectors {
        return Ok(vec![a.self_adjoint_eigenvalues(side).map_err(|e| failed("eigvalsh", e))?]);
    }
    let e = a.self_adjoint_eigen(side).map_err(|e| failed("eigh", e))?;
    let vals: Flat = (0..a.nrows()).map(|i| e.S().column_vector()[i]).collect();
    Ok(vec![vals, flat(&e.U().to_owned())])
}

/// General eigendecomposition as complex (re, im) pairs; vectors as columns, unit 2-norm.
pub fn eig(a: &Mat<f64>, vectors: bool) -> Result<Vec<Flat>> {
    if !vectors {
        let vals = a.eigenvalues().map_err(|e| failed("eigvals", e))?;
        return Ok(vec![vals.iter().flat_map(|z| [z.re, z.im]).collect()]);
    }
    let e = a.eigen().map_err(|e| failed("eig", e))?;
    let n = a.nrows();
    let vals: Flat = (0..n)
        .flat_map(|i| {
            let z = e.S().column_vector()[i];
            [z.re, z.im]
        })
        .collect();
    let u = e.U();
    // LAPACK's (and so MLX's) convention, which faer does not apply: every eigenvector has unit
    // Euclidean norm and its largest component real and positive.
    let mut scale = Vec::with_capacity(n);
    for j in 0..n {
        let col: Vec<_> = (0..n).map(|i| u[(i, j)]).collect();
        let norm = col.iter().map(|z| z.re * z.re + z.im * z.im).sum::<f64>().sqrt();
        let big = col.iter().copied().max_by(|a, b| (a.re * a.re + a.im * a.im).total_cmp(&(b.re * b.re + b.im * b.im)));
        let (pr, pi) = match big {
            Some(z) if norm > 0.0 => {
                let m = (z.re * z.re + z.im * z.im).sqrt();
                // Multiply by conj(z) / |z| / norm.
                (z.re / m / norm, -z.im / m / norm)
            }
            _ => (1.0, 0.0),
        };
        scale.push((pr, pi));
    }
    let mut vecs = Vec::with_capacity(2 * n * n);
    for i in 0..n {
        for (j, &(pr, pi)) in scale.iter().enumerate() {
            let z = u[(i, j)];
            vecs.push(z.re * pr - z.im * pi);
            vecs.push(z.re * pi + z.im * pr);
        }
    }
    Ok(vec![vals, vecs])
}
