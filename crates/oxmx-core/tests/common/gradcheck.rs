//! Numerical derivative checks in float64: vjp against central differences of
//! `loss(x) = Σ f(x) · w` (fixed random `w`), and jvp against the directional difference.

use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{grad_argnums, jvp};

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> Array {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * self.next()).collect();
        Array::from_slice(&v, shape)
    }
}

pub type F = dyn Fn(&[Array]) -> Array;

fn loss(f: &F, xs: &[Array], w: &Array) -> f64 {
    sum(&(f(xs).astype(Dtype::Float64) * w), None, false).item::<f64>().expect("loss evaluates")
}

/// Checks vjp (every input) and jvp (random tangent) of `f` at `xs` against finite differences.
pub fn check(name: &str, f: &F, xs: &[Array]) {
    check_tol(name, f, xs, 1e-6, 1e-6, 1e-4);
}

pub fn check_tol(name: &str, f: &F, xs: &[Array], eps: f64, atol: f64, rtol: f64) {
    let mut rng = Rng::new(name.len() as u64 * 7919 + 17);
    let y = f(xs);
    y.check().unwrap_or_else(|e| panic!("{name}: forward fails: {e}"));
    let w = rng.uniform(y.shape(), -1.0, 1.0).astype(y.dtype());
    let tol = |a: f64, n: f64| (a - n).abs() <= atol + rtol * n.abs().max(a.abs());

    // Reverse mode.
    let argnums: Vec<usize> = (0..xs.len()).collect();
    let g = grad_argnums(|x: Vec<Array>| sum(&(f(&x) * &w), None, false), &argnums);
    let grads = g(xs.to_vec());
    // vjp with the weights as the cotangent must agree with grad of the weighted sum.
    let (_, grads_vjp) =
        oxmx_core::transforms::vjp(|x: Vec<Array>| f(&x), &xs.to_vec(), &w).unwrap_or_else(|e| panic!("{name}: vjp fails: {e}"));
    for (a, b) in grads.iter().zip(&grads_vjp) {
        assert!(allclose(a, b, 1e-12, 1e-12, true).item::<bool>().unwrap_or(false), "{name}: grad and vjp disagree");
    }
    for (i, x) in xs.iter().enumerate() {
        let gv = grads[i].to_vec::<f64>().unwrap_or_else(|e| panic!("{name}: vjp of input {i} fails: {e}"));
        assert_eq!(grads[i].shape(), x.shape(), "{name}: gradient shape of input {i}");
        let xv = x.to_vec::<f64>().unwrap();
        for k in 0..xv.len() {
            let mut plus = xv.clone();
            plus[k] += eps;
            let mut minus = xv.clone();
            minus[k] -= eps;
            let with = |v: &Vec<f64>| {
                let mut ys = xs.to_vec();
                ys[i] = Array::from_slice(v, x.shape());
                ys
            };
            let num = (loss(f, &with(&plus), &w) - loss(f, &with(&minus), &w)) / (2.0 * eps);
            assert!(tol(gv[k], num), "{name}: d/dx{i}[{k}] vjp {} vs numeric {num}", gv[k]);
        }
    }

    // Forward mode.
    let ts: Vec<Array> = xs.iter().map(|x| rng.uniform(x.shape(), -1.0, 1.0)).collect();
    let (_, tan) = jvp(|x: Vec<Array>| f(&x), &xs.to_vec(), &ts).unwrap_or_else(|e| panic!("{name}: jvp fails: {e}"));
    let jv = sum(&(tan * &w), None, false).item::<f64>().unwrap_or_else(|e| panic!("{name}: jvp evaluates: {e}"));
    let shifted = |s: f64| -> Vec<Array> { xs.iter().zip(&ts).map(|(x, t)| x + t * s).collect() };
    let num = (loss(f, &shifted(eps), &w) - loss(f, &shifted(-eps), &w)) / (2.0 * eps);
    assert!(tol(jv, num), "{name}: jvp {jv} vs numeric {num}");
}

/// `check` for functions computed in float32/complex64 internally: larger step and tolerance.
pub fn check_f32(name: &str, f: &F, xs: &[Array]) {
    check_tol(name, f, xs, 1e-3, 2e-3, 1e-2);
}
