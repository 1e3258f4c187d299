//! mx.fast: fixtures from scripts/gen_fast_fixtures.py (MLX 0.32.4's `mx.fast.*` on random
//! inputs), the fused kernels against the op-built fallback (which float64 inputs take) on
//! larger shapes that reach every kernel path, float64 finite-difference gradient checks of
//! the fallback and of the fused node, vmap, and the errors for invalid arguments.

mod common;

use common::gradcheck::{self, Rng};
use oxmx_core::fast::{self, AttentionMask, RopeOffset};
use oxmx_core::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fast.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn cases(name: &str) -> &'static Vec<Value> {
    fixtures()[name].as_array().unwrap()
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// An array from a fixture `{"shape", "dtype", "data"}` (float data stored as float32 values).
fn arr(v: &Value) -> Array {
    let shape = shape_of(v);
    let data = v["data"].as_array().unwrap();
    match v["dtype"].as_str().unwrap() {
        "bool" => Array::from_slice(&data.iter().map(|x| x.as_bool().unwrap()).collect::<Vec<_>>(), &shape),
        "int32" => Array::from_slice(&data.iter().map(|x| x.as_i64().unwrap() as i32).collect::<Vec<_>>(), &shape),
        dt => {
            let a = Array::from_slice(&data.iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>(), &shape);
            a.astype(Dtype::from_name(dt).unwrap())
        }
    }
}

fn opt(v: &Value) -> Option<Array> {
    if v.is_null() {
        None
    } else {
        Some(arr(v))
    }
}

fn tol(dt: Dtype) -> (f64, f64) {
    match dt {
        Dtype::Float32 => (2e-5, 2e-4),
        Dtype::Float16 => (4e-3, 1e-2),
        _ => (3e-2, 3e-2),
    }
}

/// Asserts `got` matches `want` element-wise within the tolerance of `dt`, with its shape and dtype.
fn assert_close(what: &str, got: &Array, want: &Array, dt: Dtype) {
    let (atol, rtol) = tol(dt);
    assert_close_tol(what, got, want, atol, rtol);
}

fn assert_close_tol(what: &str, got: &Array, want: &Array, atol: f64, rtol: f64) {
    got.check().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let g = got.astype(Dtype::Float64).to_vec::<f64>().unwrap();
    let w = want.astype(Dtype::Float64).to_vec::<f64>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= atol + rtol * b.abs(), "{what}: element {i}: got {a}, expected {b}");
    }
}

fn f64_of(a: &Array) -> Array {
    a.astype(Dtype::Float64)
}

#[test]
fn rms_norm_matches_mlx() {
    for (n, c) in cases("rms_norm").iter().enumerate() {
        let (x, w) = (arr(&c["x"]), opt(&c["weight"]));
        let eps = c["eps"].as_f64().unwrap() as f32;
        let want = arr(&c["out"]);
        let y = fast::rms_norm(&x, w.as_ref(), eps);
        assert_eq!(y.dtype(), x.dtype());
        assert_close(&format!("rms_norm case {n} {}", x.dtype()), &y, &want, x.dtype());
        // The fallback (float64 inputs) agrees too.
        let y64 = fast::rms_norm(&f64_of(&x), w.as_ref().map(f64_of).as_ref(), eps);
        assert_eq!(y64.dtype(), Dtype::Float64);
        assert_close(&format!("rms_norm fallback case {n}"), &y64, &want, x.dtype());
    }
}

#[test]
fn layer_norm_matches_mlx() {
    for (n, c) in cases("layer_norm").iter().enumerate() {
        let (x, w, b) = (arr(&c["x"]), opt(&c["weight"]), opt(&c["bias"]));
        let eps = c["eps"].as_f64().unwrap() as f32;
        let want = arr(&c["out"]);
        let y = fast::layer_norm(&x, w.as_ref(), b.as_ref(), eps);
        assert_eq!(y.dtype(), x.dtype());
        assert_close(&format!("layer_norm case {n} {}", x.dtype()), &y, &want, x.dtype());
        let y64 = fast::layer_norm(&f64_of(&x), w.as_ref().map(f64_of).as_ref(), b.as_ref().map(f64_of).as_ref(), eps);
        assert_close(&format!("layer_norm fallback case {n}"), &y64, &want, x.dtype());
    }
}

fn rope_offset(v: &Value) -> RopeOffset {
    if v.is_object() {
        RopeOffset::Array(arr(v))
    } else {
        RopeOffset::Int(v.as_i64().unwrap())
    }
}

#[test]
fn rope_matches_mlx() {
    for (n, c) in cases("rope").iter().enumerate() {
        let x = arr(&c["x"]);
        let dims = c["dims"].as_u64().unwrap() as usize;
        let trad = c["traditional"].as_bool().unwrap();
        let base = c["base"].as_f64().map(|b| b as f32);
        let scale = c["scale"].as_f64().unwrap() as f32;
        let freqs = opt(&c["freqs"]);
        let want = arr(&c["out"]);
        let what = format!("rope case {n} {} dims {dims} traditional {trad} offset {}", x.dtype(), c["offset"]);
        let y = fast::rope(&x, dims, trad, base, scale, rope_offset(&c["offset"]), freqs.as_ref());
        assert_eq!(y.dtype(), x.dtype());
        assert_close(&what, &y, &want, x.dtype());
        let y64 = fast::rope(&f64_of(&x), dims, trad, base, scale, rope_offset(&c["offset"]), freqs.as_ref());
        assert_close(&format!("{what} (fallback)"), &y64, &want, x.dtype());
    }
}

fn mask_of(v: &Value) -> AttentionMask {
    match v {
        Value::Null => AttentionMask::None,
        Value::String(s) => AttentionMask::from(s.as_str()),
        _ => AttentionMask::Array(arr(v)),
    }
}

#[test]
fn sdpa_matches_mlx() {
    for (n, c) in cases("sdpa").iter().enumerate() {
        let (q, k, v) = (arr(&c["q"]), arr(&c["k"]), arr(&c["v"]));
        let scale = c["scale"].as_f64().unwrap() as f32;
        let sinks = opt(&c["sinks"]);
        let want = arr(&c["out"]);
        let what = format!("sdpa case {n} {} q {:?} k {:?} mask {}", q.dtype(), q.shape(), k.shape(), c["mask"].is_object());
        let y = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask_of(&c["mask"]), sinks.as_ref());
        assert_eq!(y.dtype(), q.dtype());
        assert_close(&what, &y, &want, q.dtype());
        let mask64 = match mask_of(&c["mask"]) {
            AttentionMask::Array(m) if m.dtype() != Dtype::Bool => AttentionMask::Array(f64_of(&m)),
            m => m,
        };
        let y64 =
            fast::scaled_dot_product_attention(&f64_of(&q), &f64_of(&k), &f64_of(&v), scale, mask64, sinks.as_ref().map(f64_of).as_ref());
        assert_close(&format!("{what} (fallback)"), &y64, &want, q.dtype());
    }
}

/// Random inputs in float64 (the fallback's oracle) and the same values in `dt` for the kernel.
fn rand(rng: &mut Rng, shape: &[usize], dt: Dtype) -> (Array, Array) {
    let a = rng.uniform(shape, -1.0, 1.0).astype(dt);
    (a.astype(Dtype::Float64), a)
}

#[test]
fn sdpa_kernel_matches_fallback_on_large_shapes() {
    let mut rng = Rng::new(5);
    // (B, Hq, Hkv, qL, kL, D, mask): decode over a long cache (split-K), GQA/MQA prefill with
    // several row and key tiles, causal with qL < kL, broadcast masks, sinks.
    let cases: Vec<(usize, usize, usize, usize, usize, usize, &str, bool)> = vec![
        (1, 8, 2, 1, 3000, 64, "none", false),
        (1, 8, 2, 1, 3000, 64, "causal", true),
        (2, 4, 1, 2, 1500, 32, "bool", false),
        (1, 4, 2, 130, 130, 32, "causal", false),
        (1, 2, 2, 70, 200, 32, "causal", true),
        (2, 6, 3, 37, 90, 16, "additive", true),
        (1, 2, 1, 100, 100, 16, "bool", false),
    ];
    for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
        for &(b, hq, hkv, ql, kl, d, mk, with_sinks) in &cases {
            let (q64, q) = rand(&mut rng, &[b, hq, ql, d], dt);
            let (k64, k) = rand(&mut rng, &[b, hkv, kl, d], dt);
            let (v64, v) = rand(&mut rng, &[b, hkv, kl, d], dt);
            let (s64, s) = rand(&mut rng, &[hq], dt);
            let (mask, mask64) = match mk {
                "causal" => (AttentionMask::Causal, AttentionMask::Causal),
                "bool" => {
                    // Broadcast over heads; the first key always kept so no row is empty.
                    let r = rng.uniform(&[b, 1, ql, kl], 0.0, 1.0);
                    let m = ops::logical_or(&ops::greater(&r, 0.5), &ops::equal(&ops::arange_n(kl, None), 0));
                    (AttentionMask::Array(m.clone()), AttentionMask::Array(m))
                }
                "additive" => {
                    let (m64, m) = rand(&mut rng, &[ql, kl], dt);
                    (AttentionMask::Array(m), AttentionMask::Array(m64))
                }
                _ => (AttentionMask::None, AttentionMask::None),
            };
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("{dt} b {b} hq {hq} hkv {hkv} ql {ql} kl {kl} {mk} sinks {with_sinks}");
            let y = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask, with_sinks.then_some(&s));
            let want = fast::scaled_dot_product_attention(&q64, &k64, &v64, scale, mask64, with_sinks.then_some(&s64));
            assert_close(&what, &y, &want, dt);
        }
    }
}

#[test]
fn sdpa_kernel_reads_cache_views_and_other_value_widths() {
    let mut rng = Rng::new(13);
    // (Hq, Hkv, qL, kL used of a 700-row cache, D, Dv): value heads narrower or wider than key
    // heads, row groups of 1 to 8 (a group of 4 plus a remainder), a head size the vector kernel
    // does not take (40), keys and values a prefix view of a preallocated cache.
    let cases = [(8, 1, 1, 600, 64, 48), (5, 1, 1, 333, 32, 80), (6, 2, 1, 513, 128, 128), (3, 3, 2, 700, 40, 40), (4, 2, 4, 650, 16, 16)];
    for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
        for &(hq, hkv, ql, kl, d, dv) in &cases {
            for causal in [false, true] {
                let (q64, q) = rand(&mut rng, &[1, hq, ql, d], dt);
                let (k64, k) = rand(&mut rng, &[1, hkv, 700, d], dt);
                let (v64, v) = rand(&mut rng, &[1, hkv, 700, dv], dt);
                let view = |a: &Array, w: usize| ops::slice_range(a, &[0, 0, 0, 0], &[1, hkv as isize, kl as isize, w as isize]);
                let (k, v, k64, v64) = (view(&k, d), view(&v, dv), view(&k64, d), view(&v64, dv));
                let mask = || if causal { AttentionMask::Causal } else { AttentionMask::None };
                let scale = 1.0 / (d as f32).sqrt();
                let what = format!("{dt} hq {hq} hkv {hkv} ql {ql} kl {kl} d {d} dv {dv} causal {causal}");
                let y = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask(), None);
                let want = fast::scaled_dot_product_attention(&q64, &k64, &v64, scale, mask(), None);
                assert_eq!(y.shape(), &[1, hq, ql, dv], "{what}");
                assert_close(&what, &y, &want, dt);
            }
        }
    }
}

#[test]
fn norms_and_rope_kernels_match_fallback_on_large_shapes() {
    let mut rng = Rng::new(9);
    for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
        let (x64, x) = rand(&mut rng, &[3, 70, 1000], dt);
        let (w64, w) = rand(&mut rng, &[1000], dt);
        let (b64, b) = rand(&mut rng, &[1000], dt);
        assert_close(&format!("rms_norm {dt}"), &fast::rms_norm(&x, Some(&w), 1e-6), &fast::rms_norm(&x64, Some(&w64), 1e-6), dt);
        assert_close(
            &format!("layer_norm {dt}"),
            &fast::layer_norm(&x, Some(&w), Some(&b), 1e-5),
            &fast::layer_norm(&x64, Some(&w64), Some(&b64), 1e-5),
            dt,
        );
        let (x64, x) = rand(&mut rng, &[3, 8, 50, 128], dt);
        let off = Array::from_slice(&[0i32, 17, 400], &[3]);
        // Positions reach 449: an f32 angle `pos * inv_freq` is off by up to ~pos * 2^-24 rad (MLX
        // computes it in f32 too), so the f64 reference needs that much more absolute slack.
        let (atol, rtol) = tol(dt);
        let atol = atol.max(449.0 * 2f64.powi(-24) * 4.0);
        for (dims, trad) in [(128, false), (64, true), (96, false)] {
            assert_close_tol(
                &format!("rope {dt} dims {dims} traditional {trad}"),
                &fast::rope(&x, dims, trad, Some(10000.0), 1.0, &off, None),
                &fast::rope(&x64, dims, trad, Some(10000.0), 1.0, &off, None),
                atol,
                rtol,
            );
        }
    }
    // A strided (transposed) input goes through the kernels too.
    let (x64, x) = rand(&mut rng, &[2, 16, 4, 32], Dtype::Float32);
    let xt = ops::swapaxes(&x, 1, 2);
    let xt64 = ops::swapaxes(&x64, 1, 2);
    assert_close(
        "rope on a transposed view",
        &fast::rope(&xt, 32, false, Some(10000.0), 1.0, 3, None),
        &fast::rope(&xt64, 32, false, Some(10000.0), 1.0, 3, None),
        Dtype::Float32,
    );
    assert_close("rms_norm on a transposed view", &fast::rms_norm(&xt, None, 1e-5), &fast::rms_norm(&xt64, None, 1e-5), Dtype::Float32);
}

/// Gradient checks: float64 (the fallback path) and float32 inside (the fused node, whose rule
/// differentiates the fallback), both against central differences.
fn check_both(name: &str, f: impl Fn(&[Array]) -> Array + Clone + 'static, xs: &[Array]) {
    gradcheck::check(name, &f, xs);
    let g = move |v: &[Array]| {
        let v32: Vec<Array> = v.iter().map(|a| a.astype(Dtype::Float32)).collect();
        f(&v32)
    };
    gradcheck::check_f32(&format!("{name} (fused f32 node)"), &g, xs);
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(3);
    let x = rng.uniform(&[2, 3, 8], -1.0, 1.0);
    let w = rng.uniform(&[8], 0.5, 1.5);
    let b = rng.uniform(&[8], -1.0, 1.0);
    check_both("rms_norm", |v: &[Array]| fast::rms_norm(&v[0], Some(&v[1]), 1e-5), &[x.clone(), w.clone()]);
    check_both("rms_norm no weight", |v: &[Array]| fast::rms_norm(&v[0], None, 1e-5), std::slice::from_ref(&x));
    check_both("layer_norm", |v: &[Array]| fast::layer_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-5), &[x.clone(), w, b]);

    let xr = rng.uniform(&[2, 2, 3, 8], -1.0, 1.0);
    check_both("rope", |v: &[Array]| fast::rope(&v[0], 8, false, Some(10000.0), 1.0, 2, None), std::slice::from_ref(&xr));
    let off = Array::from_slice(&[1i32, 5], &[2]);
    check_both(
        "rope traditional array offset",
        move |v: &[Array]| fast::rope(&v[0], 6, true, Some(100.0), 0.5, &off, None),
        std::slice::from_ref(&xr),
    );
    let fr = Array::from_slice(&[1.0f32, 3.0, 7.0, 11.0], &[4]);
    check_both("rope freqs", move |v: &[Array]| fast::rope(&v[0], 8, false, None, 1.0, 0, Some(&fr)), std::slice::from_ref(&xr));

    let q = rng.uniform(&[1, 4, 3, 8], -1.0, 1.0);
    let k = rng.uniform(&[1, 2, 5, 8], -1.0, 1.0);
    let v = rng.uniform(&[1, 2, 5, 8], -1.0, 1.0);
    let s = rng.uniform(&[4], -1.0, 1.0);
    let m = rng.uniform(&[3, 5], -1.0, 1.0);
    check_both(
        "sdpa causal gqa",
        |a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.35, "causal", None),
        &[q.clone(), k.clone(), v.clone()],
    );
    check_both(
        "sdpa additive mask and sinks",
        |a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.35, &a[3], Some(&a[4])),
        &[q.clone(), k.clone(), v.clone(), m, s],
    );
    let bm = ops::greater(&rng.uniform(&[1, 1, 3, 5], 0.0, 1.0), 0.3);
    let bm = ops::logical_or(&bm, &ops::equal(&ops::arange_n(5, None), 4));
    check_both("sdpa bool mask", move |a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.35, &bm, None), &[q, k, v]);
}

#[test]
fn vmap_matches_a_loop() {
    let mut rng = Rng::new(11);
    let x = rng.uniform(&[3, 2, 4, 8], -1.0, 1.0).astype(Dtype::Float32);
    let w = rng.uniform(&[8], -1.0, 1.0).astype(Dtype::Float32);
    let q = rng.uniform(&[3, 1, 4, 2, 8], -1.0, 1.0).astype(Dtype::Float32);
    let k = rng.uniform(&[3, 1, 2, 6, 8], -1.0, 1.0).astype(Dtype::Float32);
    let v = rng.uniform(&[1, 2, 6, 8], -1.0, 1.0).astype(Dtype::Float32);
    let w2 = w.clone();
    let f = oxmx_core::vmap(move |a: Vec<Array>| vec![fast::rms_norm(&a[0], Some(&w2), 1e-5)], &[Some(0)], &[0]);
    let got = f(vec![x.clone()]);
    let g = oxmx_core::vmap(|a: Vec<Array>| vec![fast::rope(&a[0], 8, false, Some(10000.0), 1.0, 3, None)], &[Some(0)], &[0]);
    let got_r = g(vec![x.clone()]);
    let v2 = v.clone();
    let h = oxmx_core::vmap(
        move |a: Vec<Array>| vec![fast::scaled_dot_product_attention(&a[0], &a[1], &v2, 0.3, "causal", None)],
        &[Some(0), Some(0)],
        &[0],
    );
    let got_a = h(vec![q.clone(), k.clone()]);
    for i in 0..3 {
        let xi = ops::index(&x, &[ops::Idx::from(i as isize)]);
        let ln = fast::rms_norm(&xi, Some(&w), 1e-5);
        assert_close("vmap rms_norm", &ops::index(&got[0], &[ops::Idx::from(i as isize)]), &ln, Dtype::Float32);
        let r = fast::rope(&xi, 8, false, Some(10000.0), 1.0, 3, None);
        assert_close("vmap rope", &ops::index(&got_r[0], &[ops::Idx::from(i as isize)]), &r, Dtype::Float32);
        let qi = ops::index(&q, &[ops::Idx::from(i as isize)]);
        let ki = ops::index(&k, &[ops::Idx::from(i as isize)]);
        let a = fast::scaled_dot_product_attention(&qi, &ki, &v, 0.3, "causal", None);
        assert_close("vmap sdpa", &ops::index(&got_a[0], &[ops::Idx::from(i as isize)]), &a, Dtype::Float32);
    }
}

#[test]
fn compiled_graphs_keep_the_fused_ops() {
    let mut rng = Rng::new(13);
    let x = rng.uniform(&[2, 4, 16], -1.0, 1.0).astype(Dtype::Float32);
    let f = |a: Vec<Array>| vec![ops::multiply(&fast::rms_norm(&a[0], None, 1e-5), 2.0f32)];
    let cf = oxmx_core::compile(f);
    let got = cf.call(vec![x.clone()]);
    assert_close("compiled rms_norm", &got[0], &f(vec![x])[0], Dtype::Float32);
}

fn err(a: &Array) -> String {
    let e = a.check().expect_err("expected an error");
    e.to_string()
}

#[test]
fn invalid_arguments_give_clear_errors() {
    let x = ops::zeros(&[2, 3, 8], Dtype::Float32);
    assert!(err(&fast::rms_norm(&x, Some(&ops::zeros(&[7], Dtype::Float32)), 1e-5)).contains("weight must have shape [8]"));
    assert!(err(&fast::layer_norm(&x, None, Some(&ops::zeros(&[2, 8], Dtype::Float32)), 1e-5)).contains("bias must have shape [8]"));
    assert!(err(&fast::rms_norm(&ops::zeros(&[2, 8], Dtype::Int32), None, 1e-5)).contains("floating point"));
    assert!(err(&fast::rope(&ops::zeros(&[3, 8], Dtype::Float32), 8, false, Some(1e4), 1.0, 0, None)).contains("at least 3 dimensions"));
    assert!(err(&fast::rope(&x, 7, false, Some(1e4), 1.0, 0, None)).contains("dims (7)"));
    assert!(err(&fast::rope(&x, 10, false, Some(1e4), 1.0, 0, None)).contains("dims (10)"));
    assert!(err(&fast::rope(&x, 8, false, None, 1.0, 0, None)).contains("Exactly one of"));
    let fr = ops::ones(&[3], Dtype::Float32);
    assert!(err(&fast::rope(&x, 8, false, None, 1.0, 0, Some(&fr))).contains("freqs must have shape [4]"));
    assert!(err(&fast::rope(&x, 8, false, Some(1e4), 1.0, &ops::zeros(&[3], Dtype::Int32), None)).contains("vector of 2 offsets"));
    assert!(err(&fast::rope(&x, 8, false, Some(1e4), 1.0, &ops::zeros(&[2], Dtype::Float32), None)).contains("integer"));

    let q = ops::zeros(&[1, 4, 3, 8], Dtype::Float32);
    let k = ops::zeros(&[1, 2, 5, 8], Dtype::Float32);
    let v = ops::zeros(&[1, 2, 5, 8], Dtype::Float32);
    let sdpa =
        |q: &Array, k: &Array, v: &Array, m: AttentionMask, s: Option<&Array>| fast::scaled_dot_product_attention(q, k, v, 1.0, m, s);
    assert!(err(&sdpa(&q, &ops::zeros(&[1, 2, 5, 6], Dtype::Float32), &v, AttentionMask::None, None)).contains("head dimensions"));
    assert!(err(&sdpa(
        &q,
        &ops::zeros(&[1, 3, 5, 8], Dtype::Float32),
        &ops::zeros(&[1, 3, 5, 8], Dtype::Float32),
        AttentionMask::None,
        None
    ))
    .contains("multiple of the number of key/value heads"));
    assert!(err(&sdpa(&q, &k, &ops::zeros(&[1, 2, 4, 8], Dtype::Float32), AttentionMask::None, None)).contains("same length"));
    assert!(err(&sdpa(&ops::zeros(&[4, 3, 8], Dtype::Float32), &k, &v, AttentionMask::None, None)).contains("4 dimensions"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::Array(ops::zeros(&[3, 4], Dtype::Float32)), None)).contains("cannot be broadcast"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::Array(ops::zeros(&[1, 1, 1, 3, 5], Dtype::Float32)), None)).contains("at most 4"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::from("upper"), None)).contains("causal"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::Array(ops::zeros(&[3, 5], Dtype::Float64)), None)).contains("does not promote"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::None, Some(&ops::zeros(&[2], Dtype::Float32)))).contains("sinks must have shape [4]"));
    assert!(err(&sdpa(&q, &k, &v, AttentionMask::None, Some(&ops::zeros(&[4], Dtype::Float64)))).contains("sinks"));
}
