//! What one CPU op costs at a training step's activation shapes: each op evaluated alone, with
//! its inputs evaluated (and warm in cache) first, median of many runs. Numbers are printed,
//! not asserted: they say which of a training step's element-wise ops are slower than their
//! bytes. `cargo run --release -p oxmx-bench --example cpu_op_probe`.

use oxmx_core::prelude::*;
use oxmx_core::{random, Dtype};
use std::time::Instant;

fn time(name: &str, bytes: usize, f: &dyn Fn() -> Array) {
    let mut t: Vec<f64> = (0..60)
        .map(|_| {
            let st = Instant::now();
            let y = f();
            y.eval().unwrap();
            st.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = t[t.len() / 2];
    println!("{name:48} {med:8.1} us  {:6.1} GB/s", bytes as f64 / med / 1e3);
}

/// A product evaluated `runs` times alone: the median with its GFLOP/s, and the best run.
fn time_flops(name: &str, flops: f64, runs: usize, f: &dyn Fn() -> Array) {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let st = Instant::now();
            f().eval().unwrap();
            st.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v[runs / 2];
    println!("{name:48} {:8.1} us  {:6.1} GFLOP/s (best {:8.1} us)", med * 1e6, flops / med / 1e9, v[0] * 1e6);
}

fn main() {
    if std::env::args().any(|a| a == "--unary") {
        // Element-wise unary kernels at a size that fits the last-level cache (compute-bound
        // rate) and at issue 2's 16M (memory-bound rate), beside abs (a copy in all but name).
        for n in [1usize << 18, 1 << 20, 1 << 24] {
            let x = random::normal(&[n], Dtype::Float32, 0.0, 1.0, None);
            x.eval().unwrap();
            let b = 8 * n;
            time(&format!("abs {n}"), b, &|| ops::abs(&x));
            time(&format!("exp {n}"), b, &|| ops::exp(&x));
            time(&format!("tanh {n}"), b, &|| ops::tanh(&x));
            time(&format!("sigmoid {n}"), b, &|| ops::sigmoid(&x));
        }
        return;
    }
    if std::env::args().any(|a| a == "--conv") {
        // issue 2's first conv2d row (NHWC 1×56×56×64, 3×3, 64 out, padding 1), many times.
        let x = random::normal(&[1, 56, 56, 64], Dtype::Float32, 0.0, 1.0, None);
        let w = random::normal(&[64, 3, 3, 64], Dtype::Float32, 0.0, 1.0, None);
        oxmx_core::eval(&[&x, &w]).unwrap();
        let flops = 2.0 * (56 * 56 * 64 * 64 * 9) as f64;
        time_flops("conv2d 1x56x56x64 3x3 -> 64", flops, 400, &|| ops::conv2d(&x, &w, [1, 1], [1, 1], [1, 1], 1));
        return;
    }
    let x = random::normal(&[32, 64, 128], Dtype::Float32, 0.0, 1.0, None);
    let y = random::normal(&[32, 64, 128], Dtype::Float32, 0.0, 1.0, None);
    let h = random::normal(&[32, 64, 512], Dtype::Float32, 0.0, 1.0, None);
    let s = random::normal(&[32, 4, 64, 64], Dtype::Float32, 0.0, 1.0, None);
    let row = random::normal(&[32, 64, 1], Dtype::Float32, 0.0, 1.0, None);
    let col = random::normal(&[128], Dtype::Float32, 0.0, 1.0, None);
    let col512 = random::normal(&[512], Dtype::Float32, 0.0, 1.0, None);
    let qkv = random::normal(&[32, 64, 4, 32], Dtype::Float32, 0.0, 1.0, None);
    let w = random::normal(&[128, 128], Dtype::Float32, 0.0, 1.0, None);
    let w2 = random::normal(&[128, 128], Dtype::Float32, 0.0, 1.0, None);
    oxmx_core::eval(&[&x, &y, &h, &s, &row, &col, &col512, &qkv, &w, &w2]).unwrap();
    let wb = 128 * 128 * 4;
    // Attention's batched products at a training step's strides (128 products of 64×64×32):
    // q, k, v are head views of [32, 64, 128] activations, p the [32, 4, 64, 64] probabilities.
    let heads = |t: &Array| ops::transpose(&ops::reshape(t, &[32, 64, 4, 32]), &[0, 2, 1, 3]);
    let (qa, ka) = (heads(&x), heads(&y));
    let d_o = random::normal(&[32, 4, 64, 32], Dtype::Float32, 0.0, 1.0, None);
    d_o.eval().unwrap();
    let af = 2.0 * (128 * 64 * 64 * 32) as f64;
    let t_att = |name: &str, f: &dyn Fn() -> Array| time_flops(name, af, 40, f);
    t_att("attn q @ kT [32,4,64,32]x[32,4,32,64]", &|| ops::matmul(&qa, &ops::swapaxes(&ka, -1, -2)));
    t_att("attn p @ v [32,4,64,64]x[32,4,64,32]", &|| ops::matmul(&s, &ka));
    t_att("attn pT @ dO", &|| ops::matmul(&ops::swapaxes(&s, -1, -2), &d_o));
    t_att("attn dO @ vT", &|| ops::matmul(&d_o, &ops::swapaxes(&ka, -1, -2)));
    t_att("attn kT @ dS [32,4,32,64]x[32,4,64,64]", &|| ops::matmul(&ops::swapaxes(&ka, -1, -2), &s));
    if std::env::args().any(|a| a == "--softmax") {
        // For perf: attention's softmax alone, many times.
        for _ in 0..3000 {
            ops::softmax(&s, -1, false).eval().unwrap();
        }
        return;
    }
    if std::env::args().any(|a| a == "--attn-only") {
        return;
    }
    if std::env::args().any(|a| a == "--attn") {
        // For perf: only the attention products, many times.
        for _ in 0..2000 {
            ops::matmul(&qa, &ops::swapaxes(&ka, -1, -2)).eval().unwrap();
        }
        return;
    }
    // A training step's products: weight gradients gᵀ·x (A a transposed view, k = tokens).
    for (m, k, n) in [(128, 2048, 128), (128, 2048, 512), (512, 2048, 128), (2048, 128, 128), (2048, 128, 512), (2048, 512, 128)] {
        let g = random::normal(&[k, m], Dtype::Float32, 0.0, 1.0, None);
        let xx = random::normal(&[k, n], Dtype::Float32, 0.0, 1.0, None);
        let a = random::normal(&[m, k], Dtype::Float32, 0.0, 1.0, None);
        let wt = random::normal(&[n, k], Dtype::Float32, 0.0, 1.0, None);
        oxmx_core::eval(&[&g, &xx, &a, &wt]).unwrap();
        let gf = 2.0 * (m * n * k) as f64;
        let t = |name: &str, f: &dyn Fn() -> Array| time_flops(name, gf, 30, f);
        t(&format!("gT @ x {m}x{k}x{n}"), &|| ops::matmul(&ops::swapaxes(&g, 0, 1), &xx));
        t(&format!("a @ x {m}x{k}x{n}"), &|| ops::matmul(&a, &xx));
        t(&format!("a @ wT {m}x{k}x{n}"), &|| ops::matmul(&a, &ops::swapaxes(&wt, 0, 1)));
    }
    if std::env::args().any(|a| a == "--chain") {
        // For perf: only the chain of small ops, many times.
        for _ in 0..300 {
            (0..200).fold(w.clone(), |a, _| &a * 0.999f32).eval().unwrap();
        }
        return;
    }
    time("w * 0.9 [128,128]", 2 * wb, &|| &w * 0.9f32);
    time("w * w2 [128,128]", 3 * wb, &|| &w * &w2);
    time("w * 0.9 + w2 * 0.1 [128,128]", 5 * wb, &|| &w * 0.9f32 + &w2 * 0.1f32);
    time("chain of 200 (w * 0.999) [128,128], per op", 2 * wb * 200, &|| (0..200).fold(w.clone(), |a, _| &a * 0.999f32));
    time("200 independent (w * c) summed by 200 adds", 2 * wb * 400, &|| {
        (0..200).map(|i| &w * (i as f32)).fold(w2.clone(), |a, b| &a + &b)
    });
    let mb = 32 * 64 * 128 * 4;
    time("x * y [32,64,128]", 3 * mb, &|| &x * &y);
    time("x + y [32,64,128]", 3 * mb, &|| &x + &y);
    time("x * 0.5 [32,64,128]", 2 * mb, &|| &x * 0.5f32);
    time("x * row [32,64,1]", 2 * mb, &|| &x * &row);
    time("x * col [128]", 2 * mb, &|| &x * &col);
    time("x + col [128]", 2 * mb, &|| &x + &col);
    time("h + col512 [32,64,512]", 8 * mb, &|| &h + &col512);
    time("maximum(h, 0) [32,64,512]", 8 * mb, &|| ops::maximum(&h, 0.0f32));
    time("h >= 0 [32,64,512]", 5 * mb, &|| ops::greater_equal(&h, 0.0f32));
    let mask = ops::greater_equal(&h, 0.0f32);
    mask.eval().unwrap();
    time("where(h >= 0, h, 0) [32,64,512]", 9 * mb, &|| ops::where_(&mask, &h, 0.0f32));
    let table = random::normal(&[96, 128], Dtype::Float32, 0.0, 1.0, None);
    let tokens = random::randint(0, 96, &[32, 64], Dtype::Int32, None);
    oxmx_core::eval(&[&table, &tokens]).unwrap();
    time("take(table [96,128], tokens [32,64], 0)", 2 * mb, &|| ops::take(&table, &tokens, Some(0)));
    time("sum(x, -1) [32,64,128]", mb, &|| ops::sum(&x, -1, true));
    time("sum(x, (0,1)) [32,64,128]", mb, &|| ops::sum(&x, vec![0, 1], false));
    time("softmax(s, -1) [32,4,64,64]", 2 * 2 * mb, &|| ops::softmax(&s, -1, false));
    let q = random::normal(&[32, 4, 64, 32], Dtype::Float32, 0.0, 1.0, None);
    let mask = random::normal(&[64, 64], Dtype::Float32, 0.0, 1.0, None);
    oxmx_core::eval(&[&q, &mask]).unwrap();
    let scores = || &ops::matmul(&q, &ops::swapaxes(&q, -1, -2)) + &mask;
    time("q @ kT + mask [32,4,64,64]", 2 * 2 * mb, &scores);
    time("softmax(q @ kT + mask, precise)", 2 * 2 * mb, &|| ops::softmax(&scores(), -1, true));
    time("s * s [32,4,64,64]", 3 * 2 * mb, &|| &s * &s);
    time("transpose(qkv, 0,2,1,3) copy", 2 * mb, &|| ops::contiguous(&ops::transpose(&qkv, &[0, 2, 1, 3])));
}
