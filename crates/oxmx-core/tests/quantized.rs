//! Quantization against MLX 0.32.4 (fixtures from scripts/gen_quant_fixtures.py): packed
//! weights, scales and biases bit-identical to `mx.quantize`, `dequantize` bit-identical to
//! `mx.dequantize`, products within float tolerance of `mx.quantized_matmul` / `mx.gather_qmm`;
//! validation errors; gradient, jvp and vmap of `quantized_matmul`.

use oxmx_core::fast;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{grad_argnums, jvp, vmap};
use oxmx_core::Scalar;
use std::collections::BTreeMap;

fn fixtures() -> (BTreeMap<String, Array>, Vec<serde_json::Value>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant.safetensors");
    let (arrays, meta) = oxmx_core::io::load_safetensors(path).expect("fixture loads");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&meta["cases"]).expect("cases json");
    (arrays.into_iter().collect(), cases)
}

/// Raw bits of an array (bit-identity check, NaN-safe).
fn bits(a: &Array) -> Vec<u64> {
    match a.dtype() {
        Dtype::Uint32 => a.to_vec::<u32>().unwrap().into_iter().map(|v| v as u64).collect(),
        Dtype::Uint8 => a.to_vec::<u8>().unwrap().into_iter().map(|v| v as u64).collect(),
        Dtype::Float32 => a.to_vec::<f32>().unwrap().into_iter().map(|v| v.to_bits() as u64).collect(),
        Dtype::Float16 => a.to_vec::<half::f16>().unwrap().into_iter().map(|v| v.to_bits() as u64).collect(),
        Dtype::Bfloat16 => a.to_vec::<half::bf16>().unwrap().into_iter().map(|v| v.to_bits() as u64).collect(),
        d => panic!("unexpected dtype {d}"),
    }
}

fn same_bits(name: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let (g, w) = (bits(got), bits(want));
    let bad: Vec<usize> = (0..g.len()).filter(|&i| g[i] != w[i]).collect();
    assert!(
        bad.is_empty(),
        "{name}: {} of {} differ, first at {} (got {:#x}, want {:#x})",
        bad.len(),
        g.len(),
        bad[0],
        g[bad[0]],
        w[bad[0]]
    );
}

fn close(name: &str, got: &Array, want: &Array, tol: f32) {
    let scale = want.astype(Dtype::Float32).to_vec::<f32>().unwrap().iter().fold(1f32, |m, v| m.max(v.abs()));
    close_scaled(name, got, want, tol, scale);
}

/// A dot product's rounding error scales with `Σ|x||w|`, not with the result: MLX rounds each
/// dequantized weight to the half dtype before its product, so groups with a large bias that
/// cancels (`s*q ≈ -b`) differ from our f32 `s*q + b` by up to a half-precision ulp of `|s*q|`.
fn dot_bound(x: &Array, w: &Array) -> f32 {
    let a = |t: &Array| abs(&t.astype(Dtype::Float32));
    max(&matmul(&a(x), &a(w)), None, false).item::<f32>().unwrap().max(1.0)
}

fn close_scaled(name: &str, got: &Array, want: &Array, tol: f32, scale: f32) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let g = got.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    let w = want.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{name}: element {i}: got {a}, want {b} (scale {scale})");
    }
}

fn tol(dt: &str) -> f32 {
    match dt {
        "float32" => 1e-5,
        "float16" => 4e-3,
        _ => 3e-2,
    }
}

#[test]
fn quantize_dequantize_bit_identical_to_mlx() {
    let (fx, cases) = fixtures();
    let mut n = 0;
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        let mode = c["mode"].as_str().unwrap();
        let (gs, b) = (c["group_size"].as_u64().unwrap() as usize, c["bits"].as_u64().unwrap() as usize);
        let name = format!("{id} {mode} g{gs} b{b} {} {:?}", c["dtype"], c["shape"]);
        let w = &fx[&format!("{id}.w")];
        let (wq, s, bi) = quantize(w, Some(gs), Some(b), mode);
        same_bits(&format!("{name} wq"), &wq, &fx[&format!("{id}.wq")]);
        same_bits(&format!("{name} scales"), &s, &fx[&format!("{id}.scales")]);
        if mode == "affine" {
            same_bits(&format!("{name} biases"), bi.as_ref().unwrap(), &fx[&format!("{id}.biases")]);
        } else {
            assert!(bi.is_none());
        }
        // Dequantize MLX's own packed data (independent of our quantize).
        let fb = fx.get(&format!("{id}.biases"));
        let d = dequantize(&fx[&format!("{id}.wq")], &fx[&format!("{id}.scales")], fb, Some(gs), Some(b), mode, None);
        same_bits(&format!("{name} dequantize"), &d, &fx[&format!("{id}.deq")]);
        n += 1;
    }
    assert!(n >= 120, "only {n} cases");
}

#[test]
fn quantized_matmul_matches_mlx() {
    let (fx, cases) = fixtures();
    let mut n = 0;
    for c in &cases {
        let id = c["id"].as_str().unwrap();
        let Some(x) = fx.get(&format!("{id}.x")) else { continue };
        let mode = c["mode"].as_str().unwrap();
        let dt = c["dtype"].as_str().unwrap();
        let (gs, b) = (c["group_size"].as_u64().unwrap() as usize, c["bits"].as_u64().unwrap() as usize);
        let (wq, s, bi) = (&fx[&format!("{id}.wq")], &fx[&format!("{id}.scales")], fx.get(&format!("{id}.biases")));
        let y = quantized_matmul(x, wq, s, bi, true, Some(gs), Some(b), mode);
        let deq = &fx[&format!("{id}.deq")];
        let bound = dot_bound(x, &transpose(deq, &[1, 0]));
        close_scaled(&format!("{id} {mode} g{gs} b{b} {dt} transpose"), &y, &fx[&format!("{id}.y")], tol(dt), bound);
        if let Some(xt) = fx.get(&format!("{id}.xt")) {
            let y = quantized_matmul(xt, wq, s, bi, false, Some(gs), Some(b), mode);
            let bound = dot_bound(xt, deq);
            close_scaled(&format!("{id} {mode} g{gs} b{b} {dt} no transpose"), &y, &fx[&format!("{id}.yt")], tol(dt), bound);
        }
        n += 1;
    }
    assert!(n >= 60, "only {n} cases");
}

#[test]
fn many_rows_path_matches_dense() {
    // 40 rows take the tiled gemm path; compare with x @ dequantize(w).T in f32.
    for (bits, gs, mode) in [(4, 64, "affine"), (8, 32, "affine"), (3, 128, "affine"), (4, 32, "mxfp4"), (4, 16, "nvfp4")] {
        let w = rn(&[72, 2048]);
        let x = rn(&[40, 2048]);
        let (wq, s, b) = quantize(&w, Some(gs), Some(bits), mode);
        let dq = dequantize(&wq, &s, b.as_ref(), Some(gs), Some(bits), mode, Some(Dtype::Float32));
        let want = matmul(&x, &transpose(&dq, &[1, 0]));
        let got = quantized_matmul(&x, &wq, &s, b.as_ref(), true, Some(gs), Some(bits), mode);
        close(&format!("{mode} b{bits} g{gs} t"), &got, &want, 1e-5);
        let x2 = rn(&[5, 72]);
        let want = matmul(&x2, &dq);
        let got = quantized_matmul(&x2, &wq, &s, b.as_ref(), false, Some(gs), Some(bits), mode);
        close(&format!("{mode} b{bits} g{gs} n"), &got, &want, 1e-5);
        // Decode path with several rows.
        let x3 = rn(&[3, 2048]);
        let want = matmul(&x3, &transpose(&dq, &[1, 0]));
        let got = quantized_matmul(&x3, &wq, &s, b.as_ref(), true, Some(gs), Some(bits), mode);
        close(&format!("{mode} b{bits} g{gs} decode"), &got, &want, 1e-5);
    }
}

#[test]
fn decode_matvec_edges_match_dense() {
    // The few-row kernels (AVX-512: 16-word blocks, chunks of 16 groups, an 8-word last block;
    // AVX2: 8-word blocks) at the row lengths that exercise each tail, against
    // x @ dequantize(w).T in f32, for 1 to 8 rows of x and f32/f16/bf16 scales.
    let cases: [(usize, usize, &[usize]); 7] = [
        (4, 32, &[576, 1536, 320]),
        (4, 64, &[576, 320]),
        (4, 128, &[1152, 384]),
        (8, 32, &[544, 96, 1024]),
        (8, 128, &[640, 1152]),
        (2, 64, &[640, 2048]),
        (2, 128, &[640]),
    ];
    let mut n = 0;
    for (bits, gs, ks) in cases {
        for &k in ks {
            for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
                let w = rn(&[37, k]).astype(dt);
                let (wq, s, b) = quantize(&w, Some(gs), Some(bits), "affine");
                let dq = dequantize(&wq, &s, b.as_ref(), Some(gs), Some(bits), "affine", Some(Dtype::Float32));
                for m in [1, 2, 3, 4, 5, 7, 8] {
                    let x = rn(&[m, k]).astype(dt);
                    let want = matmul(&x.astype(Dtype::Float32), &transpose(&dq, &[1, 0]));
                    let got = quantized_matmul(&x, &wq, &s, b.as_ref(), true, Some(gs), Some(bits), "affine");
                    let t = if dt == Dtype::Float32 { 1e-5 } else { tol(if dt == Dtype::Float16 { "float16" } else { "bfloat16" }) };
                    let bound = dot_bound(&x, &transpose(&dq, &[1, 0]));
                    close_scaled(&format!("b{bits} g{gs} k{k} {dt} m{m}"), &got.astype(Dtype::Float32), &want, t, bound);
                    // Batch invariance: each row of x gets the bits it gets alone (a batched
                    // decode must give every sequence its own greedy tokens).
                    for r in 0..m {
                        let xr = slice_axis(&x, 0, r, r + 1);
                        let alone = quantized_matmul(&xr, &wq, &s, b.as_ref(), true, Some(gs), Some(bits), "affine");
                        let row = slice_axis(&got, 0, r, r + 1);
                        same_bits(&format!("b{bits} g{gs} k{k} {dt} m{m} row {r} alone"), &row, &alone);
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 15 * 3 * 7);
}

#[test]
fn few_row_decode_across_tasks_and_tiles() {
    // Enough weight rows (301) for several parallel tasks of the few-row kernels with a short
    // last one, rows of 16 groups or more (whole 16-group chunks plus a tail) and of fewer,
    // f16 and bf16 scales, f32 and f16 x: against the dense product, and every row of x gets
    // the bits it gets alone.
    for (gs, k) in [(32usize, 576usize), (64, 1088), (128, 640), (32, 96)] {
        for sdt in [Dtype::Float16, Dtype::Bfloat16] {
            let w = rn(&[301, k]).astype(sdt);
            let (wq, s, b) = quantize(&w, Some(gs), Some(4), "affine");
            // The reference from f32 copies of the scales (exact): `dequantize` with half
            // scales rounds its products to their dtype.
            let b32 = b.as_ref().map(|b| b.astype(Dtype::Float32));
            let dq = dequantize(&wq, &s.astype(Dtype::Float32), b32.as_ref(), Some(gs), Some(4), "affine", Some(Dtype::Float32));
            let dqt = transpose(&dq, &[1, 0]);
            for xdt in [Dtype::Float32, Dtype::Float16] {
                let x = rn(&[8, k]).astype(xdt);
                for m in [1usize, 2, 3, 4, 6, 8] {
                    let xm = slice_axis(&x, 0, 0, m);
                    let got = quantized_matmul(&xm, &wq, &s, b.as_ref(), true, Some(gs), Some(4), "affine");
                    let want = matmul(&xm.astype(Dtype::Float32), &dqt);
                    // A half-precision result is rounded to its dtype.
                    let t = if got.dtype() == Dtype::Float32 { 1e-5 } else { tol("float16") };
                    let name = format!("g{gs} k{k} scales {sdt} x {xdt} m{m}");
                    close_scaled(&name, &got.astype(Dtype::Float32), &want, t, dot_bound(&xm, &dqt));
                    for r in 0..m {
                        let alone = quantized_matmul(&slice_axis(&x, 0, r, r + 1), &wq, &s, b.as_ref(), true, Some(gs), Some(4), "affine");
                        same_bits(&format!("{name} row {r} alone"), &slice_axis(&got, 0, r, r + 1), &alone);
                    }
                }
            }
        }
    }
}

#[test]
fn bfloat16_decode_against_float_scales() {
    // A bfloat16 x against 4-bit weights takes the bfloat16 dot-product kernel (on CPUs with
    // AVX-512 BF16; 8-bit weights keep qmv512) with f32 scales, and with f16 scales too where the
    // 16-bit integer kernel does not apply (qmv_vnni.rs: rows of whole 64-byte blocks); the edges test above pairs it with bfloat16 scales only. Against
    // the dense product in f32, and each row alone gives the bits it gets in the batch.
    for (bits, gs, k) in
        [(4usize, 32usize, 576usize), (4, 64, 1024), (4, 64, 320), (4, 128, 384), (8, 32, 544), (8, 32, 96), (8, 64, 1024), (8, 128, 640)]
    {
        for sdt in [Dtype::Float32, Dtype::Float16] {
            let w = rn(&[29, k]).astype(sdt);
            let (wq, s, b) = quantize(&w, Some(gs), Some(bits), "affine");
            let dq = dequantize(&wq, &s, b.as_ref(), Some(gs), Some(bits), "affine", Some(Dtype::Float32));
            let x = rn(&[5, k]).astype(Dtype::Bfloat16);
            let got = quantized_matmul(&x, &wq, &s, b.as_ref(), true, Some(gs), Some(bits), "affine");
            // bfloat16 with f32 or f16 scales promotes to float32; dequantize rounds f16 scales'
            // products in f16, so the reference is only that close.
            assert_eq!(got.dtype(), Dtype::Float32);
            let t = if sdt == Dtype::Float32 { 1e-5 } else { tol("float16") };
            let x32 = x.astype(Dtype::Float32);
            let want = matmul(&x32, &transpose(&dq, &[1, 0]));
            let name = format!("b{bits} g{gs} k{k} scales {sdt}");
            close_scaled(&name, &got, &want, t, dot_bound(&x32, &transpose(&dq, &[1, 0])));
            for r in 0..5 {
                let alone = quantized_matmul(&slice_axis(&x, 0, r, r + 1), &wq, &s, b.as_ref(), true, Some(gs), Some(bits), "affine");
                same_bits(&format!("{name} row {r} alone"), &slice_axis(&got, 0, r, r + 1), &alone);
            }
        }
    }
}

#[test]
fn decode_with_outliers_in_x() {
    // Activations with outliers (every 37th element 300x larger) and near-silent groups (1e-3):
    // the decode kernels multiply x as it is (f32, or bfloat16 products exact in f32), so the
    // result stays within MLX's f32 tolerance of the dense product whatever the spread of x
    // within a group (a kernel that rounded x to integers per group would not). With f32 scales
    // the result is f32 for both dtypes of x. Each row alone gives the bits it gets in the batch.
    let (n, m) = (29usize, 3usize);
    for (bits, gs, k) in
        [(4usize, 32usize, 576usize), (4, 64, 320), (4, 128, 384), (8, 32, 544), (8, 64, 1024), (2, 64, 640), (2, 128, 1152)]
    {
        let w = rn(&[n, k]);
        let (wq, s, b) = quantize(&w, Some(gs), Some(bits), "affine");
        let b = b.unwrap();
        let dq = dequantize(&wq, &s, Some(&b), Some(gs), Some(bits), "affine", Some(Dtype::Float32));
        let dqt = transpose(&dq, &[1, 0]);
        let mut xv = rn(&[m, k]).to_vec::<f32>().unwrap();
        for (i, v) in xv.iter_mut().enumerate() {
            if i % 37 == 5 {
                *v *= 300.0;
            } else if (i / gs) % 5 == 3 {
                *v *= 1e-3;
            }
        }
        let x32 = Array::from_slice(&xv, &[m, k]);
        for xdt in [Dtype::Float32, Dtype::Bfloat16] {
            let x = x32.astype(xdt);
            let got = quantized_matmul(&x, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine");
            assert_eq!(got.dtype(), Dtype::Float32);
            let xe = x.astype(Dtype::Float32);
            let want = matmul(&xe, &dqt);
            let name = format!("b{bits} g{gs} k{k} x {xdt}");
            close_scaled(&name, &got, &want, 1e-5, dot_bound(&xe, &dqt));
            for r in 0..m {
                let alone = quantized_matmul(&slice_axis(&x, 0, r, r + 1), &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine");
                same_bits(&format!("{name} row {r} alone"), &slice_axis(&got, 0, r, r + 1), &alone);
            }
        }
    }
}

#[test]
fn half_precision_decode_error_budget() {
    // Half-precision x and scales (a half-precision result): the 16-bit integer kernels round x
    // per group (qmv_i16.rs on AVX2 hosts; qmv_vnni.rs on AVX-512 VNNI hosts, for rows of whole
    // 64-byte blocks: k = 4096 and 1024 here). Its error beyond the result's own rounding must
    // stay under 5e-5 of each output's Σ|x·w| with outliers in x (every 37th value 30x larger;
    // a NumPy model of the kernel puts the worst case near 4e-5 and the mean near 5e-6; without
    // the per-group correction the worst case is ~2x that). Reference: the product of the same
    // half-precision x with the dequantized weights (scales widened exactly), in f32.
    let (n, m) = (64usize, 3usize);
    for (bits, gs, k) in [(4usize, 64usize, 4096usize), (4, 32, 576), (4, 128, 1024), (8, 64, 1024), (2, 64, 640)] {
        for dt in [Dtype::Float16, Dtype::Bfloat16] {
            // Fixed draws: the budget is checked on the same data every run.
            let draw = |shape: &[usize], seed: u64| random::normal(shape, Dtype::Float32, 0.0f32, 1.0f32, Some(&random::key(seed)));
            let (wq, s, b) = quantize(&draw(&[n, k], (k + bits) as u64).astype(dt), Some(gs), Some(bits), "affine");
            let b = b.unwrap();
            let dq = dequantize(&wq, &s.astype(Dtype::Float32), Some(&b.astype(Dtype::Float32)), Some(gs), Some(bits), "affine", None);
            let dqt = transpose(&dq, &[1, 0]);
            let mut xv = draw(&[m, k], gs as u64).to_vec::<f32>().unwrap();
            xv.iter_mut().step_by(37).for_each(|v| *v *= 30.0);
            let x = Array::from_slice(&xv, &[m, k]).astype(dt);
            let got = quantized_matmul(&x, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine");
            assert_eq!(got.dtype(), dt);
            let x32 = x.astype(Dtype::Float32);
            let want = matmul(&x32, &dqt).to_vec::<f32>().unwrap();
            let bound = matmul(&abs(&x32), &abs(&dqt)).to_vec::<f32>().unwrap();
            let got = got.astype(Dtype::Float32).to_vec::<f32>().unwrap();
            let mantissa = if dt == Dtype::Float16 { 10 } else { 7 };
            for (i, ((&g, &w), &bd)) in got.iter().zip(&want).zip(&bound).enumerate() {
                // One unit in the last place of the result's dtype (rounding either side of a tie).
                let ulp = if w == 0.0 { 0.0 } else { 2f32.powi(w.abs().log2().floor() as i32 - mantissa) };
                assert!(
                    (g - w).abs() <= ulp + 5e-5 * bd,
                    "b{bits} g{gs} k{k} {dt} element {i}: got {g}, want {w} (ulp {ulp}, Σ|x·w| {bd})"
                );
            }
        }
    }
}

#[test]
fn decode_propagates_nan_and_inf() {
    // A NaN in a row of x makes that row's outputs NaN and an infinity makes them non-finite,
    // whichever decode kernel runs; the other rows are untouched.
    let (n, k, gs) = (40usize, 256usize, 64usize);
    let (wq, s, b) = quantize(&rn(&[n, k]), Some(gs), Some(4), "affine");
    for xdt in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
        let mut xv = rn(&[3, k]).to_vec::<f32>().unwrap();
        xv[k + 70] = f32::NAN;
        xv[2 * k + 3] = f32::INFINITY;
        let x = Array::from_slice(&xv, &[3, k]).astype(xdt);
        let y = quantized_matmul(&x, &wq, &s, b.as_ref(), true, Some(gs), Some(4), "affine").astype(Dtype::Float32);
        let y = y.to_vec::<f32>().unwrap();
        assert!(y[..n].iter().all(|v| v.is_finite()), "{xdt}: row 0 finite");
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{xdt}: row 1 NaN: {:?}", &y[n..2 * n]);
        assert!(y[2 * n..].iter().all(|v| !v.is_finite()), "{xdt}: row 2 non-finite: {:?}", &y[2 * n..]);
    }
}

#[test]
fn gather_qmm_matches_mlx() {
    let (fx, _) = fixtures();
    for (k, mode, gs, bits) in [("gaffine4", "affine", 64, 4), ("gaffine8", "affine", 32, 8), ("gmxfp44", "mxfp4", 32, 4)] {
        let y = gather_qmm(
            &fx[&format!("{k}.x")],
            &fx[&format!("{k}.wq")],
            &fx[&format!("{k}.scales")],
            fx.get(&format!("{k}.biases")),
            None,
            Some(&fx[&format!("{k}.ridx")]),
            true,
            Some(gs),
            Some(bits),
            mode,
            false,
        );
        close(k, &y, &fx[&format!("{k}.y")], 1e-5);
    }
}

fn err(a: &Array) -> String {
    a.check().expect_err("expected an error").to_string()
}

#[test]
fn validation_errors() {
    let w = rn(&[8, 64]);
    let (wq, s, b) = quantize(&w, Some(32), Some(4), "affine");
    let b = b.unwrap();
    assert!(err(&quantize(&w, Some(48), Some(4), "affine").0).contains("group size"));
    assert!(err(&quantize(&w, Some(32), Some(7), "affine").0).contains("bits"));
    assert!(err(&quantize(&w, Some(32), Some(4), "int4").0).contains("mode"));
    assert!(err(&quantize(&rn(&[8, 40]), Some(32), Some(4), "affine").0).contains("divisible"));
    assert!(err(&quantize(&w, Some(32), Some(8), "mxfp4").0).contains("bits"));
    assert!(err(&quantize(&w, Some(64), None, "nvfp4").0).contains("group size"));
    // Wrong packed shape for the bits / group size.
    assert!(err(&dequantize(&wq, &s, Some(&b), Some(32), Some(8), "affine", None)).contains("incompatible"));
    assert!(err(&dequantize(&wq, &s, Some(&b), Some(64), Some(4), "affine", None)).contains("incompatible"));
    // Scales of the wrong dtype / shape, biases missing.
    assert!(
        err(&dequantize(&wq, &s.astype(Dtype::Int32), Some(&b.astype(Dtype::Int32)), Some(32), Some(4), "affine", None)).contains("float")
    );
    assert!(err(&dequantize(&wq, &s, None, Some(32), Some(4), "affine", None)).contains("Biases"));
    assert!(err(&dequantize(&wq, &s, None, None, None, "mxfp4", None)).contains("uint8"));
    assert!(err(&dequantize(&wq, &slice_axis(&s, 0, 0, 4), Some(&slice_axis(&b, 0, 0, 4)), Some(32), Some(4), "affine", None))
        .contains("does not match"));
    // Packed weights of the wrong dtype; x of the wrong width.
    assert!(err(&quantized_matmul(&rn(&[2, 64]), &w, &s, Some(&b), true, Some(32), Some(4), "affine")).contains("uint32"));
    assert!(err(&quantized_matmul(&rn(&[2, 63]), &wq, &s, Some(&b), true, Some(32), Some(4), "affine")).contains("does not match"));
    // Index out of range in gather_qmm: an error at evaluation, not a panic.
    let w3 = rn(&[2, 8, 64]);
    let (q3, s3, b3) = quantize(&w3, Some(32), Some(4), "affine");
    let y = gather_qmm(&rn(&[1, 1, 64]), &q3, &s3, b3.as_ref(), None, Some(&Array::vec(&[5u32])), true, Some(32), Some(4), "affine", false);
    assert!(y.eval().is_err());
}

fn slice_axis(a: &Array, axis: usize, lo: usize, hi: usize) -> Array {
    let idx = arange_n(hi - lo, Some(Dtype::Int32)) + Scalar::Int(lo as i64);
    take(a, &idx, Some(axis as isize))
}

#[test]
fn gradient_of_quantized_matmul() {
    for transpose in [true, false] {
        let w = rn(&[64, 64]);
        let (wq, s, b) = quantize(&w, Some(32), Some(4), "affine");
        let b = b.unwrap();
        let dq = dequantize(&wq, &s, Some(&b), Some(32), Some(4), "affine", None);
        let x = rn(&[3, 64]);
        let c = rn(&[3, 64]);
        let (wq2, s2, b2, c2) = (wq.clone(), s.clone(), b.clone(), c.clone());
        let f = move |v: Vec<Array>| {
            sum(&(quantized_matmul(&v[0], &wq2, &s2, Some(&b2), transpose, Some(32), Some(4), "affine") * &c2), None, false)
        };
        let g = grad_argnums(f, &[0])(vec![x.clone()])[0].clone();
        // Oracle 1: the dense product's gradient.
        let dqt = if transpose { transpose_(&dq) } else { dq.clone() };
        let (dqt2, c3) = (dqt.clone(), c.clone());
        let fd = move |v: Vec<Array>| sum(&(matmul(&v[0], &dqt2) * &c3), None, false);
        let gd = grad_argnums(fd, &[0])(vec![x.clone()])[0].clone();
        close(&format!("grad t={transpose}"), &g, &gd, 1e-5);
        // Oracle 2: central differences on a few coordinates.
        let xv = x.to_vec::<f32>().unwrap();
        let gv = g.to_vec::<f32>().unwrap();
        for &i in &[0usize, 17, 100, 191] {
            let eps = 1e-2f32;
            let mut p = xv.clone();
            p[i] += eps;
            let mut m = xv.clone();
            m[i] -= eps;
            let fx = |v: Vec<f32>| {
                sum(
                    &(quantized_matmul(&Array::from_slice(&v, &[3, 64]), &wq, &s, Some(&b), transpose, Some(32), Some(4), "affine") * &c),
                    None,
                    false,
                )
                .item::<f32>()
                .unwrap()
            };
            let num = (fx(p) - fx(m)) / (2.0 * eps);
            assert!((num - gv[i]).abs() < 2e-2 * (1.0 + num.abs()), "finite difference at {i}: {num} vs {}", gv[i]);
        }
        // jvp in x is the product with the tangent.
        let t = rn(&[3, 64]);
        let (wq3, s3, b3) = (wq.clone(), s.clone(), b.clone());
        let (_, tan) =
            jvp(move |x: Array| quantized_matmul(&x, &wq3, &s3, Some(&b3), transpose, Some(32), Some(4), "affine"), &x, &t).unwrap();
        close("jvp", &tan, &matmul(&t, &dqt), 1e-5);
        // No gradient through the packed weights or scales: a clear error.
        let (wq4, x4) = (wq.clone(), x.clone());
        let (b4, c4) = (b.clone(), c.clone());
        let r = oxmx_core::transforms::vjp(
            move |v: Vec<Array>| {
                vec![sum(&(quantized_matmul(&x4, &wq4, &v[0], Some(&b4), transpose, Some(32), Some(4), "affine") * &c4), None, false)]
            },
            &vec![s.clone()],
            &vec![Array::scalar(1f32)],
        );
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not differentiable"), "got {e:?}");
    }
}

/// The fused pre-norm product gives the two nodes' results bit for bit on the CPU (its kernels
/// run back to back), differentiates in x and the norm weight as the composition does, and
/// names bad inputs.
#[test]
fn rms_norm_quantized_matmul_is_the_composition() {
    for (dt, rows, k, n, bits, gs) in [
        (Dtype::Float32, 1, 256, 48, 4, 64),
        (Dtype::Bfloat16, 1, 512, 40, 4, 64),
        (Dtype::Float16, 3, 256, 24, 8, 32),
        (Dtype::Bfloat16, 2, 128, 16, 3, 32),
    ] {
        let w = rn(&[n, k]).astype(dt);
        let (wq, s, b) = quantize(&w, Some(gs), Some(bits), "affine");
        let b = b.unwrap();
        let x = rn(&[rows, 1, k]).astype(dt);
        let nw = (rn(&[k]) * Scalar::Float(0.2) + Scalar::Float(1.0)).astype(dt);
        let got = rms_norm_quantized_matmul(&x, &nw, 1e-5, &wq, &s, &b, Some(gs), Some(bits));
        let want = quantized_matmul(&fast::rms_norm(&x, Some(&nw), 1e-5), &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine");
        same_bits(&format!("{dt:?} rows={rows} k={k} bits={bits}"), &got, &want);
    }
    // Gradients in x and the norm weight against the composition's.
    let (k, n) = (64, 16);
    let (wq, s, b) = quantize(&rn(&[n, k]), Some(32), Some(4), "affine");
    let b = b.unwrap();
    let (x, nw, c) = (rn(&[2, k]), rn(&[k]) + Scalar::Float(1.5), rn(&[2, n]));
    let fused = {
        let (wq, s, b, c) = (wq.clone(), s.clone(), b.clone(), c.clone());
        move |v: Vec<Array>| sum(&(rms_norm_quantized_matmul(&v[0], &v[1], 1e-5, &wq, &s, &b, Some(32), Some(4)) * &c), None, false)
    };
    let plain = {
        let (wq, s, b, c) = (wq.clone(), s.clone(), b.clone(), c.clone());
        move |v: Vec<Array>| {
            sum(
                &(quantized_matmul(&fast::rms_norm(&v[0], Some(&v[1]), 1e-5), &wq, &s, Some(&b), true, Some(32), Some(4), "affine") * &c),
                None,
                false,
            )
        }
    };
    let gf = grad_argnums(fused, &[0, 1])(vec![x.clone(), nw.clone()]);
    let gp = grad_argnums(plain, &[0, 1])(vec![x.clone(), nw.clone()]);
    close("grad x", &gf[0], &gp[0], 1e-6);
    close("grad norm weight", &gf[1], &gp[1], 1e-6);
    // Bad inputs name the problem.
    let e = err(&rms_norm_quantized_matmul(&x, &rn(&[k + 1]), 1e-5, &wq, &s, &b, Some(32), Some(4)));
    assert!(e.contains("norm weight") && e.contains(&format!("[{}]", k + 1)), "{e}");
    let e = err(&rms_norm_quantized_matmul(&rn(&[2, k + 32]), &rn(&[k + 32]), 1e-5, &wq, &s, &b, Some(32), Some(4)));
    assert!(e.contains("Last dimension of x"), "{e}");
}

/// The fused SwiGLU product against its composition (the activation in float32, rounded once,
/// then the product), its gradient in gate and up, and a mismatched up.
#[test]
fn swiglu_quantized_matmul_is_the_composition() {
    for (dt, rows, k, n, bits, gs) in
        [(Dtype::Float32, 1, 256, 48, 4, 64), (Dtype::Bfloat16, 1, 512, 40, 4, 64), (Dtype::Float16, 3, 256, 24, 8, 32)]
    {
        let (wq, s, b) = quantize(&rn(&[n, k]).astype(dt), Some(gs), Some(bits), "affine");
        let b = b.unwrap();
        let (g, u) = ((rn(&[rows, 1, k]) * Scalar::Float(3.0)).astype(dt), rn(&[rows, 1, k]).astype(dt));
        let got = swiglu_quantized_matmul(&g, &u, &wq, &s, &b, Some(gs), Some(bits));
        let g32 = g.astype(Dtype::Float32);
        let h = (&(&g32 * &sigmoid(&g32)) * &u.astype(Dtype::Float32)).astype(dt);
        let want = quantized_matmul(&h, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine");
        close(
            &format!("swiglu qmm {dt:?} rows={rows}"),
            &got,
            &want,
            if dt == Dtype::Float32 { 1e-6 } else { tol(if dt == Dtype::Bfloat16 { "bfloat16" } else { "float16" }) },
        );
    }
    let (k, n) = (64, 16);
    let (wq, s, b) = quantize(&rn(&[n, k]), Some(32), Some(4), "affine");
    let b = b.unwrap();
    let (g, u, c) = (rn(&[2, k]), rn(&[2, k]), rn(&[2, n]));
    let fused = {
        let (wq, s, b, c) = (wq.clone(), s.clone(), b.clone(), c.clone());
        move |v: Vec<Array>| sum(&(swiglu_quantized_matmul(&v[0], &v[1], &wq, &s, &b, Some(32), Some(4)) * &c), None, false)
    };
    let plain = {
        let (wq, s, b, c) = (wq.clone(), s.clone(), b.clone(), c.clone());
        move |v: Vec<Array>| {
            let h = &(&v[0] * &sigmoid(&v[0])) * &v[1];
            sum(&(quantized_matmul(&h, &wq, &s, Some(&b), true, Some(32), Some(4), "affine") * &c), None, false)
        }
    };
    let gf = grad_argnums(fused, &[0, 1])(vec![g.clone(), u.clone()]);
    let gp = grad_argnums(plain, &[0, 1])(vec![g.clone(), u.clone()]);
    close("grad gate", &gf[0], &gp[0], 1e-6);
    close("grad up", &gf[1], &gp[1], 1e-6);
    let e = err(&swiglu_quantized_matmul(&g, &rn(&[3, k]), &wq, &s, &b, Some(32), Some(4)));
    assert!(e.contains("gate and up"), "{e}");
}

fn transpose_(a: &Array) -> Array {
    transpose(a, &[1, 0])
}

#[test]
fn vmap_of_quantized_ops() {
    let w = rn(&[16, 64]);
    let (wq, s, b) = quantize(&w, Some(32), Some(8), "affine");
    let b = b.unwrap();
    let xs = rn(&[4, 2, 64]);
    let (wq2, s2, b2) = (wq.clone(), s.clone(), b.clone());
    let f = vmap(move |x: Array| quantized_matmul(&x, &wq2, &s2, Some(&b2), true, Some(32), Some(8), "affine"), &[Some(0)], &[0]);
    let got = f(xs.clone());
    let want = quantized_matmul(&xs, &wq, &s, Some(&b), true, Some(32), Some(8), "affine");
    close("vmap x", &got, &want, 1e-6);
    // Batched weights: each batch element with its own matrix.
    let ws = rn(&[3, 16, 64]);
    let x1 = rn(&[2, 64]);
    let x2 = x1.clone();
    let g = vmap(
        move |w: Array| {
            let (q, s, b) = quantize(&w, Some(32), Some(4), "affine");
            quantized_matmul(&x2, &q, &s, b.as_ref(), true, Some(32), Some(4), "affine")
        },
        &[Some(0)],
        &[0],
    );
    let got = g(ws.clone());
    let (q, s, b) = quantize(&ws, Some(32), Some(4), "affine");
    let want = quantized_matmul(&broadcast_to(&expand_dims(&x1, &[0]), &[3, 2, 64]), &q, &s, b.as_ref(), true, Some(32), Some(4), "affine");
    close("vmap w", &got, &want, 1e-6);
}

fn rn(shape: &[usize]) -> Array {
    random::normal(shape, Dtype::Float32, 0.0f32, 1.0f32, None)
}
