//! The GPU kernels an LLM step runs, against the CPU backend on the same random inputs:
//! rms_norm / layer_norm, rope, attention (decoding kernel and the cuBLAS path, every mask
//! kind, GQA, sinks, KV caches read in place), affine quantized matmul (mat-vec kernel and
//! dequantize + cuBLAS), dequantize, gather, slice_update in place, concatenate, pad and
//! argmax. Each test also checks that the GPU kernel, not the CPU fallback, ran. Skips (and
//! says so) without a CUDA device.

use oxmx_core::fast;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::{with_device, Device};

mod common;
use common::gpu::{assert_close, assert_close_scaled, assert_no_fallback, both, gpu, rand, tol, GPU};

const HALF_FLOATS: [Dtype; 3] = [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16];

#[test]
fn norms_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in HALF_FLOATS {
        // Rows of whole 8-element chunks run from registers (1, 2 or 4 chunks a thread); a
        // ragged row (1001) and one too long for registers (20000) take the plain kernel.
        for shape in [vec![3, 7, 64], vec![5, 4096], vec![2, 1000], vec![2, 6000], vec![2, 12000], vec![3, 1001], vec![2, 20000]] {
            let d = *shape.last().unwrap();
            let x = rand(&shape, -3.0, 3.0, dt, 1);
            let w = rand(&[d], 0.5, 1.5, dt, 2);
            let b = rand(&[d], -0.5, 0.5, dt, 3);
            let what = format!("{dt:?} {shape:?}");
            let (g, c) = both(|| fast::rms_norm(&x, Some(&w), 1e-5));
            assert_close(&format!("rms_norm {what}"), &g, &c, tol(dt) * 2.0);
            let (g, c) = both(|| fast::rms_norm(&x, None, 1e-6));
            assert_close(&format!("rms_norm no weight {what}"), &g, &c, tol(dt) * 2.0);
            let (g, c) = both(|| fast::layer_norm(&x, Some(&w), Some(&b), 1e-5));
            assert_close(&format!("layer_norm {what}"), &g, &c, tol(dt) * 4.0);
            let (g, c) = both(|| fast::layer_norm(&x, None, Some(&b), 1e-5));
            assert_close(&format!("layer_norm bias only {what}"), &g, &c, tol(dt) * 4.0);
        }
        // A transposed input is made dense on the GPU first.
        let x = transpose(&rand(&[64, 6], -2.0, 2.0, dt, 4), &[1, 0]);
        let (g, c) = both(|| fast::rms_norm(&x, None, 1e-5));
        assert_close(&format!("rms_norm transposed {dt:?}"), &g, &c, tol(dt) * 2.0);
    }
    assert_no_fallback(&["RMSNorm", "LayerNorm"]);
}

#[test]
fn rope_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in HALF_FLOATS {
        let x = rand(&[2, 4, 9, 64], -2.0, 2.0, dt, 5);
        for traditional in [false, true] {
            for dims in [64, 32] {
                let what = format!("{dt:?} traditional={traditional} dims={dims}");
                let (g, c) = both(|| fast::rope(&x, dims, traditional, Some(10000.0), 1.0, 7, None));
                assert_close(&format!("rope {what}"), &g, &c, tol(dt) * 4.0 + 2e-5);
                let offs = Array::from_slice(&[3i32, 250], &[2]);
                let (g, c) = both(|| fast::rope(&x, dims, traditional, Some(500000.0), 0.5, offs.clone(), None));
                assert_close(&format!("rope per-batch offsets {what}"), &g, &c, tol(dt) * 4.0 + 2e-5);
                let freqs = rand(&[dims / 2], 1.0, 100.0, Dtype::Float32, 6);
                let (g, c) = both(|| fast::rope(&x, dims, traditional, None, 1.0, 11, Some(&freqs)));
                assert_close(&format!("rope freqs {what}"), &g, &c, tol(dt) * 4.0 + 2e-5);
            }
        }
        // A [B, L, H, D] -> [B, H, L, D] transposed input, as attention layers pass it.
        let xt = transpose(&rand(&[1, 5, 3, 32], -1.0, 1.0, dt, 8), &[0, 2, 1, 3]);
        let (g, c) = both(|| fast::rope(&xt, 32, false, Some(10000.0), 1.0, 2, None));
        assert_close(&format!("rope transposed {dt:?}"), &g, &c, tol(dt) * 4.0 + 2e-5);
    }
    assert_no_fallback(&["RoPE"]);
}

/// q [b, hq, ql, d]; k and v as the first kl rows of a longer cache [b, hkv, cap, d].
fn attention_inputs(b: usize, hq: usize, hkv: usize, ql: usize, kl: usize, d: usize, dt: Dtype, seed: u64) -> (Array, Array, Array) {
    let q = rand(&[b, hq, ql, d], -1.0, 1.0, dt, seed);
    let cap = kl + 13;
    let prefix = |a: Array| slice(&a, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(None, Some(kl as isize), 1)]);
    let k = prefix(rand(&[b, hkv, cap, d], -1.0, 1.0, dt, seed + 1));
    let v = prefix(rand(&[b, hkv, cap, d], -1.0, 1.0, dt, seed + 2));
    (q, k, v)
}

#[test]
fn attention_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    // (batch, q heads, kv heads, q length, k length, head dim): decoding steps (the lane-per-key
    // kernel for heads of whole 16-byte chunks: 64, 80 with a ragged chunk group, 128, 256;
    // the warp-per-key kernel for 12; split over keys), prefill chunks (flash attention for heads of 64 and 128: several
    // 128-row blocks and 64- or 128-key tiles with ragged ends, more keys than queries, a
    // long run of double-buffered tiles) and the
    // cuBLAS path (head size 80).
    let cases = [
        (1, 8, 2, 1, 300, 64),
        (2, 4, 4, 3, 40, 128),
        (1, 6, 2, 1, 2000, 128),
        (1, 8, 2, 37, 37, 64),
        (1, 4, 2, 200, 200, 128),
        (1, 2, 2, 290, 333, 128),
        (1, 3, 1, 260, 260, 64),
        (2, 2, 1, 130, 300, 64),
        (1, 2, 1, 520, 1100, 128),
        (2, 4, 1, 9, 50, 80),
        (1, 4, 2, 1, 100, 12),
        (1, 4, 1, 2, 77, 80),
        (1, 2, 2, 4, 513, 256),
    ];
    for dt in HALF_FLOATS {
        for (ci, &(b, hq, hkv, ql, kl, d)) in cases.iter().enumerate() {
            let (q, k, v) = attention_inputs(b, hq, hkv, ql, kl, d, dt, 10 + ci as u64);
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("{dt:?} b={b} hq={hq} hkv={hkv} ql={ql} kl={kl} d={d}");
            let t = tol(dt) * 4.0 + 1e-5;
            let (g, c) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, scale, oxmx_core::ops::fast::AttentionMask::None, None));
            assert_close(&format!("sdpa {what}"), &g, &c, t);
            let (g, c) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, scale, "causal", None));
            assert_close(&format!("sdpa causal {what}"), &g, &c, t);
            let bool_mask = greater(&rand(&[ql, kl], 0.0, 1.0, Dtype::Float32, 20 + ci as u64), 0.3f32);
            let (g, c) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, scale, &bool_mask, None));
            assert_close(&format!("sdpa bool mask {what}"), &g, &c, t);
            let add_mask = rand(&[b, 1, ql, kl], -4.0, 0.0, dt, 30 + ci as u64);
            let (g, c) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, scale, &add_mask, None));
            assert_close(&format!("sdpa additive mask {what}"), &g, &c, t);
            let sinks = rand(&[hq], -1.0, 2.0, dt, 40 + ci as u64);
            let (g, c) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, scale, "causal", Some(&sinks)));
            assert_close(&format!("sdpa sinks {what}"), &g, &c, t);
        }
    }
    assert_no_fallback(&["ScaledDotProductAttention"]);
}

#[test]
fn quantized_matmul_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    let (n, k) = (96, 512);
    for dt in HALF_FLOATS {
        for bits in [2, 3, 4, 6, 8] {
            for gs in [32, 64, 128] {
                let wf = rand(&[n, k], -1.0, 1.0, dt, (bits * gs) as u64);
                let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(gs), Some(bits), "affine"));
                let b = b.expect("affine biases");
                // Dequantization is exact (the same rounding as the CPU and MLX).
                let (g, c) = both(|| dequantize(&wq, &s, Some(&b), Some(gs), Some(bits), "affine", None));
                assert_close(&format!("dequantize {dt:?} bits={bits} gs={gs}"), &g, &c, 0.0);
                // Rows of x: mat-vec kernel (1..8) and dequantize + cuBLAS (more), 3-d x.
                for rows in [1, 3, 8, 33] {
                    let x = rand(&[rows, k], -1.0, 1.0, dt, rows as u64);
                    let what = format!("qmm {dt:?} bits={bits} gs={gs} rows={rows}");
                    let (g, c) = both(|| quantized_matmul(&x, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine"));
                    let t = match dt {
                        Dtype::Float32 => 2e-5,
                        _ => tol(dt),
                    };
                    assert_close_scaled(&what, &g, &c, t);
                }
                let x3 = rand(&[2, 2, k], -1.0, 1.0, dt, 99);
                let (g, c) = both(|| quantized_matmul(&x3, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine"));
                assert_close_scaled(&format!("qmm 3-d x {dt:?} bits={bits} gs={gs}"), &g, &c, tol(dt).max(2e-5));
                // Not transposed: x [m, n] @ w [n, k].
                let xt = rand(&[5, n], -1.0, 1.0, dt, 98);
                let (g, c) = both(|| quantized_matmul(&xt, &wq, &s, Some(&b), false, Some(gs), Some(bits), "affine"));
                assert_close_scaled(&format!("qmm not transposed {dt:?} bits={bits} gs={gs}"), &g, &c, tol(dt).max(2e-5));
            }
        }
    }
    // Long rows: the mat-vec kernels split each row over several warps of a block (groups of
    // 32 to 128, rows that do not split evenly, row counts that leave a block's last rows
    // empty); many rows: one row of x streams several rows through each warp.
    for dt in HALF_FLOATS {
        for (bits, k, gs, n) in [
            (4, 4096, 64, 40),
            (4, 14336, 64, 40),
            (4, 1280, 32, 50),
            (4, 1280, 128, 50),
            (4, 4160, 64, 40),
            (8, 4096, 64, 40),
            (2, 8192, 64, 40),
            // One row of x streams many rows per warp (qmv1's ring of loads wraps), odd n.
            (4, 1024, 64, 20_001),
            (4, 4096, 128, 3_001),
            (8, 3072, 32, 4_099),
            (2, 2048, 64, 3_001),
        ] {
            let wf = rand(&[n, k], -1.0, 1.0, dt, k as u64);
            let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(gs), Some(bits), "affine"));
            let b = b.expect("affine biases");
            for rows in [1, 2, 3, 8] {
                let x = rand(&[rows, k], -1.0, 1.0, dt, 7 + rows as u64);
                let (g, c) = both(|| quantized_matmul(&x, &wq, &s, Some(&b), true, Some(gs), Some(bits), "affine"));
                assert_close_scaled(&format!("qmv long rows {dt:?} bits={bits} gs={gs} k={k} n={n} rows={rows}"), &g, &c, tol(dt));
            }
        }
    }
    assert_no_fallback(&["QuantizedMatmul", "Dequantize"]);
}

/// One row of half-precision x against 4-bit codes runs on dp4a with x as int8 pairs (each lane's
/// 32 values scaled by their largest): x spanning six decades within a lane, a lane of zeros,
/// and a NaN (every result NaN, as on the CPU).
#[test]
fn qmv1_int8_x_keeps_wide_ranges_and_nans() {
    let Some(_turn) = gpu() else { return };
    let (n, k) = (300, 4096);
    for dt in [Dtype::Float16, Dtype::Bfloat16] {
        let wf = rand(&[n, k], -1.0, 1.0, dt, 61);
        let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(64), Some(4), "affine"));
        let b = b.expect("affine biases");
        let mag = power(10.0f32, &rand(&[1, k], -3.0, 3.0, Dtype::Float32, 62));
        let idx = arange(0.0, k as f64, 1.0, Some(Dtype::Float32));
        let x = where_(less(&idx, 32.0f32), 0.0f32, multiply(&rand(&[1, k], -1.0, 1.0, Dtype::Float32, 63), &mag)).astype(dt);
        let (g, c) = both(|| quantized_matmul(&x, &wq, &s, Some(&b), true, Some(64), Some(4), "affine"));
        assert_close_scaled(&format!("qmv1 wide-range x {dt:?}"), &g, &c, tol(dt));
        let nan = where_(equal(&idx, 1000.0f32), f32::NAN, &x).astype(dt);
        let (g, c) = both(|| quantized_matmul(&nan, &wq, &s, Some(&b), true, Some(64), Some(4), "affine"));
        assert_close(&format!("qmv1 NaN x {dt:?}"), &g, &c, 0.0);
    }
    assert_no_fallback(&["QuantizedMatmul"]);
}

/// Kernels launch with programmatic dependent launch, so a mat-vec's blocks may be resident
/// while the kernel before it runs; nothing may be read before the grid-dependency wait. Here
/// each product's weight, scales and biases come out of element-wise kernels in the same
/// evaluation (the last of them right before the product), several times in a row, against the
/// CPU with the weights as they were. (The forty-first session read settled weights before the
/// wait, with the host proving which writers had finished; no decode gain on an H100, removed:
/// BENCHMARKS.md.)
#[test]
fn mat_vecs_wait_for_weights_written_just_before() {
    let Some(_turn) = gpu() else { return };
    let dt = Dtype::Bfloat16;
    for (step, (n, k)) in [(4096, 4096), (1024, 14336), (6144, 4096), (300, 2048)].into_iter().enumerate() {
        let wf = rand(&[n, k], -1.0, 1.0, dt, 40 + step as u64);
        let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(64), Some(4), "affine"));
        let b = b.expect("affine biases");
        let x = rand(&[1, k], -1.0, 1.0, dt, 50 + step as u64);
        let c = with_device(Device::Cpu, || quantized_matmul(&x, &wq, &s, Some(&b), true, Some(64), Some(4), "affine"));
        let cd = with_device(Device::Cpu, || matmul(&x, &transpose(&wf, &[1, 0])));
        for round in 0..4 {
            // x * 1 and xor 0 change nothing but are new buffers written by the step's kernels.
            let g = with_device(GPU, || {
                let (w2, s2, b2) = (bitwise_xor(&wq, 0u32), multiply(&s, 1.0f32), multiply(&b, 1.0f32));
                quantized_matmul(&x, &w2, &s2, Some(&b2), true, Some(64), Some(4), "affine")
            });
            let gd = with_device(GPU, || matmul(&x, &transpose(&multiply(&wf, 1.0f32), &[1, 0])));
            g.eval().unwrap();
            gd.eval().unwrap();
            c.eval().unwrap();
            cd.eval().unwrap();
            assert_close_scaled(&format!("qmv, weights just written, n={n} k={k} round {round}"), &g, &c, tol(dt));
            assert_close_scaled(&format!("gemv, weight just written, n={n} k={k} round {round}"), &gd, &cd, tol(dt));
        }
    }
    assert_no_fallback(&["QuantizedMatmul", "Matmul"]);
}

/// The pre-norm product: one row of x normalised inside the one-row mat-vec kernel (several
/// widths, dtypes and bit widths, k across several warps' slices), and the shapes that run the
/// norm kernel and then the product (several rows, 3 bits), against the CPU's composition.
#[test]
fn rms_norm_quantized_matmul_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in HALF_FLOATS {
        for (bits, k, gs, n, rows) in [
            (4, 4096, 64, 300, 1),
            (4, 14336, 64, 40, 1),
            (8, 1024, 32, 77, 1),
            (2, 2048, 128, 64, 1),
            (4, 4096, 64, 50, 3),
            (3, 512, 64, 40, 1),
        ] {
            let wf = rand(&[n, k], -1.0, 1.0, dt, (k + n) as u64);
            let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(gs), Some(bits), "affine"));
            let b = b.expect("affine biases");
            let x = rand(&[rows, 1, k], -3.0, 3.0, dt, 5 + rows as u64);
            let nw = rand(&[k], 0.5, 1.5, dt, 6);
            let (g, c) = both(|| rms_norm_quantized_matmul(&x, &nw, 1e-5, &wq, &s, &b, Some(gs), Some(bits)));
            assert_close_scaled(&format!("normed qmm {dt:?} bits={bits} k={k} n={n} rows={rows}"), &g, &c, tol(dt).max(2e-5));
        }
    }
    assert_no_fallback(&["RMSNormQuantizedMatmul"]);
}

/// The SwiGLU product: one row's activation inside the one-row mat-vec kernel (k across 4 and
/// 14 warps' slices, several dtypes and bit widths), and the activation kernel then the product
/// (several rows, strided gate/up views of one array, 3 bits), against the CPU.
#[test]
fn swiglu_quantized_matmul_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in HALF_FLOATS {
        for (bits, k, gs, n, rows) in
            [(4, 14336, 64, 300, 1), (4, 4096, 64, 40, 1), (8, 1024, 32, 77, 1), (4, 2048, 64, 50, 3), (3, 512, 64, 40, 1)]
        {
            let wf = rand(&[n, k], -1.0, 1.0, dt, (k + n) as u64);
            let (wq, s, b) = with_device(Device::Cpu, || quantize(&wf, Some(gs), Some(bits), "affine"));
            let b = b.expect("affine biases");
            // gate and up as the fused gate/up product leaves them: two halves of one row.
            let gu = rand(&[rows, 1, 2 * k], -4.0, 4.0, dt, 8 + rows as u64);
            let (gate, up) = (
                slice(&gu, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(None, Some(k as isize), 1)]),
                slice(&gu, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(k as isize), None, 1)]),
            );
            let (g, c) = both(|| swiglu_quantized_matmul(&gate, &up, &wq, &s, &b, Some(gs), Some(bits)));
            assert_close_scaled(&format!("swiglu qmm {dt:?} bits={bits} k={k} n={n} rows={rows}"), &g, &c, tol(dt).max(2e-5));
        }
    }
    assert_no_fallback(&["SwiGLUQuantizedMatmul"]);
}

#[test]
fn gather_slice_update_concatenate_and_pad_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in [Dtype::Float32, Dtype::Bfloat16, Dtype::Int64, Dtype::Uint8, Dtype::Bool] {
        let table = rand(&[50, 24], 0.0, 2.0, dt, 50);
        // Embedding lookup (negative index counted from the end), 2-d ids, two index arrays.
        let ids = Array::from_slice(&[3i32, 0, 49, -1, 7], &[5]);
        let (g, c) = both(|| take(&table, &ids, Some(0)));
        assert_close(&format!("take {dt:?}"), &g, &c, 0.0);
        let ids2 = Array::from_slice(&[1u32, 2, 3, 4, 5, 6], &[2, 3]);
        let (g, c) = both(|| take(&table, &ids2, Some(1)));
        assert_close(&format!("take axis 1 {dt:?}"), &g, &c, 0.0);
        let rows = Array::from_slice(&[0i64, 5, 9], &[3]);
        let cols = Array::from_slice(&[1i64, 2, 23], &[3]);
        let (g, c) = both(|| gather(&table, &[rows.clone(), cols.clone()], &[0, 1], &[1, 1]));
        assert_close(&format!("gather 2 axes {dt:?}"), &g, &c, 0.0);
        // Concatenate and pad (of a transposed view, a broadcast and a slice).
        let a = transpose(&rand(&[24, 6], 0.0, 2.0, dt, 51), &[1, 0]);
        let bb = broadcast_to(&rand(&[1, 24], 0.0, 2.0, dt, 52), &[4, 24]);
        let (g, c) = both(|| concatenate(&[table.clone(), a.clone(), bb.clone()], 0));
        assert_close(&format!("concatenate {dt:?}"), &g, &c, 0.0);
        let (g, c) = both(|| concatenate(&[a.clone(), a.clone()], 1));
        assert_close(&format!("concatenate axis 1 {dt:?}"), &g, &c, 0.0);
        let (g, c) = both(|| pad_constant(&a, &[(1, 2), (0, 3)], 1));
        assert_close(&format!("pad {dt:?}"), &g, &c, 0.0);
    }
    // A host-side index outside the axis is the CPU's error, not a wild read.
    let table = rand(&[10, 4], 0.0, 1.0, Dtype::Float32, 53);
    let bad = Array::from_slice(&[2i32, 10], &[2]);
    let r = with_device(GPU, || take(&table, &bad, Some(0)));
    let err = r.eval().expect_err("index 10 of 10 rows");
    assert!(err.to_string().contains("out of bounds"), "{err}");
    assert_no_fallback(&["Gather", "Concatenate", "Pad"]);
}

#[test]
fn kv_cache_updates_run_in_place_on_the_gpu() {
    let Some(_turn) = gpu() else { return };
    for dt in [Dtype::Float32, Dtype::Bfloat16] {
        let run = |dev: Device| {
            with_device(dev, || {
                let mut cache = zeros(&[1, 2, 16, 8], dt);
                cache.eval().unwrap();
                for step in 0..5usize {
                    let kv = rand(&[1, 2, 1 + step % 2, 8], -1.0, 1.0, dt, 60 + step as u64);
                    let at = step * 2;
                    let len = kv.shape()[2];
                    cache = slice_update(
                        &cache,
                        &kv,
                        &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(at as isize), Some((at + len) as isize), 1)],
                    );
                    cache.eval().unwrap();
                }
                cache
            })
        };
        let (to_host_before, _) = oxmx_core::memory::migrations();
        let g = run(GPU);
        let (to_host_after, _) = oxmx_core::memory::migrations();
        assert_eq!(to_host_before, to_host_after, "the cache came back to the host during the updates");
        let c = run(Device::Cpu);
        assert_close(&format!("slice_update {dt:?}"), &g, &c, 0.0);
        // A strided update into a shared buffer (no donation: the copying path).
        let base = rand(&[6, 10], -1.0, 1.0, dt, 70);
        let upd = rand(&[3, 5], -1.0, 1.0, dt, 71);
        let (g, c) = both(|| slice_update(&base, &upd, &[SliceSpec::new(Some(0), None, 2), SliceSpec::new(Some(1), Some(10), 2)]));
        assert_close(&format!("strided slice_update {dt:?}"), &g, &c, 0.0);
        let (g2, _) = both(|| base.clone());
        assert_close("the shared input is unchanged", &g2, &base, 0.0);
    }
    assert_no_fallback(&["SliceUpdate"]);
}

/// argmax, argmin (exactly) and logsumexp (within `lse_tol`) of `x` along its last axis on the
/// GPU against the CPU.
fn arg_and_lse_match(x: &Array, what: &str, lse_tol: f64) {
    let (g, c) = both(|| argmax(x, Some(-1), false));
    assert_close(&format!("argmax {what}"), &g, &c, 0.0);
    let (g, c) = both(|| argmin(x, Some(-1), false));
    assert_close(&format!("argmin {what}"), &g, &c, 0.0);
    let (g, c) = both(|| logsumexp(x, -1isize, true));
    assert_close(&format!("logsumexp {what}"), &g, &c, lse_tol);
}

#[test]
fn argmax_argmin_and_logsumexp_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in HALF_FLOATS {
        for cols in [1, 7, 300, 5000] {
            let x = rand(&[6, cols], -3.0, 3.0, dt, cols as u64);
            let (g, c) = both(|| argmax(&x, Some(-1), false));
            assert_close(&format!("argmax {dt:?} {cols}"), &g, &c, 0.0);
            let (g, c) = both(|| argmin(&x, Some(-1), true));
            assert_close(&format!("argmin {dt:?} {cols}"), &g, &c, 0.0);
        }
    }
    // Ties go to the first index; the first NaN wins.
    let x = Array::from_slice(&[1.0f32, 5.0, 5.0, 0.0, f32::NAN, 2.0, f32::NAN, 9.0], &[2, 4]);
    let (g, c) = both(|| argmax(&x, Some(-1), false));
    assert_close("argmax ties and NaN", &g, &c, 0.0);
    let (g, c) = both(|| argmin(&x, Some(-1), false));
    assert_close("argmin ties and NaN", &g, &c, 0.0);
    // logsumexp (the generator's logprobs), with an infinite and a NaN row.
    for dt in HALF_FLOATS {
        let x = rand(&[4, 32000], -20.0, 20.0, dt, 80);
        let (g, c) = both(|| logsumexp(&x, -1isize, true));
        assert_close(&format!("logsumexp {dt:?}"), &g, &c, tol(dt) * 2.0);
    }
    let special = Array::from_slice(
        &[1.0f32, f32::INFINITY, 0.0, 2.0, f32::NAN, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY],
        &[3, 3],
    );
    let (g, c) = both(|| logsumexp(&special, -1isize, true));
    assert_close("logsumexp inf and NaN rows", &g, &c, 0.0);
    // Rows long enough to be split across blocks (a vocabulary's logits), ragged lengths.
    for dt in HALF_FLOATS {
        for (rows, cols) in [(1, 128256), (2, 100003), (3, 4099)] {
            let x = rand(&[rows, cols], -20.0, 20.0, dt, 81 + cols as u64);
            arg_and_lse_match(&x, &format!("{dt:?} {rows}x{cols}"), tol(dt) * 2.0);
        }
    }
    // Split rows with the deciding values in different splits: a tie (the first wins), NaNs
    // (the first wins, logsumexp is NaN), +inf, and a row of -inf.
    let n = 60000usize;
    let row = |marks: &[(usize, f32)]| {
        let mut v = vec![0.5f32; n];
        for &(i, x) in marks {
            v[i] = x;
        }
        v
    };
    let flat: Vec<f32> = [
        row(&[(41000, 9.0), (7000, 9.0)]),
        row(&[(52000, f32::NAN), (30000, f32::NAN), (100, 9.0)]),
        row(&[(45000, f32::INFINITY), (3, 2.0)]),
        vec![f32::NEG_INFINITY; n],
        row(&[(59999, -9.0), (0, -9.0)]),
    ]
    .concat();
    let x = Array::from_slice(&flat, &[5, n]);
    for dt in HALF_FLOATS {
        arg_and_lse_match(&x.astype(dt), &format!("split ties, NaN and inf {dt:?}"), tol(dt) * 2.0);
    }
    assert_no_fallback(&["ArgMax", "ArgMin", "LogSumExp"]);
}
