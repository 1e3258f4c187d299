//! The GPU tests' shared helpers: the device turn, GPU-vs-CPU evaluation and comparison.

use oxmx_core::backend::cuda;
use oxmx_core::prelude::*;
use oxmx_core::{random, with_device, Device};

pub const GPU: Device = Device::Gpu(0);

/// The GPU (tests take turns: memory counters and limits are process-wide), or `None` (and a
/// message) without one.
pub fn gpu() -> Option<std::sync::MutexGuard<'static, ()>> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if cuda::available() {
        return Some(TURN.lock().unwrap_or_else(|p| p.into_inner()));
    }
    eprintln!("skipped: no CUDA device (driver library or GPU missing)");
    None
}

/// The same function on the GPU and the CPU, evaluated.
pub fn both(f: impl Fn() -> Array) -> (Array, Array) {
    let g = with_device(GPU, &f);
    let c = with_device(Device::Cpu, &f);
    g.eval().unwrap();
    c.eval().unwrap();
    (g, c)
}

pub fn tol(d: Dtype) -> f64 {
    match d {
        Dtype::Float16 => 2e-3,
        Dtype::Bfloat16 => 1.6e-2,
        Dtype::Float64 => 1e-12,
        _ => 2e-6,
    }
}

/// |g - c| <= tol * (|c| + 1) element-wise, NaNs in the same places.
pub fn assert_close(what: &str, g: &Array, c: &Array, tol: f64) {
    assert_eq!(g.shape(), c.shape(), "{what}: shape");
    assert_eq!(g.dtype(), c.dtype(), "{what}: dtype");
    let (gv, cv) = (g.astype(Dtype::Float64).to_vec::<f64>().unwrap(), c.astype(Dtype::Float64).to_vec::<f64>().unwrap());
    for (i, (a, b)) in gv.iter().zip(&cv).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (b.abs() + 1.0);
        assert!(ok, "{what}: element {i}: gpu {a} cpu {b}");
    }
}

pub fn rand(shape: &[usize], lo: f64, hi: f64, dt: Dtype, seed: u64) -> Array {
    let x = random::uniform(lo, hi, shape, Dtype::Float32, Some(&random::key(seed))).astype(dt);
    x.eval().unwrap();
    x
}

/// Asserts that no primitive whose name contains one of `names` has run on the CPU for a GPU
/// stream in this process (the GPU kernel, not the fallback, produced the results).
pub fn assert_no_fallback(names: &[&str]) {
    let f = cuda::fallbacks();
    for n in names {
        assert!(f.keys().all(|k| !k.contains(n)), "{n} ran on the CPU for a GPU stream: {f:?}");
    }
}

/// `|g - c| <= tol * max|c|` element-wise: for results that are sums of many products, whose
/// rounding error scales with the largest magnitude rather than each element's.
pub fn assert_close_scaled(what: &str, g: &Array, c: &Array, tol: f64) {
    assert_eq!(g.shape(), c.shape(), "{what}: shape");
    assert_eq!(g.dtype(), c.dtype(), "{what}: dtype");
    let (gv, cv) = (g.astype(Dtype::Float64).to_vec::<f64>().unwrap(), c.astype(Dtype::Float64).to_vec::<f64>().unwrap());
    let scale = cv.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (a, b)) in gv.iter().zip(&cv).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}: element {i}: gpu {a} cpu {b} (scale {scale})");
    }
}
