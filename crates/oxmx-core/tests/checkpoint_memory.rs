//! `checkpoint` lowers the peak memory of a backward pass (its own test binary: peak memory is
//! process-wide, so nothing may run beside it).

use oxmx_core::memory;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{checkpoint, value_and_grad};

fn block(v: &[Array]) -> Array {
    // Several wide intermediates per block (4x expansion).
    let z = matmul(&v[0], &v[1]);
    let a = sigmoid(&z) * &z;
    let b = square(&tanh(&a)) + &a;
    &v[0] + matmul(&b, &v[2])
}

fn peak(x: &Array, ws: &[Array], blocks: usize, use_checkpoint: bool) -> (usize, Vec<Array>) {
    let xc = x.clone();
    let ck = checkpoint(|v: &[Array]| Ok(vec![block(v)]));
    let vg = value_and_grad(move |w: Vec<Array>| {
        let mut h = xc.clone();
        for b in 0..blocks {
            let args = [h.clone(), w[2 * b].clone(), w[2 * b + 1].clone()];
            h = if use_checkpoint { ck(&args).unwrap().remove(0) } else { block(&args) };
        }
        mean(&square(&h), None, false)
    });
    memory::clear_cache();
    memory::reset_peak_memory();
    let base = memory::active_memory();
    let (l, g) = vg(ws.to_vec());
    let all: Vec<&Array> = std::iter::once(&l).chain(g.iter()).collect();
    oxmx_core::eval(&all).unwrap();
    (memory::peak_memory() - base, g)
}

#[test]
fn checkpoint_lowers_peak_memory_with_equal_gradients() {
    let (batch, d, hidden, blocks) = (512, 64, 256, 8);
    let x = random::normal(&[batch, d], Dtype::Float32, 0.0, 1.0, Some(&random::key(1)));
    let keys = random::split(&random::key(2), 2 * blocks);
    let ws: Vec<Array> = (0..2 * blocks)
        .map(|i| {
            let shape = if i % 2 == 0 { [d, hidden] } else { [hidden, d] };
            random::normal(&shape, Dtype::Float32, 0.0, 0.05, Some(&take(&keys, &Array::scalar(i as i32), Some(0))))
        })
        .collect();
    oxmx_core::eval(&ws.iter().chain([&x]).collect::<Vec<_>>()).unwrap();
    let (plain, g1) = peak(&x, &ws, blocks, false);
    let (ck, g2) = peak(&x, &ws, blocks, true);
    eprintln!("backward peak: plain {:.1} MB, checkpoint {:.1} MB", plain as f64 / 1e6, ck as f64 / 1e6);
    for (a, b) in g1.iter().zip(&g2) {
        assert!(allclose(a, b, 1e-4, 1e-6, false).item::<bool>().unwrap());
    }
    assert!((ck as f64) < 0.7 * plain as f64, "checkpoint peak {ck} B vs plain {plain} B");
}
