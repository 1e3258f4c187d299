//! Eval-time fusion (`graph::fuse_eval`): with it on, every result is bit for bit what the
//! separate kernels give (each fusable op in f32 and f64, broadcast, transposed and scalar
//! operands, ±0, ±inf, NaN and subnormals mixed in); chains are fused only where nobody else
//! can see an intermediate (a user's handle, a second consumer, half precision, small arrays,
//! another stream all keep ops separate, and their values stay right); the intermediate is
//! never allocated (peak memory); errors of the fused kernel reach the result; and, fused or
//! not, an evaluation's dead intermediates are freed before `eval` returns.

mod common;
use common::gradcheck::Rng;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::{eval_fused_regions, memory, new_stream, set_eval_fusion, with_stream, Device};
use std::sync::{Mutex, MutexGuard};

/// The switch and the region counter are process-wide: the tests here take turns.
static SWITCH: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    SWITCH.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rows × columns of the test arrays: 1,126,400 elements, above the size fusion starts at.
const R: usize = 1024;
const C: usize = 1100;

/// Uniform values in [-4, 4) with one in twenty replaced by a special value.
fn data(seed: u64, shape: &[usize], dt: Dtype) -> Array {
    let specials = [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-40, -3e-42, 1e-310, 3e38, -1.5];
    let mut r = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> =
        (0..n)
            .map(|_| {
                if r.next() < 0.05 {
                    specials[(r.next() * specials.len() as f64) as usize % specials.len()]
                } else {
                    -4.0 + 8.0 * r.next()
                }
            })
            .collect();
    let a = Array::from_slice(&v, shape).astype(dt);
    a.eval().unwrap();
    a
}

/// `f()` evaluated without and then with eval-time fusion; the regions the second made.
fn both(f: impl Fn() -> Array) -> (Array, Array, usize) {
    set_eval_fusion(false);
    let plain = f();
    plain.eval().unwrap();
    set_eval_fusion(true);
    let before = eval_fused_regions();
    let fused = f();
    fused.eval().unwrap();
    (fused, plain, eval_fused_regions() - before)
}

#[track_caller]
fn assert_bits(what: &str, fused: &Array, plain: &Array) {
    assert_eq!(fused.shape(), plain.shape(), "{what}: shape");
    assert_eq!(fused.dtype(), plain.dtype(), "{what}: dtype");
    let f = fused.to_vec::<f64>().unwrap();
    let p = plain.to_vec::<f64>().unwrap();
    for (i, (a, b)) in f.iter().zip(&p).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: element {i}: fused {a:e} vs separate kernels {b:e}");
    }
}

#[test]
fn unary_ops_are_bit_identical() {
    let _g = lock();
    type U = fn(&Array) -> Array;
    let cases: Vec<(&str, U)> = vec![
        ("abs", abs),
        ("negative", negative),
        ("square", square),
        ("sqrt", sqrt),
        ("rsqrt", rsqrt),
        ("reciprocal", reciprocal),
        ("floor", floor),
        ("ceil", ceil),
    ];
    for (i, (name, f)) in cases.into_iter().enumerate() {
        for dt in [Dtype::Float32, Dtype::Float64] {
            let x = data(i as u64, &[R, C], dt);
            let y = data(100 + i as u64, &[R, C], dt);
            // The op between two others: one region of three.
            let (fused, plain, made) = both(|| f(&(&x * &y)) + &x);
            let what = format!("{name} {dt}");
            assert_bits(&what, &fused, &plain);
            assert_eq!(made, 1, "{what}: one region");
        }
    }
}

#[test]
fn binary_ops_are_bit_identical_with_broadcast_and_strided_operands() {
    let _g = lock();
    type B = fn(&Array, &Array) -> Array;
    let cases: Vec<(&str, B)> = vec![
        ("add", |a, b| add(a, b)),
        ("subtract", |a, b| subtract(a, b)),
        ("multiply", |a, b| multiply(a, b)),
        ("divide", |a, b| divide(a, b)),
        ("maximum", |a, b| maximum(a, b)),
        ("minimum", |a, b| minimum(a, b)),
    ];
    for (i, (name, f)) in cases.into_iter().enumerate() {
        for dt in [Dtype::Float32, Dtype::Float64] {
            let s = i as u64 * 10;
            let (a, c) = (data(s, &[R, C], dt), data(s + 1, &[R, C], dt));
            let operands = [
                ("full", data(s + 2, &[R, C], dt)),
                ("row statistic", data(s + 3, &[R, 1], dt)),
                ("column vector", data(s + 4, &[C], dt)),
                ("scalar", data(s + 5, &[], dt)),
                ("transposed", transpose(&data(s + 6, &[C, R], dt), &[1, 0])),
            ];
            for (layout, b) in &operands {
                let (fused, plain, made) = both(|| f(&(&a - &c), b) * &a);
                let what = format!("{name} {dt} {layout}");
                assert_bits(&what, &fused, &plain);
                assert_eq!(made, 1, "{what}: one region");
                // The other operand order too.
                let (fused, plain, _) = both(|| f(b, &(&a - &c)) * &a);
                assert_bits(&format!("{what} (swapped)"), &fused, &plain);
            }
        }
    }
}

#[test]
fn layer_norm_composition_fuses_its_tail() {
    let _g = lock();
    for dt in [Dtype::Float32, Dtype::Float64] {
        let x = data(7, &[R, C], dt);
        let ln = || {
            let mu = mean(&x, -1isize, true);
            let v = var(&x, -1isize, true, 0);
            (&x - &mu) * rsqrt(&(v + 1e-5))
        };
        let (fused, plain, made) = both(ln);
        assert_bits(&format!("layer norm {dt}"), &fused, &plain);
        assert_eq!(made, 1, "{dt}: the subtraction and the scaling fuse");
    }
}

#[test]
fn a_long_chain_is_one_region() {
    let _g = lock();
    let x = data(8, &[R, C], Dtype::Float32);
    let (fused, plain, made) = both(|| {
        let mut y = x.clone();
        for k in 0..100 {
            y = &y * 1.0001 + (k as f64) * 0.01;
            y = maximum(&y, &x);
        }
        y
    });
    assert_bits("100 steps", &fused, &plain);
    assert_eq!(made, 1);
}

#[test]
fn visible_or_unfusable_intermediates_stay_separate_and_right() {
    let _g = lock();
    let (a, b, c) = (data(20, &[R, C], Dtype::Float32), data(21, &[R, C], Dtype::Float32), data(22, &[R, C], Dtype::Float32));

    // The user keeps the intermediate: it is computed on its own, later, and is right.
    set_eval_fusion(true);
    let before = eval_fused_regions();
    let t = &a - &b;
    let y = &t * &c;
    y.eval().unwrap();
    assert_eq!(eval_fused_regions() - before, 0, "a held intermediate is not fused away");
    set_eval_fusion(false);
    let (t0, y0) = (&a - &b, &(&a - &b) * &c);
    assert_bits("held intermediate", &t, &t0);
    assert_bits("its consumer", &y, &y0);

    // Two consumers of one intermediate: it is materialised; the chain after it still fuses.
    let (fused, plain, made) = both(|| {
        let t = &a - &b;
        &(&t * &t) + &t
    });
    assert_bits("shared intermediate", &fused, &plain);
    assert_eq!(made, 1, "t * t and the addition fuse; t itself is computed once");

    // Half precision, integers and small arrays are not fused (and give the same values).
    for dt in [Dtype::Float16, Dtype::Bfloat16] {
        let (x, z) = (a.astype(dt), c.astype(dt));
        let (fused, plain, made) = both(|| (&x - &z) * &x);
        assert_bits(&format!("{dt}"), &fused, &plain);
        assert_eq!(made, 0, "{dt}: the separate ops round each intermediate");
    }
    let i = (&a * 100.0).astype(Dtype::Int32);
    let (fused, plain, made) = both(|| (&i - 3) * &i);
    assert_bits("int32", &fused, &plain);
    assert_eq!(made, 0, "int32");
    let small = data(23, &[512, 1024], Dtype::Float32);
    let (fused, plain, made) = both(|| (&small - 1.0) * &small);
    assert_bits("512x1024", &fused, &plain);
    assert_eq!(made, 0, "arrays that fit the caches keep their ops");
}

#[test]
fn streams_async_eval_and_derivatives() {
    let _g = lock();
    let (a, b) = (data(30, &[R, C], Dtype::Float32), data(31, &[R, C], Dtype::Float32));
    // A producer on another stream feeds the consumer through a cross-stream wait.
    let s = new_stream(Device::Cpu);
    let (fused, plain, made) = both(|| {
        let t = with_stream(s, || &a - &b);
        &t * &a
    });
    assert_bits("two streams", &fused, &plain);
    assert_eq!(made, 0, "ops of different streams stay apart");
    // async_eval, then wait.
    set_eval_fusion(true);
    let y = (&a - &b) * &a + 2.0;
    oxmx_core::async_eval(&[&y]);
    set_eval_fusion(false);
    let y0 = (&a - &b) * &a + 2.0;
    assert_bits("async_eval", &y, &y0);
    // Gradients: the traced graph is left alone; the result equals the unfused one.
    let a64 = data(32, &[R, C], Dtype::Float64);
    let a64 = where_(&isfinite(&a64), &a64, 1.0);
    let g = oxmx_core::transforms::grad(|x: Array| sum(&((&x - 1.0) * &x * &x), None, false));
    let (fused, plain, _) = both(|| g(a64.clone()));
    assert_bits("grad", &fused, &plain);
}

#[test]
fn the_intermediate_is_never_allocated() {
    let _g = lock();
    let (a, b) = (data(40, &[1024, 1024], Dtype::Float32), data(41, &[1024, 1024], Dtype::Float32));
    let peak = |on: bool| {
        set_eval_fusion(on);
        memory::reset_peak_memory();
        let base = memory::active_memory();
        let y = (&a - &b) * &a;
        y.eval().unwrap();
        memory::peak_memory() - base
    };
    // The tests here take turns (`lock`) and `eval` returns with its dead buffers freed, so the
    // window sees this evaluation's allocations only.
    let bytes = 1024 * 1024 * 4;
    let plain = peak(false);
    let fused = peak(true);
    assert!(plain >= 2 * bytes, "separate kernels hold the intermediate and the result: {plain} bytes");
    assert!((bytes..2 * bytes).contains(&fused), "fused: the result only, {fused} bytes");
}

#[test]
fn a_failing_fused_kernel_fails_its_result() {
    let _g = lock();
    let (a, b) = (data(50, &[1024, 1024], Dtype::Float32), data(51, &[1024, 1024], Dtype::Float32));
    set_eval_fusion(true);
    let before = eval_fused_regions();
    let y = (&a - &b) * &a;
    memory::clear_cache();
    let old = memory::set_memory_limit(memory::active_memory() + 1024);
    let r = y.eval();
    memory::set_memory_limit(old);
    assert_eq!(eval_fused_regions() - before, 1);
    let e = r.expect_err("the result fit under a limit 1 KB above the active memory");
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
}

#[test]
fn eval_returns_with_its_dead_intermediates_freed() {
    let _g = lock();
    // Unfused, `a - b` is an intermediate only the multiplication holds (as its second operand,
    // so its buffer is not donated to the product). When `eval` returns, the stream worker has
    // already let go of it (and of its own handle on the result), so the active memory is the
    // inputs plus the result, and dropping the result frees it at once, on this thread. Many
    // rounds: a worker freeing late shows in some of them.
    set_eval_fusion(false);
    let (a, b) = (data(60, &[512, 1024], Dtype::Float32), data(61, &[512, 1024], Dtype::Float32));
    let bytes = 512 * 1024 * 4;
    let base = memory::active_memory();
    for round in 0..200 {
        let y = &a * &(&a - &b);
        y.eval().unwrap();
        assert_eq!(memory::active_memory(), base + bytes, "round {round}: after eval, only the result is added");
        drop(y);
        assert_eq!(memory::active_memory(), base, "round {round}: dropping the result frees it");
    }
    set_eval_fusion(true);
}
