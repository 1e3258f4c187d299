//! mx.fast workloads: rms_norm, rope and decode attention (one query over a 32k-token cache,
//! grouped-query heads 32/8, head dim 128) in f32 and f16, plus the machine's DRAM read
//! bandwidth, the floor of those memory-bound kernels (mirrored in scripts/bench.py).

use crate::{input, report, time};
use oxmx_core::fast;
use oxmx_core::prelude::*;
use std::time::Instant;

/// Read bandwidth (bytes per second): every thread sums its share of a 1 GiB buffer, far
/// larger than the caches.
pub(crate) fn read_bandwidth() -> f64 {
    let n = 1usize << 28;
    let src = crate::HostF32::new(n, 1.0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let run = || {
        std::thread::scope(|s| {
            let chunk = n.div_ceil(threads);
            let hs: Vec<_> = src
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        // Independent lanes so the sum is bandwidth- not latency-bound.
                        let mut acc = [0f32; 16];
                        for b in c.chunks_exact(16) {
                            for l in 0..16 {
                                acc[l] += b[l];
                            }
                        }
                        acc.iter().sum::<f32>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<f32>()
        })
    };
    std::hint::black_box(run());
    let mut best = f64::MAX;
    for _ in 0..5 {
        let st = Instant::now();
        std::hint::black_box(run());
        best = best.min(st.elapsed().as_secs_f64());
    }
    (n * 4) as f64 / best
}

pub fn run(want: &dyn Fn(&str) -> bool) {
    let mut read_bw = None;
    let mut bw = || {
        *read_bw.get_or_insert_with(|| {
            let b = read_bandwidth();
            println!("{}", serde_json::json!({"impl": "note", "bench": "dram_read_bandwidth_1GiB", "GB/s": b / 1e9}));
            b
        })
    };
    if want("fast_rms_norm") {
        for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
            let x = input(&[4096, 4096], 20).astype(dt);
            let w = input(&[4096], 21).astype(dt);
            x.eval().unwrap();
            w.eval().unwrap();
            let bytes = (2 * 4096 * 4096 * dt.size()) as f64;
            report(&format!("fast_rms_norm_4096x4096_{}", dt.name()), time(10, || fast::rms_norm(&x, Some(&w), 1e-5)), bytes, 0.0);
        }
    }
    if want("fast_rope") {
        for dt in [Dtype::Float32, Dtype::Float16] {
            let x = input(&[1, 32, 1024, 128], 22).astype(dt);
            x.eval().unwrap();
            let bytes = (2 * x.size() * dt.size()) as f64;
            report(
                &format!("fast_rope_1x32x1024x128_{}", dt.name()),
                time(10, || fast::rope(&x, 128, false, Some(10000.0), 1.0, 7, None)),
                bytes,
                0.0,
            );
        }
    }
    if want("fast_sdpa_decode") {
        for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
            let (hq, hkv, kl, d) = (32, 8, 32768, 128);
            let q = input(&[1, hq, 1, d], 23).astype(dt);
            let k = input(&[1, hkv, kl, d], 24).astype(dt);
            let v = input(&[1, hkv, kl, d], 25).astype(dt);
            oxmx_core::eval(&[&q, &k, &v]).unwrap();
            let bytes = (2 * hkv * kl * d * dt.size()) as f64;
            let flops = (4 * hq * kl * d) as f64;
            let name = format!("fast_sdpa_decode_gqa32x8_k32768_d128_{}", dt.name());
            let t = time(10, || fast::scaled_dot_product_attention(&q, &k, &v, 1.0 / (d as f32).sqrt(), "causal", None));
            report(&name, t, bytes, flops);
            let floor = bytes / bw();
            println!(
                "{}",
                serde_json::json!({"impl": "note", "bench": name, "floor_ms (K+V bytes / DRAM read bandwidth)": floor * 1e3, "achieved/floor": floor / t})
            );
        }
    }
}
