//! Transform workloads: `value_and_grad` of an MLP against its forward pass, and the peak
//! memory of a deep residual MLP's backward pass with and without `checkpoint`.

use crate::{input, report};
use oxmx_core::memory;
use oxmx_core::ops;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{checkpoint, value_and_grad};
use std::time::Instant;

/// Median seconds of evaluating everything `f` returns (after one warm-up).
fn time_all(iters: usize, mut f: impl FnMut() -> Vec<Array>) -> f64 {
    let run = |v: Vec<Array>| oxmx_core::eval(&v.iter().collect::<Vec<_>>()).expect("benchmark workload failed");
    run(f());
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let st = Instant::now();
            run(f());
            st.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// tanh MLP `x → … → 10`, mean-square loss. Mirrored in scripts/bench.py (`mlp_*`).
pub const MLP_BATCH: usize = 256;
pub const MLP_DIMS: [usize; 5] = [1024, 1024, 1024, 1024, 10];

fn mlp_loss(ws: &[Array], x: &Array) -> Array {
    let mut h = x.clone();
    for (i, w) in ws.iter().enumerate() {
        h = ops::matmul(&h, w);
        if i + 1 < ws.len() {
            h = ops::tanh(&h);
        }
    }
    ops::mean(&ops::square(&h), None, false)
}

pub fn run(want: &dyn Fn(&str) -> bool) {
    if want("mlp") {
        let x = input(&[MLP_BATCH, MLP_DIMS[0]], 11);
        let ws: Vec<Array> = MLP_DIMS.windows(2).enumerate().map(|(i, d)| input(&[d[0], d[1]], 20 + i as u64) * 0.03).collect();
        oxmx_core::eval(&ws.iter().chain([&x]).collect::<Vec<_>>()).unwrap();
        let flops: f64 = MLP_DIMS.windows(2).map(|d| 2.0 * (MLP_BATCH * d[0] * d[1]) as f64).sum();
        let fwd = time_all(10, || vec![mlp_loss(&ws, &x)]);
        report("mlp_forward_b256_1024x3", fwd, 0.0, flops);
        let xc = x.clone();
        let vg = value_and_grad(move |w: Vec<Array>| mlp_loss(&w, &xc));
        let both = time_all(10, || {
            let (l, g) = vg(ws.clone());
            std::iter::once(l).chain(g).collect()
        });
        // Backward: one matmul per weight gradient and one per input gradient but the first.
        report("mlp_value_and_grad_b256_1024x3", both, 0.0, 3.0 * flops);
        println!("{}", serde_json::json!({"impl": "note", "bench": "mlp_value_and_grad_over_forward", "ratio": both / fwd}));
    }
    if want("checkpoint") {
        let (plain, ck) = checkpoint_peaks();
        println!(
            "{}",
            serde_json::json!({"impl": "note", "bench": "checkpoint_residual_mlp_peak_mb", "plain": plain as f64 / 1e6, "checkpoint": ck as f64 / 1e6})
        );
    }
}

/// Residual blocks `h + W2·gelu(W1·h)` (4× expansion): each block keeps several wide
/// intermediates for its backward pass unless checkpointed.
pub fn checkpoint_peaks() -> (usize, usize) {
    let (batch, d, hidden, blocks) = (2048, 256, 1024, 8);
    let x = input(&[batch, d], 31);
    let ws: Vec<Array> =
        (0..blocks).flat_map(|b| [input(&[d, hidden], 40 + b as u64) * 0.05, input(&[hidden, d], 60 + b as u64) * 0.05]).collect();
    oxmx_core::eval(&ws.iter().chain([&x]).collect::<Vec<_>>()).unwrap();
    fn block(v: &[Array]) -> Array {
        let z = ops::matmul(&v[0], &v[1]);
        let g = &z * 0.5 * (ops::tanh(&((&z + ops::power(&z, 3.0) * 0.044715) * 0.7978845608)) + 1.0);
        &v[0] + ops::matmul(&g, &v[2])
    }
    let peak = |use_ck: bool| -> usize {
        let xc = x.clone();
        let ck = checkpoint(|v: &[Array]| Ok(vec![block(v)]));
        let vg = value_and_grad(move |w: Vec<Array>| {
            let mut h = xc.clone();
            for b in 0..blocks {
                let args = [h.clone(), w[2 * b].clone(), w[2 * b + 1].clone()];
                h = if use_ck { ck(&args).unwrap().remove(0) } else { block(&args) };
            }
            ops::mean(&ops::square(&h), None, false)
        });
        memory::clear_cache();
        memory::reset_peak_memory();
        let base = memory::active_memory();
        let (l, g) = vg(ws.clone());
        oxmx_core::eval(&std::iter::once(&l).chain(g.iter()).collect::<Vec<_>>()).unwrap();
        memory::peak_memory() - base
    };
    (peak(false), peak(true))
}
