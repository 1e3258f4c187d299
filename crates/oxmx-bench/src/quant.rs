//! Quantized matmul rows (mirrored in scripts/bench.py for MLX): the decode mat-vec
//! `x [1, K] @ Wᵀ` with W `[4096, 14336]` 4-bit and 8-bit affine (floor: packed bytes + scales
//! + biases at DRAM bandwidth), the same shape dense bf16 (the baseline it must beat), a
//! 512-row prefill product against the f32 matmul of the same shape, and an MoE gather_qmm.

use crate::{input, report, time};
use oxmx_core::ops;
use oxmx_core::prelude::*;

pub(crate) fn run(want: &dyn Fn(&str) -> bool) {
    let (n, k) = (4096usize, 14336usize);
    let big = ["qmv_4096x14336_q4g64_bf16", "qmv_4096x14336_q8g64_bf16", "matvec_4096x14336_bf16"];
    let need_big = big.iter().any(|name| want(name)) || want("quant");
    if need_big {
        // The floor of the mat-vec rows, measured in the same run.
        let bw = crate::fast::read_bandwidth();
        println!("{}", serde_json::json!({"impl": "note", "bench": "dram_read_bandwidth_1GiB", "GB/s": bw / 1e9}));
        let w = input(&[n, k], 20).astype(Dtype::Bfloat16);
        let x = input(&[1, k], 21).astype(Dtype::Bfloat16);
        w.eval().unwrap();
        x.eval().unwrap();
        for bits in [4usize, 8] {
            let name = format!("qmv_4096x14336_q{bits}g64_bf16");
            if want(&name) {
                let (wq, s, b) = ops::quantize(&w, Some(64), Some(bits), "affine");
                let b = b.unwrap();
                oxmx_core::eval(&[&wq, &s, &b]).unwrap();
                let bytes = (wq.nbytes() + s.nbytes() + b.nbytes() + x.nbytes()) as f64;
                let sets = copies(&[wq, s, b], bytes);
                let mut i = 0;
                let t = time(20, || {
                    i = (i + 1) % sets.len();
                    let [wq, s, b] = &sets[i];
                    ops::quantized_matmul(&x, wq, s, Some(b), true, Some(64), Some(bits), "affine")
                });
                report(&name, t, bytes, 2.0 * (n * k) as f64);
            }
        }
        if want("matvec_4096x14336_bf16") {
            let sets = copies(&[w.clone()], w.nbytes() as f64);
            let mut i = 0;
            let t = time(20, || {
                i = (i + 1) % sets.len();
                ops::matmul(&x, &ops::transpose(&sets[i][0], &[1, 0]))
            });
            report("matvec_4096x14336_bf16", t, w.nbytes() as f64, 2.0 * (n * k) as f64);
        }
    }
    // The same kernel on matrices that stay in L2 (512 KB packed) and L3 (2 MB): how fast it
    // computes when DRAM is not the limit, the ceiling of the large row above.
    for (n, k) in [(512usize, 2048usize), (1024, 4096)] {
        let name = format!("qmv_{n}x{k}_q4g64_bf16_cached");
        if want(&name) {
            let w = input(&[n, k], 26).astype(Dtype::Bfloat16);
            let x = input(&[1, k], 27).astype(Dtype::Bfloat16);
            let (wq, s, b) = ops::quantize(&w, Some(64), Some(4), "affine");
            let b = b.unwrap();
            oxmx_core::eval(&[&wq, &s, &b, &x]).unwrap();
            let bytes = (wq.nbytes() + s.nbytes() + b.nbytes() + x.nbytes()) as f64;
            report(
                &name,
                time(2000, || ops::quantized_matmul(&x, &wq, &s, Some(&b), true, Some(64), Some(4), "affine")),
                bytes,
                2.0 * (n * k) as f64,
            );
        }
    }
    // SmolLM2-135M's decode shapes (576 wide, groups of 32, f32 activations): short rows, where
    // per-row costs weigh more than on the 14336-wide rows above.
    // `_m8`: eight rows of x at once (a decode batch of 8: the weights are read once for all).
    for (n, k, m) in [(1536usize, 576usize, 1usize), (576, 1536, 1), (49152, 576, 1), (1536, 576, 8), (576, 1536, 8), (49152, 576, 8)] {
        let name = if m == 1 { format!("qmv_{n}x{k}_q4g32_f32") } else { format!("qmv_{n}x{k}_q4g32_f32_m{m}") };
        if want(&name) {
            let w = input(&[n, k], 24);
            let x = input(&[m, k], 25);
            let (wq, s, b) = ops::quantize(&w, Some(32), Some(4), "affine");
            let b = b.unwrap();
            oxmx_core::eval(&[&wq, &s, &b, &x]).unwrap();
            let bytes = (wq.nbytes() + s.nbytes() + b.nbytes() + x.nbytes()) as f64;
            let reps = if n > 10000 { 50 } else { 400 };
            report(
                &name,
                time(reps, || ops::quantized_matmul(&x, &wq, &s, Some(&b), true, Some(32), Some(4), "affine")),
                bytes,
                2.0 * (m * n * k) as f64,
            );
        }
    }
    let (m, n2, k2) = (512usize, 4096usize, 4096usize);
    if want("qmm_512x4096x4096_q4g64_f32") || want("matmul_512x4096x4096_f32") {
        let w = input(&[n2, k2], 22);
        let x = input(&[m, k2], 23);
        oxmx_core::eval(&[&w, &x]).unwrap();
        let flops = 2.0 * (m * n2 * k2) as f64;
        if want("qmm_512x4096x4096_q4g64_f32") {
            let (wq, s, b) = ops::quantize(&w, Some(64), Some(4), "affine");
            let b = b.unwrap();
            oxmx_core::eval(&[&wq, &s, &b]).unwrap();
            report(
                "qmm_512x4096x4096_q4g64_f32",
                time(5, || ops::quantized_matmul(&x, &wq, &s, Some(&b), true, Some(64), Some(4), "affine")),
                0.0,
                flops,
            );
        }
        if want("matmul_512x4096x4096_f32") {
            let wt = ops::transpose(&w, &[1, 0]);
            report("matmul_512x4096x4096_f32", time(5, || ops::matmul(&x, &wt)), 0.0, flops);
        }
    }
    if want("gather_qmm_moe") {
        // 8 experts of [1408, 2048] (4-bit g64), 4 tokens routed to 2 experts each.
        let (e, n3, k3) = (8usize, 1408usize, 2048usize);
        let w = input(&[e, n3, k3], 24).astype(Dtype::Bfloat16);
        let x = input(&[8, 1, k3], 25).astype(Dtype::Bfloat16);
        let (wq, s, b) = ops::quantize(&w, Some(64), Some(4), "affine");
        let b = b.unwrap();
        let idx = Array::vec(&[0u32, 3, 1, 3, 7, 2, 5, 0]);
        oxmx_core::eval(&[&wq, &s, &b, &x, &idx]).unwrap();
        let bytes = (8 * n3 * k3 / 2) as f64;
        report(
            "gather_qmm_moe_8x1408x2048_q4g64_bf16",
            time(20, || ops::gather_qmm(&x, &wq, &s, Some(&b), None, Some(&idx), true, Some(64), Some(4), "affine", false)),
            bytes,
            2.0 * (8 * n3 * k3) as f64,
        );
    }
}

/// Copies of a mat-vec row's weights (`arrays`, `bytes` in all) filling 1 GiB, for the timed
/// calls to cycle through, as a decoding step moves from layer to layer: each call reads its
/// weights from DRAM. Repeating one matrix would read it from L3 wherever L3 holds it (a VM
/// here reports 480 MiB; a 117 MB bf16 matrix then ran at 53 GB/s against 35 from DRAM).
fn copies<const N: usize>(arrays: &[Array; N], bytes: f64) -> Vec<[Array; N]> {
    let count = ((1u64 << 30) as f64 / bytes).ceil().max(2.0) as usize;
    let mut sets = vec![arrays.clone()];
    for _ in 1..count {
        // `+ 0` of the array's own dtype: a fresh buffer with the same values.
        let set: [Array; N] = std::array::from_fn(|j| &arrays[j] + &Array::scalar(0).astype(arrays[j].dtype()));
        oxmx_core::eval(&set.iter().collect::<Vec<_>>()).unwrap();
        sets.push(set);
    }
    sets
}
