//! GPU rows (`gpu_*`, only when the default device is a GPU), named as in scripts/bench_gpu.py,
//! which times the same workloads in PyTorch in the same run: the bf16 GEMMs (8192³
//! and the Llama-3-8B projections for a 512-token prefill), causal attention 1×32×4096×128,
//! decoding attention over KV caches of 640 to 32k positions, and the decode mat-vecs at the
//! Llama-3-8B shapes, dense bf16 and 4-bit g64 (floor: the weight or cache bytes at copy
//! bandwidth).
//!
//! The `gpu_matvec_*`/`gpu_qmv_*` rows repeat one product on one weight: a matrix of 29-33 MB
//! is then partly served from the 50 MB L2 (rates above copy bandwidth), and a 9-14 MB one
//! takes the host's dispatch time per evaluation (~9 µs) rather than the kernel's. The
//! `gpuseq_*` rows time the products the way a decoding step runs them: 256 products in one
//! evaluation (one CUDA graph per 256 kernels), cycling through enough distinct weights
//! (`SEQ_BYTES`) that each product reads its weight from DRAM. With `OXMX_GPU_PROFILE=1`
//! (scripts/bench_gpu.py sets it for these rows) the time is the GPU's own clock over the
//! graphs; without it, the host's wall clock, which also counts the recording of the first
//! graph.

use crate::{input, report, time};
use oxmx_core::ops;
use oxmx_core::prelude::*;

/// (name, m, n, k) of the prefill projections: q/k/v fused, o, gate and up, down.
const GEMMS: &[(&str, usize, usize, usize)] = &[
    ("gpu_gemm_8192_bf16", 8192, 8192, 8192),
    ("gpu_gemm_512x6144x4096_bf16", 512, 6144, 4096),
    ("gpu_gemm_512x4096x4096_bf16", 512, 4096, 4096),
    ("gpu_gemm_512x14336x4096_bf16", 512, 14336, 4096),
    ("gpu_gemm_512x4096x14336_bf16", 512, 4096, 14336),
];

/// (n, k) of the decode mat-vecs: q/k/v fused, o, gate/up, down.
const MATVECS: &[(usize, usize)] = &[(6144, 4096), (4096, 4096), (14336, 4096), (4096, 14336)];

/// Distinct weight bytes a `gpuseq_` row cycles through: over three times the 50 MB L2 of an
/// H100/H200, so a weight is evicted before its next turn.
const SEQ_BYTES: usize = 160 << 20;
/// Products a `gpuseq_` evaluation queues.
const SEQ_PRODUCTS: usize = 256;

pub(crate) fn run(want: &dyn Fn(&str) -> bool) {
    if !oxmx_core::default_device().is_gpu() {
        return;
    }
    for &(name, m, n, k) in GEMMS {
        if want(name) {
            let a = input(&[m, k], 1).astype(Dtype::Bfloat16);
            let b = ops::transpose(&input(&[n, k], 2).astype(Dtype::Bfloat16), &[1, 0]);
            oxmx_core::eval(&[&a, &b]).unwrap();
            report(name, time(10, || ops::matmul(&a, &b)), 0.0, 2.0 * (m * n * k) as f64);
        }
    }
    if want("gpu_sdpa_causal_1x32x4096x128_bf16") {
        let q = input(&[1, 32, 4096, 128], 3).astype(Dtype::Bfloat16);
        let k = input(&[1, 32, 4096, 128], 4).astype(Dtype::Bfloat16);
        let v = input(&[1, 32, 4096, 128], 5).astype(Dtype::Bfloat16);
        oxmx_core::eval(&[&q, &k, &v]).unwrap();
        let scale = 1.0 / (128f32).sqrt();
        // Causal: half of the 4 · 32 · 4096² · 128 multiply-adds count.
        let flops = 2.0 * 2.0 * 32.0 * 4096.0 * 4096.0 * 128.0 / 2.0;
        report(
            "gpu_sdpa_causal_1x32x4096x128_bf16",
            time(10, || oxmx_core::fast::scaled_dot_product_attention(&q, &k, &v, scale, "causal", None)),
            0.0,
            flops,
        );
    }
    // Decoding attention over a KV cache (one query, GQA 32/8, head 128): the floor is the
    // K and V bytes at copy bandwidth.
    for kl in [640usize, 4096, 32768] {
        let name = format!("gpu_sdpa_decode_gqa32x8_k{kl}_d128_bf16");
        if !want(&name) {
            continue;
        }
        let q = input(&[1, 32, 1, 128], 8).astype(Dtype::Bfloat16);
        let k = input(&[1, 8, kl, 128], 9).astype(Dtype::Bfloat16);
        let v = input(&[1, 8, kl, 128], 10).astype(Dtype::Bfloat16);
        oxmx_core::eval(&[&q, &k, &v]).unwrap();
        let scale = 1.0 / (128f32).sqrt();
        let flops = 2.0 * 2.0 * 32.0 * kl as f64 * 128.0;
        report(
            &name,
            time(50, || oxmx_core::fast::scaled_dot_product_attention(&q, &k, &v, scale, oxmx_core::ops::fast::AttentionMask::None, None)),
            (k.nbytes() + v.nbytes()) as f64,
            flops,
        );
    }
    for &(n, k) in MATVECS {
        seq_rows(want, n, k);
        let dense = format!("gpu_matvec_{n}x{k}_bf16");
        let q4 = format!("gpu_qmv_{n}x{k}_q4g64_bf16");
        if !want(&dense) && !want(&q4) {
            continue;
        }
        let w = input(&[n, k], 6).astype(Dtype::Bfloat16);
        let x = input(&[1, k], 7).astype(Dtype::Bfloat16);
        oxmx_core::eval(&[&w, &x]).unwrap();
        if want(&dense) {
            let wt = ops::transpose(&w, &[1, 0]);
            report(&dense, time(50, || ops::matmul(&x, &wt)), w.nbytes() as f64, 2.0 * (n * k) as f64);
        }
        if want(&q4) {
            let (wq, s, b) = ops::quantize(&w, Some(64), Some(4), "affine");
            let b = b.unwrap();
            oxmx_core::eval(&[&wq, &s, &b]).unwrap();
            let bytes = (wq.nbytes() + s.nbytes() + b.nbytes()) as f64;
            report(
                &q4,
                time(50, || ops::quantized_matmul(&x, &wq, &s, Some(&b), true, Some(64), Some(4), "affine")),
                bytes,
                2.0 * (n * k) as f64,
            );
        }
    }
}

/// The `gpuseq_` rows of one mat-vec shape (module doc): dense bf16 and 4-bit g64.
fn seq_rows(want: &dyn Fn(&str) -> bool, n: usize, k: usize) {
    let dense = format!("gpuseq_matvec_{n}x{k}_bf16");
    let q4 = format!("gpuseq_qmv_{n}x{k}_q4g64_bf16");
    if !want(&dense) && !want(&q4) {
        return;
    }
    let w = input(&[n, k], 6).astype(Dtype::Bfloat16);
    let x = input(&[1, k], 7).astype(Dtype::Bfloat16);
    // Distinct weights made on the device (scaled copies), not generated on the host.
    let scaled = |i: usize| &w * (1.0 + i as f32 / 64.0);
    let copies = |bytes: usize| (SEQ_BYTES.div_ceil(bytes)).max(4);
    if want(&dense) {
        let ws: Vec<Array> = (0..copies(w.nbytes())).map(|i| ops::transpose(&scaled(i), &[1, 0])).collect();
        oxmx_core::eval(&ws.iter().collect::<Vec<_>>()).unwrap();
        let t = time_seq(|j| ops::matmul(&x, &ws[j % ws.len()]));
        report(&dense, t, w.nbytes() as f64, 2.0 * (n * k) as f64);
    }
    if want(&q4) {
        let quantized = |i: usize| {
            let (wq, s, b) = ops::quantize(&scaled(i), Some(64), Some(4), "affine");
            (wq, s, b.unwrap())
        };
        // The first copy gives the bytes a product reads, and with them the number of copies.
        let mut qs = vec![quantized(0)];
        let bytes = qs[0].0.nbytes() + qs[0].1.nbytes() + qs[0].2.nbytes();
        qs.extend((1..copies(bytes)).map(quantized));
        oxmx_core::eval(&qs.iter().flat_map(|(a, b, c)| [a, b, c]).collect::<Vec<_>>()).unwrap();
        let t = time_seq(|j| {
            let (wq, s, b) = &qs[j % qs.len()];
            ops::quantized_matmul(&x, wq, s, Some(b), true, Some(64), Some(4), "affine")
        });
        report(&q4, t, bytes as f64, 2.0 * (n * k) as f64);
    }
}

/// Seconds per product of `SEQ_PRODUCTS` products evaluated together, the second of two passes
/// (the first compiles, allocates and instantiates the graphs): by the GPU's clock over the
/// graphs when `OXMX_GPU_PROFILE` is on, else by the host's wall clock.
fn time_seq(product: impl Fn(usize) -> Array) -> f64 {
    let pass = || {
        let ys: Vec<Array> = (0..SEQ_PRODUCTS).map(&product).collect();
        let start = std::time::Instant::now();
        oxmx_core::eval(&ys.iter().collect::<Vec<_>>()).expect("benchmark workload failed");
        oxmx_core::synchronize(oxmx_core::default_stream());
        start.elapsed().as_secs_f64()
    };
    pass();
    oxmx_core::backend::cuda::profile_reset();
    let wall = pass();
    let gpu = oxmx_core::backend::cuda::profile()
        .into_iter()
        .find(|(name, _)| name.starts_with("~gpu") && name.contains("graphs running"))
        .map(|(_, (_, busy))| busy);
    match gpu {
        Some(busy) if busy > 0.0 => busy / SEQ_PRODUCTS as f64,
        _ => {
            eprintln!("[gpuseq] no GPU-clock rows (OXMX_GPU_PROFILE unset or no graphs): host wall time");
            wall / SEQ_PRODUCTS as f64
        }
    }
}
