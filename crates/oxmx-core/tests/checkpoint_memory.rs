//! Peak-memory properties: `checkpoint` lowers the peak memory of a backward pass, and buffer
//! donation makes a chain of `slice_update`s (a KV cache) write in place. Their own test binary:
//! peak memory is process-wide, so the tests take `SERIAL` and nothing else runs beside them.

use oxmx_core::memory;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::{checkpoint, value_and_grad};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
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

/// The update of step `t` (distinct values per step and position).
fn step_rows(t: usize, heads: usize, d: usize) -> Vec<f32> {
    (0..heads * d).map(|i| (t * 1000 + i) as f32).collect()
}

#[test]
fn slice_update_chain_writes_in_place_and_never_touches_shared_buffers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // A KV-cache-shaped buffer [1, heads, len, d] of 8 MB filled one position per step.
    let (heads, len, d) = (4usize, 4096usize, 128usize);
    let cache_bytes = heads * len * d * 4;
    // Dense from the start (`zeros` alone is a broadcast scalar, which the first update would
    // have to materialise).
    let mut cache = contiguous(&zeros(&[1, heads, len, d], Dtype::Float32));
    cache.eval().unwrap();
    let mut want = vec![0f32; heads * len * d];
    memory::clear_cache();
    memory::reset_peak_memory();
    let base = memory::active_memory();
    let steps = 16;
    for t in 0..steps {
        let rows = step_rows(t, heads, d);
        let u = Array::from_slice(&rows, &[1, heads, 1, d]);
        let spec = [SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(t as isize), Some(t as isize + 1), 1), SliceSpec::FULL];
        // The old handle is replaced before evaluation, as a cache does: the op owns the input.
        cache = slice_update(&cache, &u, &spec);
        cache.eval().unwrap();
        for h in 0..heads {
            want[(h * len + t) * d..(h * len + t + 1) * d].copy_from_slice(&rows[h * d..(h + 1) * d]);
        }
    }
    let grown = memory::peak_memory() - base;
    assert_eq!(cache.to_vec::<f32>().unwrap(), want);
    // Copying would hold two caches at once on every step.
    assert!(grown < cache_bytes / 2, "slice_update chain peaked {grown} B above the start for a {cache_bytes} B cache");

    // A buffer someone still sees is never written: a live handle, and a live view.
    let a = ones(&[2, 3, 4], Dtype::Float32);
    a.eval().unwrap();
    let spec = [SliceSpec::FULL, SliceSpec::new(Some(1), Some(2), 1), SliceSpec::FULL];
    let b = slice_update(&a, &zeros(&[2, 1, 4], Dtype::Float32), &spec);
    b.eval().unwrap();
    assert!(a.to_vec::<f32>().unwrap().iter().all(|&v| v == 1.0), "the held input changed");
    assert_eq!(sum(&b, None, false).item::<f32>().unwrap(), 16.0);
    let view = slice(&a, &spec);
    view.eval().unwrap();
    let c = slice_update(&a, &full(&[2, 1, 4], 5.0f32, None), &spec);
    drop(a);
    c.eval().unwrap();
    assert!(view.to_vec::<f32>().unwrap().iter().all(|&v| v == 1.0), "a view of the donated buffer changed");
    assert_eq!(sum(&c, None, false).item::<f32>().unwrap(), 56.0);
}
