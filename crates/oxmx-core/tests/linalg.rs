//! mx.linalg: fixtures from scripts/gen_linalg_fixtures.py (MLX on fresh random inputs), plus
//! reconstruction checks for factors that are not unique, views, dtypes and errors.

use num_complex::Complex32;
use oxmx_core::linalg::{self, NormOrd};
use oxmx_core::prelude::*;
use oxmx_core::Axes;
use serde_json::Value;
use std::sync::OnceLock;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/linalg.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn cases(name: &str) -> &'static Vec<Value> {
    fixtures()[name].as_array().unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// An array from a fixture `{"shape", "dtype", "data"}`.
fn arr(v: &Value) -> Array {
    let (shape, data) = (shape_of(v), f64s(&v["data"]));
    match v["dtype"].as_str().unwrap() {
        "float32" => Array::from_slice(&data.iter().map(|&x| x as f32).collect::<Vec<_>>(), &shape),
        _ => Array::from_slice(&data, &shape),
    }
}

fn tol(dt: Dtype) -> f64 {
    if dt == Dtype::Float32 {
        2e-4
    } else {
        1e-9
    }
}

fn vals(a: &Array) -> Vec<f64> {
    a.to_vec::<f64>().unwrap()
}

#[track_caller]
fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{what}[{i}]: got {g}, want {w} (tol {tol})");
    }
}

/// `got` equals the fixture array `want` in shape, dtype and values.
#[track_caller]
fn matches(got: &Array, want: &Value, what: &str) {
    let w = arr(want);
    assert_eq!(got.shape(), w.shape(), "{what}: shape");
    assert_eq!(got.dtype(), w.dtype(), "{what}: dtype");
    close(&vals(got), &vals(&w), tol(w.dtype()), what);
}

#[track_caller]
fn approx(got: &Array, want: &Array, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    close(&vals(got), &vals(want), tol, what);
}

fn t(a: &Array) -> Array {
    ops::swapaxes(a, -1, -2)
}

/// An identity broadcast to `[.., n, n]` for the batch of `like`.
fn eye_like(like: &Array, n: usize) -> Array {
    let mut shape = like.shape()[..like.ndim() - 2].to_vec();
    shape.extend([n, n]);
    ops::broadcast_to(&ops::eye(n, None, 0, like.dtype()), &shape)
}

#[track_caller]
fn err_msg(a: &Array) -> String {
    match a.eval() {
        Err(e) => e.message().to_string(),
        Ok(()) => panic!("expected an error, got {a}"),
    }
}

#[test]
fn inv_matches_mlx_and_inverts() {
    for c in cases("inv") {
        let a = arr(&c["a"]);
        let x = linalg::inv(&a);
        matches(&x, &c["out"], "inv");
        let n = a.shape()[a.ndim() - 1];
        approx(&ops::matmul(&a, &x), &eye_like(&a, n), 10.0 * tol(a.dtype()), "a @ inv(a)");
    }
}

#[test]
fn tri_inv_reads_one_triangle() {
    for c in cases("tri_inv") {
        let a = arr(&c["a"]);
        let upper = c["upper"].as_bool().unwrap();
        matches(&linalg::tri_inv(&a, upper), &c["out"], "tri_inv");
    }
}

#[test]
fn pinv_matches_mlx_and_penrose() {
    for c in cases("pinv") {
        let a = arr(&c["a"]);
        let x = linalg::pinv(&a);
        matches(&x, &c["out"], "pinv");
        approx(&ops::matmul(&ops::matmul(&a, &x), &a), &a, 10.0 * tol(a.dtype()), "a @ pinv @ a");
    }
}

#[test]
fn cholesky_and_cholesky_inv_match_mlx() {
    for (c, ci) in cases("cholesky").iter().zip(cases("cholesky_inv")) {
        let a = arr(&c["a"]);
        let upper = c["upper"].as_bool().unwrap();
        let l = linalg::cholesky(&a, upper);
        matches(&l, &c["out"], "cholesky");
        let f = arr(&ci["a"]);
        let inv = linalg::cholesky_inv(&f, upper);
        matches(&inv, &ci["out"], "cholesky_inv");
        // The factor rebuilds the matrix it came from: inv(that) is cholesky_inv's answer.
        let full = if upper { ops::matmul(&t(&f), &f) } else { ops::matmul(&f, &t(&f)) };
        let n = a.shape()[a.ndim() - 1];
        approx(&ops::matmul(&full, &inv), &eye_like(&a, n), 20.0 * tol(a.dtype()), "A @ cholesky_inv");
    }
}

#[test]
fn qr_reconstructs_and_matches_lapack_signs() {
    for c in cases("qr") {
        let a = arr(&c["a"]);
        let (q, r) = linalg::qr(&a);
        let tl = 10.0 * tol(a.dtype());
        approx(&ops::matmul(&q, &r), &a, tl, "Q @ R");
        let k = q.shape()[q.ndim() - 1];
        approx(&ops::matmul(&t(&q), &q), &eye_like(&q, k), tl, "Q^T Q");
        approx(&ops::triu(&r, 0), &r, 0.0, "R upper");
        matches(&q, &c["q"], "Q");
        matches(&r, &c["r"], "R");
    }
}

#[test]
fn svd_reconstructs_and_singular_values_match() {
    for c in cases("svd") {
        let a = arr(&c["a"]);
        let (u, s, vt) = linalg::svd(&a);
        matches(&s, &c["s"], "S");
        matches(&linalg::svd_values(&a), &c["s"], "svd_values");
        let nd = a.ndim();
        let (m, n) = (a.shape()[nd - 2], a.shape()[nd - 1]);
        let k = m.min(n);
        assert_eq!(u.shape()[nd - 2..], [m, m]);
        assert_eq!(vt.shape()[nd - 2..], [n, n]);
        let tl = 10.0 * tol(a.dtype());
        approx(&ops::matmul(&t(&u), &u), &eye_like(&a, m), tl, "U^T U");
        approx(&ops::matmul(&vt, &t(&vt)), &eye_like(&a, n), tl, "Vt Vt^T");
        let mut lo = vec![0isize; nd];
        let mut hi: Vec<isize> = u.shape().iter().map(|&d| d as isize).collect();
        hi[nd - 1] = k as isize;
        let uk = ops::slice_range(&u, &lo, &hi);
        hi = vt.shape().iter().map(|&d| d as isize).collect();
        hi[nd - 2] = k as isize;
        lo[nd - 2] = 0;
        let vk = ops::slice_range(&vt, &lo, &hi);
        let us = ops::multiply(&uk, &ops::expand_dims(&s, &[-2]));
        approx(&ops::matmul(&us, &vk), &a, tl, "U S Vt");
    }
}

#[test]
fn eigh_values_match_and_vectors_solve() {
    for c in cases("eigh") {
        let a = arr(&c["a"]);
        let sym = arr(&c["sym"]);
        let uplo = c["uplo"].as_str().unwrap();
        matches(&linalg::eigvalsh(&a, uplo), &c["w"], "eigvalsh");
        let (w, v) = linalg::eigh(&a, uplo);
        matches(&w, &c["w"], "eigh w");
        let wv = vals(&w);
        let n = a.shape()[a.ndim() - 1];
        for b in 0..wv.len() / n {
            assert!(wv[b * n..(b + 1) * n].windows(2).all(|p| p[0] <= p[1]), "eigh ascending");
        }
        let tl = 50.0 * tol(a.dtype());
        approx(&ops::matmul(&sym, &v), &ops::multiply(&v, &ops::expand_dims(&w, &[-2])), tl, "A V = V diag(w)");
        approx(&ops::matmul(&t(&v), &v), &eye_like(&a, n), tl, "V^T V");
    }
}

fn complex_vals(a: &Array) -> Vec<Complex32> {
    a.to_vec::<Complex32>().unwrap()
}

#[test]
fn eig_values_match_and_vectors_solve() {
    for c in cases("eig") {
        let a = arr(&c["a"]);
        let want: Vec<Complex32> = f64s(&c["w"]).chunks(2).map(|p| Complex32::new(p[0] as f32, p[1] as f32)).collect();
        let wv = linalg::eigvals(&a);
        assert_eq!(wv.dtype(), Dtype::Complex64);
        let (w, v) = linalg::eig(&a);
        assert_eq!(v.dtype(), Dtype::Complex64);
        let n = a.shape()[a.ndim() - 1];
        assert_eq!(v.shape(), a.shape());
        let (got, got2, vecs) = (complex_vals(&w), complex_vals(&wv), complex_vals(&v));
        let av = vals(&a);
        let tl = if a.dtype() == Dtype::Float32 { 1e-3 } else { 1e-5 };
        for b in 0..want.len() / n {
            // Eigenvalue order is unspecified: match each of MLX's to a distinct one of ours.
            let mut used = vec![false; n];
            for wz in &want[b * n..(b + 1) * n] {
                let j = (0..n)
                    .filter(|&j| !used[j])
                    .min_by(|&i, &j| (got[b * n + i] - wz).norm().total_cmp(&(got[b * n + j] - wz).norm()))
                    .unwrap();
                used[j] = true;
                assert!((got[b * n + j] - wz).norm() <= tl * wz.norm().max(1.0), "eig value {wz} vs {}", got[b * n + j]);
                assert!((got2[b * n + j] - got[b * n + j]).norm() <= tl, "eigvals agrees with eig");
            }
            // A v_j = lambda_j v_j, with unit-norm v_j.
            for j in 0..n {
                let lam = got[b * n + j];
                let vj: Vec<Complex32> = (0..n).map(|i| vecs[b * n * n + i * n + j]).collect();
                let norm: f32 = vj.iter().map(|z| z.norm_sqr()).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-3, "unit eigenvector");
                for i in 0..n {
                    let mut s = Complex32::new(0.0, 0.0);
                    for k in 0..n {
                        s += vj[k] * av[b * n * n + i * n + k] as f32;
                    }
                    assert!((s - lam * vj[i]).norm() <= 1e-3 * lam.norm().max(1.0), "A v = lambda v");
                }
            }
        }
    }
}

#[test]
fn lu_matches_mlx_pivots_exactly() {
    for c in cases("lu") {
        let a = arr(&c["a"]);
        let (p, l, u) = linalg::lu(&a);
        assert_eq!(p.dtype(), Dtype::Uint32);
        let pv: Vec<f64> = p.to_vec::<u32>().unwrap().iter().map(|&x| x as f64).collect();
        assert_eq!(pv, f64s(&c["p"]), "lu perm");
        matches(&l, &c["l"], "L");
        matches(&u, &c["u"], "U");
        // a = (L @ U)[perm] along the row axis, batch by batch.
        let lu_prod = ops::matmul(&l, &u);
        let rows = ops::expand_dims(&p, &[-1]);
        let gathered = ops::take_along_axis(&lu_prod, &ops::broadcast_to(&rows, lu_prod.shape()), Some(-2));
        approx(&gathered, &a, 10.0 * tol(a.dtype()), "(L U)[perm]");
        let (packed, piv) = linalg::lu_factor(&a);
        matches(&packed, &c["lu"], "lu_factor LU");
        let pv: Vec<f64> = piv.to_vec::<u32>().unwrap().iter().map(|&x| x as f64).collect();
        assert_eq!(pv, f64s(&c["piv"]), "lu_factor pivots");
    }
}

#[test]
fn solve_and_solve_triangular_match() {
    for c in cases("solve") {
        let (a, b) = (arr(&c["a"]), arr(&c["b"]));
        let x = linalg::solve(&a, &b);
        matches(&x, &c["out"], "solve");
    }
    for c in cases("solve_triangular") {
        let (a, b) = (arr(&c["a"]), arr(&c["b"]));
        let x = linalg::solve_triangular(&a, &b, c["upper"].as_bool().unwrap());
        matches(&x, &c["out"], "solve_triangular");
    }
    // Mixed dtypes promote.
    let a = Array::from_slice(&[3.0f64, 1.0, 1.0, 2.0], &[2, 2]);
    let x = linalg::solve(&a, &Array::vec(&[9.0f32, 8.0]));
    assert_eq!(x.dtype(), Dtype::Float64);
    close(&vals(&x), &[2.0, 3.0], 1e-12, "mixed solve");
}

fn ord_of(v: &Value) -> Option<NormOrd> {
    match v {
        Value::Null => None,
        Value::String(s) if s == "inf" => Some(NormOrd::P(f64::INFINITY)),
        Value::String(s) if s == "-inf" => Some(NormOrd::P(f64::NEG_INFINITY)),
        Value::String(s) => Some(NormOrd::from(s.as_str())),
        v => Some(NormOrd::P(v.as_f64().unwrap())),
    }
}

#[test]
fn norm_matches_mlx() {
    for c in cases("norm") {
        let a = arr(&c["a"]);
        let axis = match &c["axis"] {
            Value::Null => Axes::All,
            v => Axes::List(v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()),
        };
        let r = linalg::norm(&a, ord_of(&c["ord"]), axis, c["keepdims"].as_bool().unwrap());
        matches(&r, &c["out"], &format!("norm ord={} axis={} keepdims={}", c["ord"], c["axis"], c["keepdims"]));
    }
    // Integers compute in float32; float64 stays float64.
    let n = linalg::norm(&Array::vec(&[3i32, 4]), None, Axes::All, false);
    assert_eq!(n.dtype(), Dtype::Float32);
    assert_eq!(n.item::<f32>().unwrap(), 5.0);
    let n = linalg::norm(&Array::vec(&[3.0f64, 0.0, 4.0]), Some(NormOrd::P(0.0)), Axes::All, false);
    assert_eq!((n.dtype(), n.item::<f64>().unwrap()), (Dtype::Float64, 2.0));
}

#[test]
fn cross_matches_mlx() {
    for c in cases("cross") {
        let r = linalg::cross(&arr(&c["a"]), &arr(&c["b"]), c["axis"].as_i64().unwrap() as isize);
        matches(&r, &c["out"], "cross");
    }
    let r = linalg::cross(&Array::vec(&[1i32, 2, 3]), &Array::vec(&[4i32, 5, 6]), -1);
    assert_eq!(r.dtype(), Dtype::Int32);
    assert_eq!(r.to_vec::<i32>().unwrap(), vec![-3, 6, -3]);
}

#[test]
fn non_contiguous_inputs() {
    // A transposed view and a broadcast batch read through strides.
    let c = &cases("inv")[1];
    let a = arr(&c["a"]);
    let at = t(&a);
    approx(&linalg::inv(&at), &t(&arr(&c["out"])), 1e-4, "inv(a^T) = inv(a)^T");
    let (q, r) = linalg::qr(&at);
    approx(&ops::matmul(&q, &r), &at, 1e-4, "qr of a view");
    let s1 = vals(&linalg::svd_values(&at));
    close(&s1, &vals(&linalg::svd_values(&a)), 1e-4, "svd of a view");
    let b = ops::broadcast_to(&a, &[3, 4, 4]);
    let inv_b = linalg::inv(&b);
    assert_eq!(inv_b.shape(), &[3, 4, 4]);
    for i in 0..3isize {
        let slice = ops::slice_range(&inv_b, &[i, 0, 0], &[i + 1, 4, 4]);
        approx(&ops::reshape(&slice, &[4, 4]), &arr(&c["out"]), 1e-5, "broadcast batch");
    }
    let x = linalg::solve(&at, &t(&Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 4])));
    approx(&ops::matmul(&at, &x), &t(&Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 4])), 1e-4, "solve views");
}

#[test]
fn output_shapes_and_empty_batches() {
    let a = ops::zeros(&[0, 3, 3], Dtype::Float32);
    assert_eq!(linalg::inv(&a).shape(), &[0, 3, 3]);
    linalg::inv(&a).eval().unwrap();
    let (p, l, u) = linalg::lu(&ops::ones(&[2, 4, 3], Dtype::Float64));
    assert_eq!((p.shape(), l.shape(), u.shape()), (&[2, 4][..], &[2, 4, 3][..], &[2, 3, 3][..]));
    let (q, r) = linalg::qr(&ops::ones(&[3, 5], Dtype::Float32));
    assert_eq!((q.shape(), r.shape()), (&[3, 3][..], &[3, 5][..]));
    let (u, s, vt) = linalg::svd(&ops::ones(&[2, 5, 3], Dtype::Float32));
    assert_eq!((u.shape(), s.shape(), vt.shape()), (&[2, 5, 5][..], &[2, 3][..], &[2, 3, 3][..]));
    assert_eq!(linalg::pinv(&ops::ones(&[2, 3], Dtype::Float32)).shape(), &[3, 2]);
    let (lu, piv) = linalg::lu_factor(&ops::ones(&[3, 5], Dtype::Float32));
    assert_eq!((lu.shape(), piv.shape(), piv.dtype()), (&[3, 5][..], &[3][..], Dtype::Uint32));
    // Like MLX, a singular matrix is fine for pinv and the eigen/svd family.
    let sing = Array::from_slice(&[1.0f32, 2.0, 2.0, 4.0], &[2, 2]);
    close(&vals(&linalg::pinv(&sing)), &[0.04, 0.08, 0.08, 0.16], 1e-5, "pinv singular");
    close(&vals(&linalg::eigvalsh(&sing, "L")), &[0.0, 5.0], 1e-5, "eigvalsh singular");
}

#[test]
fn errors_are_clear_and_never_panic() {
    let m23 = ops::zeros(&[2, 3], Dtype::Float32);
    let v = Array::vec(&[1.0f32, 2.0]);
    let ints = Array::from_slice(&[1i32, 2, 3, 4], &[2, 2]);
    let half = ops::eye(2, None, 0, Dtype::Float16);
    assert!(err_msg(&linalg::inv(&m23)).contains("[linalg::inv] Inverses are only defined for square matrices."));
    assert!(err_msg(&linalg::inv(&v)).contains("[linalg::inv] Arrays must have >= 2 dimensions. Received array with 1 dimensions."));
    assert!(
        err_msg(&linalg::inv(&ints)).contains("[linalg::inv] Arrays must have type float32 or float64. Received array with type int32.")
    );
    assert!(err_msg(&linalg::cholesky(&half, false)).contains("Received array with type float16"));
    assert!(err_msg(&linalg::cholesky(&m23, false)).contains("Cholesky decomposition is only defined for square matrices."));
    assert!(err_msg(&linalg::cholesky_inv(&m23, false)).contains("Cholesky inverse is only defined for square matrices."));
    assert!(err_msg(&linalg::eigvalsh(&m23, "L")).contains("[linalg::eigvalsh] Only defined for square matrices."));
    assert!(err_msg(&linalg::eigvals(&ints)).contains("float32, float64 or complex64"));
    assert!(err_msg(&linalg::svd_values(&v)).contains("[linalg::svd] Arrays must have >= 2 dimensions"));
    assert!(err_msg(&linalg::tri_inv(&m23, true)).contains("[linalg::inv] Inverses are only defined"));
    let cplx = ops::eye(2, None, 0, Dtype::Complex64);
    assert!(err_msg(&linalg::svd_values(&cplx)).contains("complex64 input is not supported"));
    // Multi-output ops put the error on every output.
    let (q, r) = linalg::qr(&ints);
    assert!(err_msg(&q).contains("[linalg::qr]") && err_msg(&r).contains("[linalg::qr]"));
    let (p, l, u) = linalg::lu(&v);
    for x in [&p, &l, &u] {
        assert!(err_msg(x).contains("[linalg::lu] Arrays must have >= 2 dimensions"));
    }
    let (w, vv) = linalg::eigh(&ops::eye(2, None, 0, Dtype::Float32), "X");
    assert!(err_msg(&w).contains("UPLO") && err_msg(&vv).contains("UPLO"));
    // solve shapes and dtypes.
    let a = ops::eye(2, None, 0, Dtype::Float32);
    assert!(err_msg(&linalg::solve(&a, &Array::vec(&[1.0f32, 2.0, 3.0]))).contains("must match second to last dimension"));
    assert!(err_msg(&linalg::solve(&m23, &v)).contains("First input must be a square matrix."));
    assert!(err_msg(&linalg::solve(&ints, &Array::vec(&[1i32, 2]))).contains("must promote to float32 or float64"));
    assert!(err_msg(&linalg::solve_triangular(&v, &v, false)).contains("First input must have >= 2 dimensions"));
    // Singular matrices fail at evaluation, where MLX's LAPACK reports a zero pivot.
    let sing = Array::from_slice(&[1.0f32, 2.0, 2.0, 4.0], &[2, 2]);
    assert!(err_msg(&linalg::inv(&sing)).contains("singular"));
    assert!(err_msg(&linalg::solve(&sing, &v)).contains("singular"));
    let zero_diag = Array::from_slice(&[0.0f32, 0.0, 1.0, 1.0], &[2, 2]);
    assert!(err_msg(&linalg::tri_inv(&zero_diag, false)).contains("singular"));
    assert!(err_msg(&linalg::solve_triangular(&zero_diag, &v, false)).contains("singular"));
    // A singular entry in a batch fails the whole op.
    let batch = ops::stack(&[ops::eye(2, None, 0, Dtype::Float32), ops::zeros(&[2, 2], Dtype::Float32)], 0);
    assert!(err_msg(&linalg::inv(&batch)).contains("singular"));
    // norm and cross.
    let m = Array::from_slice(&[1.0f32, -2.0, 3.0, 4.0], &[2, 2]);
    assert!(err_msg(&linalg::norm(&m, Some(NormOrd::P(0.0)), Axes::All, false)).contains("[linalg::norm] Invalid ord 0 for matrix norm."));
    assert!(err_msg(&linalg::norm(&m, Some(NormOrd::P(3.0)), Axes::All, false)).contains("Invalid ord 3 for matrix norm."));
    assert!(err_msg(&linalg::norm(&m, Some("abc".into()), Axes::All, false)).contains("Invalid ord value 'abc' for matrix norm."));
    assert!(err_msg(&linalg::norm(&v, Some("fro".into()), Axes::All, false)).contains("Norm 'fro' only supported for matrices"));
    let cube = ops::ones(&[2, 2, 2], Dtype::Float32);
    assert!(err_msg(&linalg::norm(&cube, Some(NormOrd::P(2.0)), Axes::All, false)).contains("Received too many axes for norm."));
    assert!(err_msg(&linalg::norm(&cube, None, [0, 1, 2], false)).contains("Received too many axes for norm."));
    assert!(err_msg(&linalg::norm(&cube, None, [0, 0], false)).contains("Duplicate axes"));
    assert!(err_msg(&linalg::norm(&cube, None, 3, false)).contains("out of bounds"));
    assert!(
        err_msg(&linalg::cross(&Array::vec(&[1.0f32, 2.0, 3.0]), &ops::ones(&[4], Dtype::Float32), -1)).contains("must have size 2 or 3")
    );
}

/// multivariate_normal (built on svd): sample mean and covariance match the parameters.
#[test]
fn multivariate_normal_statistics() {
    use oxmx_core::random;
    let mean = Array::vec(&[1.0f32, -2.0, 0.5]);
    let cov = Array::from_slice(&[2.0f32, 0.6, 0.2, 0.6, 1.0, -0.3, 0.2, -0.3, 0.5], &[3, 3]);
    let n = 200_000;
    let s = random::multivariate_normal(&mean, &cov, &[n], Dtype::Float32, Some(&random::key(3)));
    assert_eq!(s.shape(), &[n, 3]);
    let v = s.to_vec::<f32>().unwrap();
    let m: Vec<f64> = (0..3).map(|j| (0..n).map(|i| v[i * 3 + j] as f64).sum::<f64>() / n as f64).collect();
    let want_m = [1.0, -2.0, 0.5];
    let want_c = [2.0, 0.6, 0.2, 0.6, 1.0, -0.3, 0.2, -0.3, 0.5];
    for j in 0..3 {
        assert!((m[j] - want_m[j]).abs() < 0.02, "mean {j}: {}", m[j]);
        for k in 0..3 {
            let c = (0..n).map(|i| (v[i * 3 + j] as f64 - m[j]) * (v[i * 3 + k] as f64 - m[k])).sum::<f64>() / n as f64;
            assert!((c - want_c[j * 3 + k]).abs() < 0.03, "cov {j}{k}: {c}");
        }
    }
    // Batched parameters broadcast against the sample shape; bad shapes are errors.
    let bm = oxmx_core::ops::zeros(&[4, 3], Dtype::Float32);
    assert_eq!(random::multivariate_normal(&bm, &cov, &[2, 4], Dtype::Float32, Some(&random::key(1))).shape(), &[2, 4, 3]);
    assert!(random::multivariate_normal(&mean, &oxmx_core::ops::zeros(&[2, 2], Dtype::Float32), &[5], Dtype::Float32, None)
        .check()
        .is_err());
    assert!(random::multivariate_normal(&mean, &cov, &[5], Dtype::Float64, None).check().is_err());
    assert!(random::multivariate_normal(&bm, &cov, &[5], Dtype::Float32, None).check().is_err());
}
