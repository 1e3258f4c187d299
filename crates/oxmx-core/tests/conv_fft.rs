//! Convolution and FFT families, against fixtures from scripts/gen_conv_fft_fixtures.py (MLX as
//! the oracle, numpy cross-checking the FFTs).

use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conv_fft.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn isizes(v: &Value) -> Vec<isize> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// `|got - want| <= atol + rtol * |want|` everywhere, with `atol` scaled by the largest expected value.
fn assert_close(got: &[f32], want: &[f32], rtol: f32, atol: f32, ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol * scale + rtol * w.abs(), "{ctx}: element {i}: got {g}, want {w}");
    }
}

fn tolerance(dt: Dtype) -> (f32, f32) {
    match dt {
        Dtype::Float16 => (1e-2, 1e-2),
        Dtype::Bfloat16 => (3e-2, 3e-2),
        _ => (1e-4, 1e-5),
    }
}

// ---------------------------------------------------------------------------------------------
// convolution

fn arr2<const N: usize>(v: &Value) -> [usize; N] {
    usizes(v).try_into().unwrap()
}

fn run_conv_case(c: &Value) -> Array {
    let dt = Dtype::from_name(c["dtype"].as_str().unwrap()).unwrap();
    let xs = usizes(&c["x_shape"]);
    let x = if let Some(v) = c.get("x_swapped") {
        let mut s = xs.clone();
        s.swap(1, 2);
        swapaxes(&Array::from_slice(&floats(v), &s), 1, 2)
    } else {
        Array::from_slice(&floats(&c["x"]), &xs)
    }
    .astype(dt);
    let w = Array::from_slice(&floats(&c["w"]), &usizes(&c["w_shape"])).astype(dt);
    let p = &c["params"];
    let u = |k: &str| p[k].as_u64().unwrap() as usize;
    let groups = u("groups");
    match c["fn"].as_str().unwrap() {
        "conv1d" => conv1d(&x, &w, u("stride"), u("padding"), u("dilation"), groups),
        "conv2d" => conv2d(&x, &w, arr2(&p["stride"]), arr2(&p["padding"]), arr2(&p["dilation"]), groups),
        "conv3d" => conv3d(&x, &w, arr2(&p["stride"]), arr2(&p["padding"]), arr2(&p["dilation"]), groups),
        "conv_general" => conv_general(
            &x,
            &w,
            &usizes(&p["stride"]),
            &isizes(&p["padding"][0]),
            &isizes(&p["padding"][1]),
            &usizes(&p["kernel_dilation"]),
            &usizes(&p["input_dilation"]),
            groups,
            p["flip"].as_bool().unwrap(),
        ),
        "conv_transpose1d" => conv_transpose1d(&x, &w, u("stride"), u("padding"), u("dilation"), u("output_padding"), groups),
        "conv_transpose2d" => {
            conv_transpose2d(&x, &w, arr2(&p["stride"]), arr2(&p["padding"]), arr2(&p["dilation"]), arr2(&p["output_padding"]), groups)
        }
        "conv_transpose3d" => {
            conv_transpose3d(&x, &w, arr2(&p["stride"]), arr2(&p["padding"]), arr2(&p["dilation"]), arr2(&p["output_padding"]), groups)
        }
        f => panic!("unknown conv fn {f}"),
    }
}

#[test]
fn conv_matches_mlx() {
    let cases = fixtures()["conv"].as_array().unwrap();
    assert!(cases.len() >= 25);
    for (i, c) in cases.iter().enumerate() {
        let ctx = format!("conv case {i} ({} {} {})", c["fn"], c["dtype"], c["params"]);
        let dt = Dtype::from_name(c["dtype"].as_str().unwrap()).unwrap();
        let y = run_conv_case(c);
        y.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(y.dtype(), dt, "{ctx}");
        assert_eq!(y.shape(), usizes(&c["out_shape"]).as_slice(), "{ctx}");
        let (rtol, atol) = tolerance(dt);
        assert_close(&y.astype(Dtype::Float32).to_vec::<f32>().unwrap(), &floats(&c["out"]), rtol, atol, &ctx);
    }
}

/// Deterministic test values.
fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 17) as f32 / 4.0 - 2.0
        })
        .collect()
}

/// A direct, obviously correct 2-d cross-correlation (stride, symmetric padding, groups).
fn naive_conv2d(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 4], stride: usize, pad: usize, groups: usize) -> (Vec<f32>, [usize; 4]) {
    let [n, h, wd, ci] = xs;
    let [co, kh, kw, cg] = ws;
    let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (wd + 2 * pad - kw) / stride + 1);
    let og = co / groups;
    let mut out = vec![0f32; n * oh * ow * co];
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                for o in 0..co {
                    let g = o / og;
                    let mut acc = 0f64;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (iy, ix) = ((y * stride + i) as isize - pad as isize, (xx * stride + j) as isize - pad as isize);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for c in 0..cg {
                                let xv = x[((b * h + iy as usize) * wd + ix as usize) * ci + g * cg + c];
                                acc += (xv * w[((o * kh + i) * kw + j) * cg + c]) as f64;
                            }
                        }
                    }
                    out[((b * oh + y) * ow + xx) * co + o] = acc as f32;
                }
            }
        }
    }
    (out, [n, oh, ow, co])
}

/// Larger shapes than the fixtures hold: many tiles, threads and both gemm paths.
#[test]
fn conv2d_larger_shapes_match_naive() {
    for (xs, ws, stride, pad, groups) in [
        ([2, 30, 29, 16], [24, 3, 3, 16], 1, 1, 1),
        ([3, 17, 17, 8], [16, 3, 3, 8], 2, 1, 1),
        ([2, 20, 20, 32], [48, 1, 1, 32], 1, 0, 1),
        ([1, 23, 23, 3], [8, 7, 7, 3], 2, 3, 1),
        ([2, 12, 12, 16], [16, 3, 3, 1], 1, 1, 16),
        ([1, 9, 9, 64], [128, 3, 3, 64], 1, 1, 1),
        // Kernel wider than the padded input row: taps fall off both ends of one run.
        ([2, 3, 4, 2], [5, 5, 7, 2], 1, 3, 1),
        ([1, 6, 5, 4], [6, 7, 7, 4], 3, 2, 1),
        // The benchmark's 56×56×64 layer and a strided one with 40 output channels (two whole
        // 16-column panels and a part): many tasks of the direct path on AVX2 hosts.
        ([1, 56, 56, 64], [64, 3, 3, 64], 1, 1, 1),
        ([2, 14, 13, 128], [40, 3, 3, 128], 2, 1, 1),
    ] {
        let (xv, wv) = (lcg(xs.iter().product(), 3), lcg(ws.iter().product(), 5));
        let (want, os) = naive_conv2d(&xv, xs, &wv, ws, stride, pad, groups);
        let y = conv2d(&Array::from_slice(&xv, &xs), &Array::from_slice(&wv, &ws), [stride; 2], [pad; 2], [1, 1], groups);
        assert_eq!(y.shape(), &os);
        assert_close(&y.to_vec::<f32>().unwrap(), &want, 1e-4, 1e-5, &format!("{xs:?} {ws:?}"));
    }
}

/// MLX rejects groups for 3-d convolutions; oxmx allows them, so check against per-group convs.
#[test]
fn conv3d_groups_equal_split_convs() {
    let (xs, ws) = ([2usize, 4, 5, 4, 6], [4usize, 2, 3, 2, 3]);
    let x = Array::from_slice(&lcg(xs.iter().product(), 7), &xs);
    let w = Array::from_slice(&lcg(ws.iter().product(), 9), &ws);
    let y = conv3d(&x, &w, [1, 2, 1], [1, 0, 1], [1, 1, 1], 2);
    let parts: Vec<Array> = (0..2)
        .map(|g| {
            let xg = slice_range(&x, &[0, 0, 0, 0, 3 * g], &[2, 4, 5, 4, 3 * g + 3]);
            let wg = slice_range(&w, &[2 * g, 0, 0, 0, 0], &[2 * g + 2, 2, 3, 2, 3]);
            conv3d(&xg, &wg, [1, 2, 1], [1, 0, 1], [1, 1, 1], 1)
        })
        .collect();
    let want = concatenate(&parts, -1);
    assert_eq!(y.shape(), want.shape());
    assert_close(&y.to_vec::<f32>().unwrap(), &want.to_vec::<f32>().unwrap(), 1e-5, 1e-6, "grouped conv3d");
}

fn err_msg(a: &Array) -> String {
    match a.check() {
        Err(e) => e.to_string(),
        Ok(()) => panic!("expected an error, got shape {:?}", a.shape()),
    }
}

#[test]
fn conv_errors() {
    let x = Array::from_slice(&lcg(100, 1), &[1, 5, 5, 4]);
    let w = Array::from_slice(&lcg(6 * 9 * 4, 2), &[6, 3, 3, 4]);
    assert!(err_msg(&conv1d(&x, &w, 1, 0, 1, 1)).contains("dimensions"));
    assert!(err_msg(&conv2d(&reshape(&x, &[5, 5, 4]), &w, [1, 1], [0, 0], [1, 1], 1)).contains("dimensions"));
    let w3 = Array::from_slice(&lcg(6 * 9 * 3, 2), &[6, 3, 3, 3]);
    assert!(err_msg(&conv2d(&x, &w3, [1, 1], [0, 0], [1, 1], 1)).contains("input channels"));
    let w2 = Array::from_slice(&lcg(6 * 9 * 2, 2), &[6, 3, 3, 2]);
    assert!(err_msg(&conv2d(&x, &w2, [1, 1], [0, 0], [1, 1], 3)).contains("divisible by the number of groups"));
    let w5 = Array::from_slice(&lcg(5 * 9 * 2, 2), &[5, 3, 3, 2]);
    assert!(err_msg(&conv2d(&x, &w5, [1, 1], [0, 0], [1, 1], 2)).contains("output channels must be divisible"));
    assert!(err_msg(&conv2d(&x, &w, [1, 1], [0, 0], [1, 1], 0)).contains("groups"));
    assert!(err_msg(&conv2d(&x, &w, [0, 1], [0, 0], [1, 1], 1)).contains("Stride"));
    let big = Array::from_slice(&lcg(6 * 49 * 4, 2), &[6, 7, 7, 4]);
    assert!(err_msg(&conv2d(&x, &big, [1, 1], [0, 0], [1, 1], 1)).contains("smaller than weight"));
    let xi = x.astype(Dtype::Int32);
    assert!(err_msg(&conv2d(&xi, &w.astype(Dtype::Int32), [1, 1], [0, 0], [1, 1], 1)).contains("floating point"));
    assert!(err_msg(&conv_general(&x, &w, &[1, 2, 3], &[], &[], &[], &[], 1, false)).contains("strides"));
    assert!(err_msg(&conv_general(&reshape(&x, &[25, 4]), &w, &[], &[], &[], &[], &[], 1, false)).contains("dimensions"));
    // Mixed float dtypes promote as MLX.
    let y = conv2d(&x.astype(Dtype::Float16), &w, [1, 1], [0, 0], [1, 1], 1);
    assert_eq!(y.dtype(), Dtype::Float32);
    assert_eq!(y.shape(), &[1, 3, 3, 6]);
}

// ---------------------------------------------------------------------------------------------
// fft

use num_complex::Complex32;

fn opt_usizes(v: &Value) -> Option<Vec<usize>> {
    v.as_array().map(|_| usizes(v))
}

fn opt_isizes(v: &Value) -> Option<Vec<isize>> {
    v.as_array().map(|_| isizes(v))
}

fn run_fft_case(c: &Value) -> Array {
    let shape = usizes(&c["shape"]);
    let vals = floats(&c["input"]);
    let a = if c["complex"].as_bool().unwrap() {
        let z: Vec<Complex32> = vals.chunks(2).map(|p| Complex32::new(p[0], p[1])).collect();
        Array::from_slice(&z, &shape)
    } else {
        Array::from_slice(&vals, &shape)
    };
    let kw = &c["kwargs"];
    let n = kw["n"].as_u64().map(|n| n as usize);
    let axis = kw["axis"].as_i64().unwrap_or(-1) as isize;
    let s = opt_usizes(&kw["s"]);
    let axes = opt_isizes(&kw["axes"]);
    let axes2 = axes.clone().unwrap_or(vec![-2, -1]);
    let (s, axes) = (s.as_deref(), axes.as_deref());
    match c["fn"].as_str().unwrap() {
        "fft" => fft::fft(&a, n, axis),
        "ifft" => fft::ifft(&a, n, axis),
        "rfft" => fft::rfft(&a, n, axis),
        "irfft" => fft::irfft(&a, n, axis),
        "fft2" => fft::fft2(&a, s, &axes2),
        "ifft2" => fft::ifft2(&a, s, &axes2),
        "rfft2" => fft::rfft2(&a, s, &axes2),
        "irfft2" => fft::irfft2(&a, s, &axes2),
        "fftn" => fft::fftn(&a, s, axes),
        "ifftn" => fft::ifftn(&a, s, axes),
        "rfftn" => fft::rfftn(&a, s, axes),
        "irfftn" => fft::irfftn(&a, s, axes),
        "fftshift" => fft::fftshift(&a, axes),
        "ifftshift" => fft::ifftshift(&a, axes),
        f => panic!("unknown fft fn {f}"),
    }
}

#[test]
fn fft_matches_mlx() {
    let cases = fixtures()["fft"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for (i, c) in cases.iter().enumerate() {
        let ctx = format!("fft case {i} ({} {} {})", c["fn"], c["shape"], c["kwargs"]);
        let y = run_fft_case(c);
        y.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(y.shape(), usizes(&c["out_shape"]).as_slice(), "{ctx}");
        let got: Vec<f32> = if c["out_complex"].as_bool().unwrap() {
            assert_eq!(y.dtype(), Dtype::Complex64, "{ctx}");
            y.to_vec::<Complex32>().unwrap().iter().flat_map(|z| [z.re, z.im]).collect()
        } else {
            assert_eq!(y.dtype(), Dtype::Float32, "{ctx}");
            y.to_vec::<f32>().unwrap()
        };
        assert_close(&got, &floats(&c["out"]), 1e-4, 3e-5, &ctx);
    }
}

#[test]
fn fft_dtypes_roundtrip_and_views() {
    let v = lcg(6 * 10, 3);
    let a = Array::from_slice(&v, &[6, 10]);
    // float64 computes in single precision as MLX: complex64 out, float32 from irfft.
    assert_eq!(fft::fft(&a.astype(Dtype::Float64), None, -1).dtype(), Dtype::Complex64);
    assert_eq!(fft::irfft(&a, None, -1).dtype(), Dtype::Float32);
    assert_eq!(fft::rfft(&a.astype(Dtype::Int32), None, 0).dtype(), Dtype::Complex64);
    // Round trips, including odd lengths and a transposed (non-contiguous) input.
    let t = transpose(&a, &[]);
    let back = fft::irfft(&fft::rfft(&t, None, -1), Some(6), -1);
    assert_close(&back.to_vec::<f32>().unwrap(), &t.to_vec::<f32>().unwrap(), 1e-5, 1e-5, "irfft(rfft)");
    let back = fft::ifftn(&fft::fftn(&t, None, None), None, None);
    let re = real(&back).to_vec::<f32>().unwrap();
    assert_close(&re, &t.to_vec::<f32>().unwrap(), 1e-5, 1e-5, "ifftn(fftn)");
    let big = Array::from_slice(&lcg(64 * 1000, 5), &[64, 1000]);
    let rt = fft::ifft(&fft::fft(&big, None, 0), None, 0);
    assert_close(&real(&rt).to_vec::<f32>().unwrap(), &big.to_vec::<f32>().unwrap(), 1e-4, 1e-5, "ifft(fft) axis 0");
    // Empty axes leave the input as MLX does.
    assert_eq!(fft::fftn(&a, None, Some(&[])).shape(), &[6, 10]);
}

#[test]
fn fft_errors() {
    let a = Array::from_slice(&lcg(24, 1), &[2, 3, 4]);
    assert!(err_msg(&fft::fft(&a, None, 3)).contains("Invalid axis"));
    assert!(err_msg(&fft::fft(&a, Some(0), -1)).contains("Invalid FFT output size"));
    assert!(err_msg(&fft::fftn(&a, None, Some(&[0, 0]))).contains("Duplicated axis"));
    assert!(err_msg(&fft::fftn(&a, Some(&[3]), Some(&[0, 1]))).contains("different sizes"));
    assert!(err_msg(&fft::fftn(&a, Some(&[3, 4]), None)).contains("`axes`"));
    assert!(err_msg(&fft::fft(&Array::scalar(1.0f32), None, -1)).contains("at least one dimension"));
    assert!(err_msg(&fft::fft2(&Array::vec(&[1.0f32, 2.0]), None, &[-2, -1])).contains("Invalid axis"));
    assert!(err_msg(&fft::irfft(&Array::from_slice(&[1.0f32], &[1]), None, -1)).contains("Invalid FFT output size"));
    assert!(err_msg(&fft::fftshift(&a, Some(&[5]))).contains("Invalid axis"));
}
