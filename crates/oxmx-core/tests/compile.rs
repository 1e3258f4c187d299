//! `compile`: compiled and plain functions agree (every fusable unary and binary op, several
//! dtypes, broadcasting, transposed and sliced inputs, the parallel path); the cache traces
//! once per signature (shapeless: per rank); the simplify passes and fusion are visible in the
//! stats; shapeless replay rejects shape-fixing primitives; disabling compile gives the plain
//! results; derivatives through and of compiled functions match plain ones; state threads
//! through repeated calls.

mod common;
use common::gradcheck::Rng;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::*;
use std::sync::RwLock;

/// Tests that switch compilation off globally take this for writing, every other test for
/// reading, so the switch never flips under a test that counts traces.
static SWITCH: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SWITCH.read().unwrap_or_else(|p| p.into_inner())
}

fn r(seed: u64, shape: &[usize], lo: f64, hi: f64) -> Array {
    Rng::new(seed).uniform(shape, lo, hi)
}

fn tol(dt: Dtype) -> f64 {
    match dt {
        Dtype::Float64 => 1e-12,
        Dtype::Float32 => 2e-6,
        Dtype::Float16 => 4e-3,
        _ => 3e-2,
    }
}

#[track_caller]
fn assert_close(what: &str, got: &Array, want: &Array, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    let g = got.to_vec::<f64>().unwrap_or_else(|e| panic!("{what}: {e}"));
    let w = want.to_vec::<f64>().unwrap_or_else(|e| panic!("{what}: {e}"));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + b.abs());
        assert!(ok, "{what}: element {i}: compiled {a} vs plain {b} (tol {tol})");
    }
}

/// The inputs a case runs on: contiguous, transposed and strided-sliced views of `dt` data.
fn layouts(seed: u64, lo: f64, hi: f64, dt: Dtype) -> Vec<(&'static str, Array)> {
    let base = r(seed, &[6, 5], lo, hi).astype(dt);
    vec![
        ("contiguous", r(seed + 1, &[7], lo, hi).astype(dt)),
        ("transposed", transpose(&base, &[1, 0])),
        ("sliced", slice(&base, &[SliceSpec::new(Some(1), None, 2), SliceSpec::new(None, None, -1)])),
    ]
}

const FLOATS: [Dtype; 4] = [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16, Dtype::Float64];

#[test]
fn unary_ops_agree() {
    let _g = shared();
    type U = fn(&Array) -> Array;
    let cases: Vec<(&str, U, f64, f64)> = vec![
        ("abs", abs, -2.0, 2.0),
        ("negative", negative, -2.0, 2.0),
        ("sign", sign, -2.0, 2.0),
        ("square", square, -2.0, 2.0),
        ("sqrt", sqrt, 0.3, 3.0),
        ("rsqrt", rsqrt, 0.3, 3.0),
        ("reciprocal", reciprocal, 0.3, 3.0),
        ("exp", exp, -2.0, 2.0),
        ("expm1", expm1, -2.0, 2.0),
        ("log", log, 0.3, 3.0),
        ("log1p", log1p, 0.3, 3.0),
        ("log2", log2, 0.3, 3.0),
        ("log10", log10, 0.3, 3.0),
        ("sin", sin, -3.0, 3.0),
        ("cos", cos, -3.0, 3.0),
        ("tan", tan, -1.0, 1.0),
        ("arcsin", arcsin, -0.9, 0.9),
        ("arccos", arccos, -0.9, 0.9),
        ("arctan", arctan, -3.0, 3.0),
        ("sinh", sinh, -2.0, 2.0),
        ("cosh", cosh, -2.0, 2.0),
        ("tanh", tanh, -2.0, 2.0),
        ("arcsinh", arcsinh, -2.0, 2.0),
        ("arccosh", arccosh, 1.2, 3.0),
        ("arctanh", arctanh, -0.9, 0.9),
        ("erf", erf, -2.0, 2.0),
        ("erfinv", erfinv, -0.9, 0.9),
        ("sigmoid", sigmoid, -3.0, 3.0),
        ("floor", floor, -3.0, 3.0),
        ("ceil", ceil, -3.0, 3.0),
        ("round", |x| round(x, 0), -3.0, 3.0),
    ];
    for (i, (name, f, lo, hi)) in cases.into_iter().enumerate() {
        // The op inside a region of three, so it is fused.
        let plain = move |x: Array| f(&x) * 2.0 + &x;
        let cf = compile(plain);
        for dt in FLOATS {
            for (layout, x) in layouts(i as u64 * 10, lo, hi, dt) {
                let what = format!("{name} {dt} {layout}");
                assert_close(&what, &cf.call(x.clone()), &plain(x), tol(dt));
                assert_eq!(cf.stats().unwrap().regions, 1, "{what}: fused");
            }
        }
    }
}

#[test]
fn binary_ops_agree_with_broadcasting() {
    let _g = shared();
    type B = fn(&Array, &Array) -> Array;
    let cases: Vec<(&str, B)> = vec![
        ("add", |a, b| add(a, b)),
        ("subtract", |a, b| subtract(a, b)),
        ("multiply", |a, b| multiply(a, b)),
        ("divide", |a, b| divide(a, b)),
        ("floor_divide", |a, b| floor_divide(a, b)),
        ("remainder", |a, b| remainder(a, b)),
        ("power", |a, b| power(a, b)),
        ("maximum", |a, b| maximum(a, b)),
        ("minimum", |a, b| minimum(a, b)),
        ("arctan2", |a, b| arctan2(a, b)),
        ("logaddexp", |a, b| logaddexp(a, b)),
        // Comparisons and logical ops make bool registers, consumed by a select in the region.
        ("equal", |a, b| where_(equal(a, &floor(b)), a, b)),
        ("not_equal", |a, b| where_(not_equal(a, &floor(b)), a, b)),
        ("less", |a, b| where_(less(a, b), a, b)),
        ("less_equal", |a, b| where_(less_equal(a, b), a, b)),
        ("greater", |a, b| where_(greater(a, b), a, b)),
        ("greater_equal", |a, b| where_(greater_equal(a, b), a, b)),
        ("logical_and", |a, b| where_(logical_and(&greater(a, 1.0), &greater(b, 1.0)), a, b)),
        ("logical_or", |a, b| where_(logical_or(&greater(a, 1.0), &greater(b, 1.0)), a, b)),
    ];
    for (i, (name, f)) in cases.into_iter().enumerate() {
        let plain = move |(a, b): (Array, Array)| f(&a, &b) * 1.5 + &a;
        let cf = compile(plain);
        for dt in FLOATS {
            let a = r(i as u64, &[4, 6], 0.5, 2.5).astype(dt);
            let at = transpose(&r(i as u64 + 50, &[6, 4], 0.5, 2.5).astype(dt), &[1, 0]);
            let row = r(i as u64 + 100, &[6], 0.5, 2.5).astype(dt);
            let col = r(i as u64 + 200, &[4, 1], 0.5, 2.5).astype(dt);
            let scalar = r(i as u64 + 300, &[], 0.5, 2.5).astype(dt);
            let pairs = [
                ("same", a.clone(), r(i as u64 + 400, &[4, 6], 0.5, 2.5).astype(dt)),
                ("row", a.clone(), row),
                ("col", at.clone(), col),
                ("scalar", a, scalar.clone()),
                ("scalar-first", scalar, at),
            ];
            for (layout, x, y) in pairs {
                let what = format!("{name} {dt} {layout}");
                assert_close(&what, &cf.call((x.clone(), y.clone())), &plain((x, y)), tol(dt));
                assert!(cf.stats().unwrap().regions >= 1, "{what}: fused");
            }
        }
    }
}

#[test]
fn bool_and_cast_outputs() {
    let _g = shared();
    // A comparison returned as a bool output, an intermediate returned too, and float casts
    // inside the region.
    let plain = |x: Array| {
        let y = exp(&x) * 0.5;
        let m = greater(&y, 0.6);
        let h = (y.astype(Dtype::Float32) * 3.0).astype(x.dtype()) + &x;
        (m, y, h)
    };
    let cf = compile(plain);
    for dt in [Dtype::Float16, Dtype::Bfloat16, Dtype::Float32] {
        let x = r(7, &[3, 5], -1.0, 1.0).astype(dt);
        let (m, y, h) = cf.call(x.clone());
        let (m0, y0, h0) = plain(x);
        assert_eq!(m.to_vec::<bool>().unwrap(), m0.to_vec::<bool>().unwrap(), "{dt} mask");
        assert_close(&format!("{dt} y"), &y, &y0, tol(dt));
        assert_close(&format!("{dt} h"), &h, &h0, tol(dt));
        assert_eq!(cf.stats().unwrap().fused, 1, "{dt}: one fused node returns all three");
    }
}

#[test]
fn large_arrays_take_the_parallel_paths() {
    let _g = shared();
    let gelu = |x: Array| &x * 0.5 * (tanh(&((&x + &x * &x * &x * 0.044715) * (2.0f64 / std::f64::consts::PI).sqrt())) + 1.0);
    let cf = compile(gelu);
    let x = r(3, &[300, 200], -3.0, 3.0).astype(Dtype::Float32);
    assert_close("contiguous", &cf.call(x.clone()), &gelu(x.clone()), 2e-6);
    let xt = transpose(&x, &[1, 0]);
    assert_close("transposed", &cf.call(xt.clone()), &gelu(xt), 2e-6);
    let s = cf.stats().unwrap();
    assert_eq!((s.fused, s.regions), (1, 1), "{s:?}");
    // Broadcast operands, f16 storage.
    let f = |(a, b): (Array, Array)| exp(&(&a - &b)) * &b;
    let cf = compile(f);
    let a = r(4, &[256, 300], -1.0, 1.0).astype(Dtype::Float16);
    let b = r(5, &[256, 1], -1.0, 1.0).astype(Dtype::Float16);
    assert_close("broadcast f16", &cf.call((a.clone(), b.clone())), &f((a, b)), 4e-3);
}

/// Outputs of 8 MB and more are written with streaming stores (whole vectors from an L1 stage,
/// plain stores for the unaligned head and the tail): f32 outputs straight from a register,
/// f16 and bool outputs converted first; the element count is odd so every tail is hit. The
/// plain (uncompiled) element-wise kernels stream large outputs too (binary ones on any AVX2
/// host, heavier unary ones on AVX-512 hosts): checked against float64.
#[test]
fn large_outputs_are_streamed() {
    let _g = shared();
    let f = |x: Array| (tanh(&x) * 2.0 + 1.0, (&x * 3.0).astype(Dtype::Float16), greater(&x, 0.5));
    let cf = compile(f);
    let x = r(6, &[2101, 1001], -4.0, 4.0).astype(Dtype::Float32);
    let (a, b, c) = cf.call(x.clone());
    let (ea, eb, ec) = f(x.clone());
    assert_close("f32 output", &a, &ea, 2e-6);
    assert_close("f16 output", &b, &eb, 1e-3);
    assert_eq!(c.to_vec::<bool>().unwrap(), ec.to_vec::<bool>().unwrap(), "bool output");
    let e = exp(&x);
    let e64 = exp(&x.astype(Dtype::Float64)).astype(Dtype::Float32);
    assert_close("streamed exp", &e, &e64, 1e-6);
    // Binary kernels: two arrays, a scalar operand, and an operand starting one element into
    // its buffer (the output's head and tail then fall differently against the vectors).
    let y = r(7, &[2101, 1001], -4.0, 4.0).astype(Dtype::Float32);
    let (x64, y64) = (x.astype(Dtype::Float64), y.astype(Dtype::Float64));
    assert_close("streamed add", &(&x + &y), &(&x64 + &y64).astype(Dtype::Float32), 0.0);
    assert_close("streamed multiply by a scalar", &(&x * 3.0), &(&x64 * 3.0).astype(Dtype::Float32), 0.0);
    let n = 2101 * 1001 - 1isize;
    let flat = |a: &Array, lo: isize| slice(&reshape(a, &[-1]), &[SliceSpec::new(Some(lo), Some(lo + n), 1)]);
    let (xs, ys) = (flat(&x, 1), flat(&y, 0));
    let want = (&xs.astype(Dtype::Float64) - &ys.astype(Dtype::Float64)).astype(Dtype::Float32);
    assert_close("streamed subtract, offset operand", &(&xs - &ys), &want, 0.0);
}

#[test]
fn cache_traces_once_per_signature() {
    let _g = shared();
    let cf = compile(|x: Array| sin(&x) * 2.0 + 1.0);
    let x = r(1, &[4], -1.0, 1.0).astype(Dtype::Float32);
    for _ in 0..3 {
        cf.call(x.clone()).eval().unwrap();
    }
    assert_eq!(cf.trace_count(), 1, "same shape and dtype: one trace");
    let x2 = r(2, &[4], -1.0, 1.0).astype(Dtype::Float32);
    assert_close("new values", &cf.call(x2.clone()), &(sin(&x2) * 2.0 + 1.0), 2e-6);
    assert_eq!(cf.trace_count(), 1, "new values, same signature: no retrace");
    cf.call(r(3, &[5], -1.0, 1.0).astype(Dtype::Float32)).eval().unwrap();
    assert_eq!(cf.trace_count(), 2, "new shape: retrace");
    cf.call(r(3, &[4], -1.0, 1.0).astype(Dtype::Float16)).eval().unwrap();
    assert_eq!(cf.trace_count(), 3, "new dtype: retrace");
    cf.call(x.clone()).eval().unwrap();
    assert_eq!(cf.trace_count(), 3, "first signature still cached");

    // A different tree structure is a different signature too.
    let cv = compile(|v: Vec<Array>| v.iter().fold(zeros(&[], Dtype::Float32), |s, a| s + a));
    cv.call(vec![x.clone()]).eval().unwrap();
    cv.call(vec![x.clone(), x.clone()]).eval().unwrap();
    assert_eq!(cv.trace_count(), 2);
}

#[test]
fn shapeless_replays_new_shapes_without_retracing() {
    let _g = shared();
    let f = |(a, b): (Array, Array)| exp(&(&a * &b)) + 1.0 - &b;
    let cf = compile_shapeless(f);
    for (sa, sb) in [(vec![2, 3], vec![1, 3]), (vec![4, 5], vec![4, 1]), (vec![7, 1], vec![1, 6]), (vec![3, 3], vec![3, 3])] {
        let a = r(1, &sa, -1.0, 1.0).astype(Dtype::Float32);
        let b = r(2, &sb, -1.0, 1.0).astype(Dtype::Float32);
        assert_close(&format!("{sa:?} {sb:?}"), &cf.call((a.clone(), b.clone())), &f((a, b)), 2e-6);
    }
    assert_eq!(cf.trace_count(), 1, "shapeless: one trace for every shape of the same ranks");
    let a = r(1, &[5], -1.0, 1.0).astype(Dtype::Float32);
    cf.call((a.clone(), a.clone())).eval().unwrap();
    assert_eq!(cf.trace_count(), 2, "new rank: retrace");
    cf.call((a.clone(), a.astype(Dtype::Float64))).eval().unwrap();
    assert_eq!(cf.trace_count(), 3, "new dtype: retrace");

    // Unfused element-wise graphs (a single op between reductions) re-infer too.
    let g = |x: Array| sum(&(exp(&x) - &max(&x, -1isize, true)), -1isize, false);
    let cg = compile_shapeless(g);
    for s in [[2, 3], [5, 8]] {
        let x = r(9, &s, -1.0, 1.0).astype(Dtype::Float32);
        assert_close(&format!("{s:?}"), &cg.call(x.clone()), &g(x), 1e-5);
    }
    assert_eq!(cg.trace_count(), 1);
}

#[test]
fn shapeless_rejects_shape_fixing_primitives() {
    let _g = shared();
    let cf = compile_shapeless(|x: Array| reshape(&exp(&x), &[-1, 2]));
    let x = r(1, &[2, 4], -1.0, 1.0).astype(Dtype::Float32);
    cf.call(x.clone()).eval().unwrap();
    let err = cf.call(r(1, &[3, 6], -1.0, 1.0).astype(Dtype::Float32)).eval().unwrap_err();
    assert!(err.to_string().contains("shapeless") && err.to_string().contains("Reshape"), "{err}");
    // An explicit broadcast to a larger shape is baked in as well (fused or not).
    for f in [|x: Array| broadcast_to(&x, &[3, 4]) + 1.0, |x: Array| broadcast_to(&x, &[3, 4]) * 2.0 + 1.0] {
        let cf = compile_shapeless(f);
        let out = cf.call(r(1, &[4], -1.0, 1.0).astype(Dtype::Float32));
        assert_close("traced shape", &out, &f(r(1, &[4], -1.0, 1.0).astype(Dtype::Float32)), 2e-6);
        let err = cf.call(r(1, &[5], -1.0, 1.0).astype(Dtype::Float32)).eval().unwrap_err();
        assert!(err.to_string().contains("compile"), "{err}");
    }
    // Same shapes as traced: everything replays.
    assert_eq!(cf.call(x.clone()).shape(), &[4, 2]);
}

#[test]
fn simplify_passes_shrink_the_tape() {
    let _g = shared();
    // contiguous(x) is a no-op, the two exp(x) and the two `* 2.0` (constants merged) are
    // common subexpressions: 8 traced instructions, 4 after simplify, one fused node.
    let f = |x: Array| exp(&contiguous(&x)) * 2.0 + exp(&x) * 2.0;
    let cf = compile(f);
    let x = r(1, &[3, 4], -1.0, 1.0).astype(Dtype::Float32);
    assert_close("value", &cf.call(x.clone()), &f(x), 2e-6);
    let s = cf.stats().unwrap();
    assert_eq!(s.traced, 8, "{s:?}");
    assert_eq!(s.simplified, 4, "{s:?}");
    assert_eq!((s.fused, s.regions), (1, 1), "{s:?}");
    assert_eq!(cf.tape_len(), Some(1));

    // Random draws are never merged: two draws from one key stay two nodes (and equal values).
    let g = |k: Array| {
        let a = random::uniform(0.0, 1.0, &[3], Dtype::Float32, Some(&k));
        let b = random::uniform(0.0, 1.0, &[3], Dtype::Float32, Some(&k));
        (a, b)
    };
    let cg = compile(g);
    let (a, b) = cg.call(random::key(3));
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let s = cg.stats().unwrap();
    assert!(s.simplified < s.traced, "{s:?}");
}

#[test]
fn disabled_compile_is_the_plain_function() {
    let _g = SWITCH.write().unwrap_or_else(|p| p.into_inner());
    let f = |x: Array| tanh(&(&x * 3.0)) * &x + 0.5;
    let cf = compile(f);
    let x = r(1, &[5, 3], -2.0, 2.0).astype(Dtype::Float16);
    let on = cf.call(x.clone());
    set_compile_enabled(false);
    assert!(!compile_enabled());
    let off = cf.call(x.clone());
    let plain = f(x.clone());
    set_compile_enabled(true);
    assert_eq!(off.to_vec::<f32>().unwrap(), plain.to_vec::<f32>().unwrap(), "disabled: bit-identical to plain");
    assert_close("enabled", &on, &plain, tol(Dtype::Float16));
    assert_eq!(cf.trace_count(), 1, "the disabled call did not trace");
}

fn gelu_loss(x: Array) -> Array {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let y = &x * 0.5 * (tanh(&((&x + &x * &x * &x * 0.044715) * c)) + 1.0);
    sum(&(y * &x), None, false)
}

#[test]
fn grad_through_and_of_compiled_functions() {
    let _g = shared();
    for dt in [Dtype::Float64, Dtype::Float32] {
        let x = r(11, &[4, 5], -2.0, 2.0).astype(dt);
        let want = grad(gelu_loss)(x.clone());
        let cf = compile(gelu_loss);
        let through = grad(cf.as_fn())(x.clone());
        assert_close(&format!("grad(compile(f)) {dt}"), &through, &want, tol(dt) * 10.0);
        let cg = compile(grad(gelu_loss));
        let of = cg.call(x.clone());
        assert_close(&format!("compile(grad(f)) {dt}"), &of, &want, tol(dt) * 10.0);
        assert!(cg.stats().unwrap().regions >= 1, "the backward graph fused");
        // Replayed on new values without a retrace.
        let x2 = r(12, &[4, 5], -2.0, 2.0).astype(dt);
        assert_close(&format!("compile(grad(f)) new values {dt}"), &cg.call(x2.clone()), &grad(gelu_loss)(x2), tol(dt) * 10.0);
        assert_eq!(cg.trace_count(), 1);
        // Second order through the fused node, and forward mode.
        let gg = grad(move |x: Array| sum(&grad(cf.as_fn())(x), None, false))(x.clone());
        let gg0 = grad(|x: Array| sum(&grad(gelu_loss)(x), None, false))(x.clone());
        assert_close(&format!("grad(grad(compile(f))) {dt}"), &gg, &gg0, tol(dt) * 100.0);
        let ce = compile(|x: Array| exp(&x) * &x + 1.0);
        let t = r(13, &[4, 5], -1.0, 1.0).astype(dt);
        let (_, jt) = jvp(ce.as_fn(), &x, &t).unwrap();
        let (_, jt0) = jvp(|x: Array| exp(&x) * &x + 1.0, &x, &t).unwrap();
        assert_close(&format!("jvp(compile(f)) {dt}"), &jt, &jt0, tol(dt) * 10.0);
    }
    // Broadcast inputs of a fused node get cotangents of their own shapes.
    let f = |(a, b): (Array, Array)| sum(&(exp(&(&a * &b)) + &b), None, false);
    let cf = compile(f);
    let (a, b) = (r(1, &[3, 4], -1.0, 1.0), r(2, &[4], -1.0, 1.0));
    let (ga, gb) = grad(cf.as_fn())((a.clone(), b.clone()));
    let (ga0, gb0) = grad(f)((a, b));
    assert_close("broadcast grad a", &ga, &ga0, 1e-12);
    assert_close("broadcast grad b", &gb, &gb0, 1e-12);
}

#[test]
fn state_threads_through_calls() {
    let _g = shared();
    // An RNG key and a step counter in, the next key and counter out.
    let step = |(key, count, x): (Array, Array, Array)| {
        let ks = random::split(&key, 2);
        let next = reshape(&slice(&ks, &[SliceSpec::new(Some(0), Some(1), 1)]), &[2]);
        let sub = reshape(&slice(&ks, &[SliceSpec::new(Some(1), Some(2), 1)]), &[2]);
        let noise = random::normal(x.shape(), Dtype::Float32, 0.0, 1.0, Some(&sub));
        let y = &x * &count + noise * 0.1;
        (next, count + 1.0, y)
    };
    let cf = compile(step);
    let x = r(1, &[4], -1.0, 1.0).astype(Dtype::Float32);
    let (mut k, mut c) = (random::key(0), Array::scalar(1.0f32));
    let (mut k0, mut c0) = (k.clone(), c.clone());
    let mut prev: Option<Vec<f32>> = None;
    for i in 0..4 {
        let (nk, nc, y) = cf.call((k, c, x.clone()));
        let (nk0, nc0, y0) = step((k0, c0, x.clone()));
        assert_close(&format!("step {i}"), &y, &y0, 1e-6);
        assert_eq!(nk.to_vec::<u32>().unwrap(), nk0.to_vec::<u32>().unwrap());
        assert_eq!(nc.item::<f32>().unwrap(), (i + 2) as f32);
        let v = y.to_vec::<f32>().unwrap();
        assert_ne!(prev.as_ref(), Some(&v), "fresh noise every step");
        prev = Some(v);
        (k, c, k0, c0) = (nk, nc, nk0, nc0);
    }
    assert_eq!(cf.trace_count(), 1);
}

#[test]
fn captured_constants_custom_functions_and_errors() {
    let _g = shared();
    // A closed-over array is a constant of the trace.
    let w = r(5, &[3], 0.5, 1.5).astype(Dtype::Float32);
    let wc = w.clone();
    let cf = compile(move |x: Array| exp(&x) * &wc + 1.0);
    let x = r(6, &[2, 3], -1.0, 1.0).astype(Dtype::Float32);
    assert_close("captured", &cf.call(x.clone()), &(exp(&x) * &w + 1.0), 2e-6);
    // Checkpointed (custom) nodes recompute their forward on replay.
    let ck = checkpoint(|v: &[Array]| Ok(vec![sin(&v[0]) * 2.0]));
    let cc = compile(move |x: Array| ck(&[x]).map(|v| v[0].clone()).unwrap_or_else(Array::error) + 1.0);
    for seed in [1, 2] {
        let x = r(seed, &[3], -1.0, 1.0);
        assert_close("checkpoint replay", &cc.call(x.clone()), &(sin(&x) * 2.0 + 1.0), 1e-12);
    }
    assert_eq!(cc.trace_count(), 1);
    // Errors travel in the arrays: a failing trace, and inputs that carry errors.
    let bad = compile(|(a, b): (Array, Array)| &a + &b);
    let e = bad.call((zeros(&[2], Dtype::Float32), zeros(&[3], Dtype::Float32)));
    assert!(e.check().is_err());
    let e = bad.call((Array::error(Error::invalid("boom")), zeros(&[3], Dtype::Float32)));
    assert!(e.check().unwrap_err().to_string().contains("boom"));
}

#[test]
fn vmap_of_compiled_functions_equals_a_loop() {
    let _g = shared();
    // `b` is shared across the batch (unbatched), so the fused node sees a broadcast input.
    let f = |(a, b): (Array, Array)| tanh(&(&a * &b)) * &a + exp(&b);
    let cf = compile(f);
    let (a, b) = (r(21, &[5, 3, 4], -1.0, 1.0), r(22, &[4], -1.0, 1.0));
    let got = vmap(cf.as_fn(), &[Some(1), None], &[-1])((a.clone(), b.clone()));
    assert_eq!(got.shape(), &[5, 4, 3]);
    for k in 0..3 {
        let ak = take(&a, &Array::scalar(k as i32), Some(1));
        let want = f((ak, b.clone()));
        let gk = take(&got, &Array::scalar(k as i32), Some(2));
        assert_close(&format!("vmap(compile(f)) batch {k}"), &gk, &want, 1e-6);
    }
}

/// Binary ops with a scalar operand are folded into the instruction that computes their other
/// operand (as `(v * m) + a`, two roundings as before) or run as one-stream steps: the compiled
/// results equal the plain ones bit for bit, signed zeros, infinities and NaNs included, where
/// a value has several readers, is an output, or takes steps that cannot fold.
#[test]
fn scalar_steps_fold_exactly() {
    let _g = shared();
    let special = [0.0f64, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-30, -1e30];
    for dt in [Dtype::Float32, Dtype::Float64] {
        let rand = r(7, &[4093], -3.0, 3.0).astype(dt);
        let x = concatenate(&[rand, Array::from_slice(&special, &[special.len()]).astype(dt)], 0);
        type F = fn(Array) -> Vec<Array>;
        let cases: Vec<(&str, F)> = vec![
            ("x*x*3 + 1", |x| vec![&(&x * &x) * 3.0 + 1.0]),
            ("2 - x*x", |x| vec![subtract(&Array::scalar(2.0f32), &(&x * &x))]),
            ("(x + 1) * 3 - 0.25", |x| vec![&(&x + 1.0) * 3.0 - 0.25]),
            ("x - 0 and 0 - x", |x| vec![&(&x * 1.5) - 0.0, subtract(&Array::scalar(0.0f32), &(&x * 1.5))]),
            ("two readers", |x| {
                let y = &x * &x;
                vec![&y * 2.0, &y + 1.0]
            }),
            ("output read again", |x| {
                let y = &(&x * &x) * 2.0;
                vec![y.clone(), &y + &x]
            }),
            ("scalar first", |x| {
                vec![&(&Array::scalar(0.5f32) * &(&x - &x)) + &x, multiply(&Array::scalar(3.0f32), &maximum(&x, &Array::scalar(0.0f32)))]
            }),
        ];
        for (name, f) in cases {
            let want = f(x.clone());
            let got = compile(f).call(x.clone());
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.dtype(), w.dtype(), "{name} {dt:?} output {k}");
                let (g, w) = (g.astype(Dtype::Float64).to_vec::<f64>().unwrap(), w.astype(Dtype::Float64).to_vec::<f64>().unwrap());
                for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{name} {dt:?} output {k} element {i}: compiled {a} plain {b}"
                    );
                }
            }
        }
    }
}
