//! LU, Cholesky and triangular kernels written out, following LAPACK's conventions that MLX
//! exposes: getrf's pivot choice (first largest magnitude) and 0-based swap list, potrf reading
//! one triangle only, and an exact zero pivot meaning "singular".

use super::{flat, Flat};
use crate::error::{Error, Result};
use faer::Mat;

/// Packed LU of an `m x n` matrix with partial pivoting, as LAPACK's getrf: `L` (unit, below
/// the diagonal) and `U` share the matrix, `piv[j]` is the row swapped with row `j` at step `j`.
/// `zero` is the first column whose pivot was exactly zero (the factorization still completes).
struct Lu {
    lu: Mat<f64>,
    piv: Vec<usize>,
    zero: Option<usize>,
}

fn getrf(a: &Mat<f64>) -> Lu {
    let (m, n) = (a.nrows(), a.ncols());
    let mut lu = a.clone();
    let k = m.min(n);
    let mut piv = Vec::with_capacity(k);
    let mut zero = None;
    for j in 0..k {
        let mut p = j;
        for i in j + 1..m {
            if lu[(i, j)].abs() > lu[(p, j)].abs() {
                p = i;
            }
        }
        piv.push(p);
        if p != j {
            for c in 0..n {
                let t = lu[(j, c)];
                lu[(j, c)] = lu[(p, c)];
                lu[(p, c)] = t;
            }
        }
        let d = lu[(j, j)];
        if d == 0.0 {
            // LAPACK records the zero pivot and skips the elimination of this column.
            zero.get_or_insert(j);
            continue;
        }
        for i in j + 1..m {
            lu[(i, j)] /= d;
        }
        for i in j + 1..m {
            let l = lu[(i, j)];
            if l != 0.0 {
                for c in j + 1..n {
                    lu[(i, c)] -= l * lu[(j, c)];
                }
            }
        }
    }
    Lu { lu, piv, zero }
}

/// MLX's `lu` permutation `p`, with `a = (L @ U)[p]` (`a = P @ L @ U`, `P[i, p[i]] = 1`): the
/// inverse of the row order `rows` that getrf's swaps give (`a[rows] = L @ U`).
fn perm_of(piv: &[usize], m: usize) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..m).collect();
    for (j, &p) in piv.iter().enumerate() {
        rows.swap(j, p);
    }
    let mut perm = vec![0; m];
    for (i, &r) in rows.iter().enumerate() {
        perm[r] = i;
    }
    perm
}

fn singular(op: &str, col: usize) -> Error {
    Error::runtime(format!("[linalg::{op}] The matrix is singular: LU factorization found an exact zero pivot in column {col}."))
}

/// `(perm, L, U)`: `L` is `m x k` unit lower, `U` is `k x n` upper.
pub fn lu(a: &Mat<f64>) -> Result<Vec<Flat>> {
    let (m, n) = (a.nrows(), a.ncols());
    let k = m.min(n);
    let f = getrf(a);
    let l = Mat::from_fn(m, k, |i, j| match i.cmp(&j) {
        std::cmp::Ordering::Greater => f.lu[(i, j)],
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Less => 0.0,
    });
    let u = Mat::from_fn(k, n, |i, j| if j >= i { f.lu[(i, j)] } else { 0.0 });
    let perm = perm_of(&f.piv, m).into_iter().map(|p| p as f64).collect();
    Ok(vec![perm, flat(&l), flat(&u)])
}

pub fn lu_factor(a: &Mat<f64>) -> Result<Vec<Flat>> {
    let f = getrf(a);
    Ok(vec![flat(&f.lu), f.piv.iter().map(|&p| p as f64).collect()])
}

/// Solves `L U x = P b` in place on the columns of `b` (square, non-singular `f`).
fn lu_solve(f: &Lu, b: &mut Mat<f64>) {
    let n = f.lu.nrows();
    for (j, &p) in f.piv.iter().enumerate() {
        if p != j {
            for c in 0..b.ncols() {
                let t = b[(j, c)];
                b[(j, c)] = b[(p, c)];
                b[(p, c)] = t;
            }
        }
    }
    for c in 0..b.ncols() {
        for i in 0..n {
            let mut s = b[(i, c)];
            for k in 0..i {
                s -= f.lu[(i, k)] * b[(k, c)];
            }
            b[(i, c)] = s;
        }
        for i in (0..n).rev() {
            let mut s = b[(i, c)];
            for k in i + 1..n {
                s -= f.lu[(i, k)] * b[(k, c)];
            }
            b[(i, c)] = s / f.lu[(i, i)];
        }
    }
}

pub fn inv(a: &Mat<f64>) -> Result<Mat<f64>> {
    let f = getrf(a);
    if let Some(c) = f.zero {
        return Err(singular("inv", c));
    }
    let mut x = Mat::<f64>::identity(a.nrows(), a.nrows());
    lu_solve(&f, &mut x);
    Ok(x)
}

pub fn solve(a: &Mat<f64>, b: &Mat<f64>) -> Result<Mat<f64>> {
    let f = getrf(a);
    if let Some(c) = f.zero {
        return Err(singular("solve", c));
    }
    let mut x = b.clone();
    lu_solve(&f, &mut x);
    Ok(x)
}

/// Solves `T x = b` for the `upper`/lower triangle `T` of `a` (the other triangle is ignored).
pub fn solve_triangular(a: &Mat<f64>, b: &Mat<f64>, upper: bool) -> Result<Mat<f64>> {
    tri_solve(a, b, upper, "solve_triangular")
}

fn tri_solve(a: &Mat<f64>, b: &Mat<f64>, upper: bool, op: &str) -> Result<Mat<f64>> {
    let n = a.nrows();
    if let Some(i) = (0..n).find(|&i| a[(i, i)] == 0.0) {
        return Err(Error::runtime(format!("[linalg::{op}] The triangular matrix is singular: diagonal element {i} is exactly zero.")));
    }
    let mut x = b.clone();
    for c in 0..x.ncols() {
        if upper {
            for i in (0..n).rev() {
                let mut s = x[(i, c)];
                for k in i + 1..n {
                    s -= a[(i, k)] * x[(k, c)];
                }
                x[(i, c)] = s / a[(i, i)];
            }
        } else {
            for i in 0..n {
                let mut s = x[(i, c)];
                for k in 0..i {
                    s -= a[(i, k)] * x[(k, c)];
                }
                x[(i, c)] = s / a[(i, i)];
            }
        }
    }
    Ok(x)
}

/// The inverse of the `upper`/lower triangle of `a` (triangular itself).
pub fn tri_inv(a: &Mat<f64>, upper: bool, op: &str) -> Result<Mat<f64>> {
    let n = a.nrows();
    let mut x = tri_solve(a, &Mat::<f64>::identity(n, n), upper, op)?;
    // Round-off never fills the other triangle, but make it exact.
    for i in 0..n {
        for j in 0..n {
            if (upper && j < i) || (!upper && j > i) {
                x[(i, j)] = 0.0;
            }
        }
    }
    Ok(x)
}

/// Cholesky factor read from one triangle. A matrix that is not positive definite does not error
/// (MLX ignores LAPACK's status there); the failing pivot's square root gives NaN instead.
pub fn cholesky(a: &Mat<f64>, upper: bool) -> Mat<f64> {
    let n = a.nrows();
    // The lower triangle of the symmetric matrix, read from the chosen side.
    let s = |i: usize, j: usize| if upper { a[(j, i)] } else { a[(i, j)] };
    let mut l = Mat::<f64>::zeros(n, n);
    for j in 0..n {
        let mut d = s(j, j);
        for k in 0..j {
            d -= l[(j, k)] * l[(j, k)];
        }
        let d = d.sqrt();
        l[(j, j)] = d;
        for i in j + 1..n {
            let mut v = s(i, j);
            for k in 0..j {
                v -= l[(i, k)] * l[(j, k)];
            }
            l[(i, j)] = v / d;
        }
    }
    if upper {
        l.transpose().to_owned()
    } else {
        l
    }
}

/// `inv(L @ L.T)` from the lower factor `L` (or `inv(U.T @ U)` from the upper one).
pub fn cholesky_inv(f: &Mat<f64>, upper: bool) -> Result<Mat<f64>> {
    let t = tri_inv(f, upper, "cholesky_inv")?;
    // lower: inv(L L^T) = inv(L)^T inv(L); upper: inv(U^T U) = inv(U) inv(U)^T.
    let (x, y) = if upper { (t.clone(), t.transpose().to_owned()) } else { (t.transpose().to_owned(), t.clone()) };
    Ok(&x * &y)
}
