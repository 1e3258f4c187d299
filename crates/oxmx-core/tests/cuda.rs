//! The CUDA backend against the CPU backend: every GPU kernel (element-wise, casts, select,
//! matmul, reductions, softmax, views) on fresh random inputs of several shapes, dtypes and
//! layouts (transposed, sliced, broadcast), primitives without a GPU kernel through the CPU
//! fallback, memory accounting, migrations and errors. Skips (and says so) without a CUDA device.

use oxmx_core::backend::cuda;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::{async_eval, with_device, Device};

mod common;
use common::gpu::{assert_close, both, gpu, rand, tol, GPU};

/// Layouts of one logical input: dense, transposed view, strided slice, broadcast row.
fn layouts(dt: Dtype, lo: f64, hi: f64, seed: u64) -> Vec<(&'static str, Array)> {
    vec![
        ("0-d", rand(&[], lo, hi, dt, seed)),
        ("empty", rand(&[0, 3], lo, hi, dt, seed)),
        ("dense", rand(&[37, 65], lo, hi, dt, seed)),
        ("transposed", transpose(&rand(&[65, 37], lo, hi, dt, seed), &[1, 0])),
        ("sliced", slice(&rand(&[74, 65], lo, hi, dt, seed), &[SliceSpec::new(None, None, 2)])),
        ("broadcast", broadcast_to(&rand(&[1, 65], lo, hi, dt, seed), &[37, 65])),
    ]
}

const FLOATS: [Dtype; 4] = [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16, Dtype::Float64];

#[test]
fn unary_ops_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    type F = fn(&Array) -> Array;
    let ops: Vec<(&str, F, f64, f64)> = vec![
        ("exp", exp, -4.0, 4.0),
        ("log", log, 0.01, 10.0),
        ("sqrt", sqrt, 0.0, 10.0),
        ("rsqrt", rsqrt, 0.1, 10.0),
        ("sin", sin, -6.0, 6.0),
        ("tanh", tanh, -5.0, 5.0),
        ("sigmoid", sigmoid, -9.0, 9.0),
        ("erf", erf, -3.0, 3.0),
        ("erfinv", erfinv, -0.99, 0.99),
        ("expm1", expm1, -2.0, 2.0),
        ("log1p", log1p, -0.9, 3.0),
        ("arctan", arctan, -9.0, 9.0),
        ("floor", floor, -9.0, 9.0),
        ("abs", abs, -9.0, 9.0),
        ("negative", negative, -9.0, 9.0),
        ("sign", sign, -2.0, 2.0),
        ("square", square, -9.0, 9.0),
        ("isnan", isnan, -1.0, 1.0),
    ];
    for dt in FLOATS {
        for (name, f, lo, hi) in &ops {
            for (layout, x) in layouts(dt, *lo, *hi, 7) {
                let (g, c) = both(|| f(&x));
                assert_close(&format!("{name} {dt:?} {layout}"), &g, &c, tol(dt) * 4.0);
            }
        }
    }
    // Integers.
    for dt in [Dtype::Int32, Dtype::Int64, Dtype::Uint8] {
        let x = rand(&[33, 17], 0.0, 100.0, dt, 3);
        for (name, f) in [("abs", abs as F), ("negative", negative), ("square", square), ("sign", sign)] {
            let (g, c) = both(|| f(&x));
            assert_close(&format!("{name} {dt:?}"), &g, &c, 0.0);
        }
    }
    assert!(cuda::fallbacks().keys().all(|k| !k.contains("Exp")), "exp ran on the CPU: {:?}", cuda::fallbacks());
}

#[test]
fn binary_ops_match_the_cpu_with_broadcasting() {
    let Some(_turn) = gpu() else { return };
    type F = fn(&Array, &Array) -> Array;
    let ops: Vec<(&str, F)> = vec![
        ("add", |a, b| add(a, b)),
        ("subtract", |a, b| subtract(a, b)),
        ("multiply", |a, b| multiply(a, b)),
        ("divide", |a, b| divide(a, b)),
        ("maximum", |a, b| maximum(a, b)),
        ("minimum", |a, b| minimum(a, b)),
        ("power", |a, b| power(&abs(a), b)),
        ("remainder", |a, b| remainder(a, b)),
        ("floor_divide", |a, b| floor_divide(a, b)),
        ("equal", |a, b| equal(a, b)),
        ("less", |a, b| less(a, b)),
        ("logaddexp", |a, b| logaddexp(a, b)),
        ("arctan2", |a, b| arctan2(a, b)),
    ];
    for dt in FLOATS {
        let a = rand(&[4, 1, 33], -3.0, 3.0, dt, 1);
        let b = rand(&[5, 33], 0.5, 3.0, dt, 2);
        let bt = transpose(&rand(&[33, 5], 0.5, 3.0, dt, 4), &[1, 0]);
        for (name, f) in &ops {
            for (layout, bb) in [("broadcast", &b), ("transposed", &bt)] {
                let (g, c) = both(|| f(&a, bb));
                assert_close(&format!("{name} {dt:?} {layout}"), &g, &c, tol(dt) * 4.0);
            }
        }
    }
    for dt in [Dtype::Int32, Dtype::Int64, Dtype::Uint32, Dtype::Int8] {
        let a = rand(&[7, 9], 0.0, 100.0, dt, 5);
        let b = rand(&[9], 1.0, 50.0, dt, 6);
        for (name, f) in [("add", ops[0].1), ("multiply", ops[2].1), ("maximum", ops[4].1), ("equal", ops[9].1)] {
            let (g, c) = both(|| f(&a, &b));
            assert_close(&format!("{name} {dt:?}"), &g, &c, 0.0);
        }
        let (g, c) = both(|| bitwise_xor(&a, &b));
        assert_close(&format!("xor {dt:?}"), &g, &c, 0.0);
    }
    // NaN propagates through maximum as on the CPU.
    let n = Array::from_slice(&[f32::NAN, 1.0, 2.0], &[3]);
    let m = Array::from_slice(&[0.0f32, f32::NAN, 3.0], &[3]);
    let (g, c) = both(|| maximum(&n, &m));
    assert_close("maximum with NaN", &g, &c, 0.0);
}

#[test]
fn casts_select_and_copies_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    let all = [
        Dtype::Bool,
        Dtype::Uint8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Uint32,
        Dtype::Float16,
        Dtype::Bfloat16,
        Dtype::Float32,
        Dtype::Float64,
    ];
    for from in all {
        for to in all {
            for (layout, x) in layouts(from, 0.0, 120.0, 9) {
                let (g, c) = both(|| x.astype(to));
                assert_close(&format!("astype {from:?} -> {to:?} {layout}"), &g, &c, 0.0);
            }
        }
    }
    for dt in FLOATS {
        let cond = greater(&rand(&[6, 40], -1.0, 1.0, Dtype::Float32, 11), &Array::scalar(0.0f32));
        let (a, b) = (rand(&[6, 40], -1.0, 1.0, dt, 12), rand(&[40], -1.0, 1.0, dt, 13));
        let (g, c) = both(|| where_(&cond, &a, &b));
        assert_close(&format!("where {dt:?}"), &g, &c, 0.0);
        // A reshape of a transposed view needs a dense copy first.
        let t = transpose(&rand(&[8, 6, 5], -1.0, 1.0, dt, 14), &[2, 0, 1]);
        let (g, c) = both(|| reshape(&t, &[5, 48]));
        assert_close(&format!("reshape of a transposed view {dt:?}"), &g, &c, 0.0);
    }
}

#[test]
fn matmul_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in FLOATS {
        let cases: Vec<(&str, Array, Array)> = vec![
            ("square", rand(&[64, 64], -1.0, 1.0, dt, 1), rand(&[64, 64], -1.0, 1.0, dt, 2)),
            ("odd", rand(&[33, 70], -1.0, 1.0, dt, 3), rand(&[70, 5], -1.0, 1.0, dt, 4)),
            ("vector", rand(&[1, 300], -1.0, 1.0, dt, 5), rand(&[300, 17], -1.0, 1.0, dt, 6)),
            ("batched", rand(&[3, 2, 9, 31], -1.0, 1.0, dt, 7), rand(&[3, 2, 31, 12], -1.0, 1.0, dt, 8)),
            ("transposed", transpose(&rand(&[70, 33], -1.0, 1.0, dt, 9), &[1, 0]), transpose(&rand(&[5, 70], -1.0, 1.0, dt, 10), &[1, 0])),
            ("broadcast batch", rand(&[4, 9, 31], -1.0, 1.0, dt, 11), rand(&[31, 12], -1.0, 1.0, dt, 12)),
            ("permuted batch", transpose(&rand(&[9, 4, 31], -1.0, 1.0, dt, 13), &[1, 0, 2]), rand(&[4, 31, 6], -1.0, 1.0, dt, 14)),
            ("empty k", rand(&[3, 0], -1.0, 1.0, dt, 15), rand(&[0, 4], -1.0, 1.0, dt, 16)),
        ];
        for (name, a, b) in &cases {
            let (g, c) = both(|| matmul(a, b));
            // Sums of k products: the tolerance grows with sqrt(k).
            let k = a.shape()[a.ndim() - 1].max(1) as f64;
            assert_close(&format!("matmul {name} {dt:?}"), &g, &c, tol(dt) * k.sqrt() * 4.0);
        }
    }
    assert!(!cuda::fallbacks().contains_key("Matmul"), "matmul fell back: {:?}", cuda::fallbacks());
}

/// Decoding's mat-vecs (at most 8 rows against a transposed weight): the GPU's own mat-vec
/// kernel, including a batch folded into the rows, a strided weight and more rows than it
/// takes (cuBLAS), for every float dtype.
#[test]
fn matvec_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in FLOATS {
        let weight = |n: usize, k: usize, seed: u64| transpose(&rand(&[n, k], -1.0, 1.0, dt, seed), &[1, 0]);
        let mut cases: Vec<(String, Array, Array)> = Vec::new();
        for m in [1usize, 2, 3, 5, 8, 9] {
            cases.push((format!("m={m}"), rand(&[m, 264], -1.0, 1.0, dt, 30 + m as u64), weight(37, 264, 40)));
        }
        cases.push(("long k".into(), rand(&[1, 4104], -1.0, 1.0, dt, 50), weight(130, 4104, 51)));
        cases.push(("wide n".into(), rand(&[2, 64], -1.0, 1.0, dt, 52), weight(9000, 64, 53)));
        cases.push(("batch of rows".into(), rand(&[2, 3, 128], -1.0, 1.0, dt, 54), weight(19, 128, 55)));
        // Every other row of a [2n, k] weight: rows 2k apart.
        let strided = slice(&rand(&[2 * 21, 96], -1.0, 1.0, dt, 56), &[SliceSpec::new(None, None, 2)]);
        cases.push(("strided weight".into(), rand(&[1, 96], -1.0, 1.0, dt, 57), transpose(&strided, &[1, 0])));
        for (name, a, b) in &cases {
            let (g, c) = both(|| matmul(a, b));
            let k = a.shape()[a.ndim() - 1] as f64;
            assert_close(&format!("matvec {name} {dt:?}"), &g, &c, tol(dt) * k.sqrt() * 4.0);
        }
    }
    assert!(!cuda::fallbacks().contains_key("Matmul"), "matmul fell back: {:?}", cuda::fallbacks());
}

/// Large contiguous element-wise ops (the unrolled path, with a ragged tail) and softmax rows
/// kept in registers (up to 4096) or not.
#[test]
fn long_elementwise_and_softmax_rows_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in FLOATS {
        let a = rand(&[(1 << 20) + 3], -2.0, 2.0, dt, 60);
        let b = rand(&[(1 << 20) + 3], -2.0, 2.0, dt, 61);
        let (g, c) = both(|| multiply(&exp(&a), &b));
        assert_close(&format!("exp(a) * b {dt:?}"), &g, &c, tol(dt) * 4.0);
        for cols in [1usize, 12, 31, 1000, 4096, 5000] {
            let x = rand(&[3, cols], -4.0, 4.0, dt, 62 + cols as u64);
            let (g, c) = both(|| softmax(&x, -1, false));
            assert_close(&format!("softmax {cols} {dt:?}"), &g, &c, tol(dt) * 4.0);
        }
    }
}

#[test]
fn reductions_and_softmax_match_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in FLOATS {
        let x = rand(&[6, 7, 300], -2.0, 2.0, dt, 21);
        let xt = transpose(&rand(&[300, 6, 7], -2.0, 2.0, dt, 22), &[1, 2, 0]);
        for (layout, x) in [("dense", &x), ("transposed", &xt)] {
            for axes in [vec![-1isize], vec![-2, -1], vec![0], vec![0, 1, 2]] {
                let what = |op: &str| format!("{op} {dt:?} {layout} axes {axes:?}");
                let (g, c) = both(|| sum(x, axes.clone(), false));
                assert_close(&what("sum"), &g, &c, tol(dt) * 30.0);
                let (g, c) = both(|| max(x, axes.clone(), true));
                assert_close(&what("max"), &g, &c, 0.0);
                let (g, c) = both(|| min(x, axes.clone(), false));
                assert_close(&what("min"), &g, &c, 0.0);
                let (g, c) = both(|| any(&greater(x, &Array::scalar(1.9f32).astype(dt)), axes.clone(), false));
                assert_close(&what("any"), &g, &c, 0.0);
            }
            let (g, c) = both(|| softmax(x, -1, false));
            assert_close(&format!("softmax {dt:?} {layout}"), &g, &c, tol(dt) * 4.0);
        }
    }
    let i = rand(&[5, 1000], -50.0, 50.0, Dtype::Int32, 23);
    let (g, c) = both(|| sum(&i, -1, false));
    assert_close("int sum", &g, &c, 0.0);
    let (g, c) = both(|| prod(&rand(&[4, 20], 0.5, 1.5, Dtype::Float32, 24), -1, false));
    assert_close("prod", &g, &c, 1e-5);
    // Few long rows: each row is split across blocks and the partial results merged.
    for dt in FLOATS {
        for shape in [vec![(1usize << 20) + 5], vec![3, 70001]] {
            // Positive terms (no cancellation) whose sum fits float16.
            let x = rand(&shape, 0.0, 0.05, dt, 25);
            let what = |op: &str| format!("{op} {dt:?} {shape:?}");
            let (g, c) = both(|| sum(&x, -1, false));
            assert_close(&what("sum"), &g, &c, tol(dt) * 30.0);
            let (g, c) = both(|| max(&x, -1, false));
            assert_close(&what("max"), &g, &c, 0.0);
            let (g, c) = both(|| min(&x, None, false));
            assert_close(&what("min"), &g, &c, 0.0);
        }
    }
    let i = rand(&[2, 300000], -50.0, 50.0, Dtype::Int32, 26);
    let (g, c) = both(|| sum(&i, -1, false));
    assert_close("int sum, split rows", &g, &c, 0.0);
}

#[test]
fn primitives_without_a_gpu_kernel_fall_back_to_the_cpu() {
    let Some(_turn) = gpu() else { return };
    let x = rand(&[9, 50], -1.0, 1.0, Dtype::Float32, 31);
    let (g, c) = both(|| sort(&exp(&x), Some(-1)));
    // exp on the GPU and the CPU may differ in the last bit.
    assert_close("sort after a GPU exp", &g, &c, 1e-6);
    let (g, c) = both(|| concatenate(&[x.clone(), exp(&x)], 0));
    assert_close("concatenate", &g, &c, 1e-6);
    let f = cuda::fallbacks();
    assert!(f.keys().any(|k| k.contains("Sort")), "sort should be counted as a fallback: {f:?}");
    // Gradients through mixed GPU kernels and fallbacks.
    let loss = |p: Array| sum(&tanh(&matmul(&p, &transpose(&p, &[1, 0]))), None, false);
    let p = rand(&[6, 8], -1.0, 1.0, Dtype::Float32, 32);
    let gg = with_device(GPU, || oxmx_core::grad(loss)(p.clone()));
    let gc = with_device(Device::Cpu, || oxmx_core::grad(loss)(p.clone()));
    assert_close("grad through the GPU", &gg, &gc, 1e-5);
}

#[test]
fn memory_is_accounted_and_migrates_once() {
    let Some(_turn) = gpu() else { return };
    let (active0, _, _) = cuda::memory_stats(0);
    // Made on the host, so that the GPU kernels below must upload it.
    let x = with_device(Device::Cpu, || rand(&[1 << 20], -1.0, 1.0, Dtype::Float32, 41));
    let (_, up0) = oxmx_core::memory::migrations();
    let y = with_device(GPU, || exp(&x));
    let z = with_device(GPU, || add(&x, &y));
    oxmx_core::eval(&[&y, &z]).unwrap();
    let (active1, peak, _) = cuda::memory_stats(0);
    assert!(active1 >= active0 + 3 * (4 << 20), "x uploaded, y and z made on the GPU: {active0} -> {active1}");
    assert!(peak >= active1);
    let (_, up1) = oxmx_core::memory::migrations();
    assert_eq!(up1 - up0, 1, "x is uploaded once although two kernels read it");
    // Reading on the host downloads once.
    let (down0, _) = oxmx_core::memory::migrations();
    let v = z.to_vec::<f32>().unwrap();
    let _ = z.to_vec::<f32>().unwrap();
    assert_eq!(oxmx_core::memory::migrations().0 - down0, 1);
    let xv = x.to_vec::<f32>().unwrap();
    assert!((v[5] - (xv[5] + xv[5].exp())).abs() < 1e-5);
    drop((y, z));
    // An allocation over the limit is an error, not a crash; the device keeps working. (The
    // limit governs new device allocations, as the host's does: freed blocks in the cache are
    // reused without counting against it, so the cache is emptied first.)
    cuda::clear_cache(0).unwrap();
    let old = cuda::set_memory_limit(0, 1 << 20).unwrap();
    let big = with_device(GPU, || exp(&x));
    let err = big.eval().unwrap_err();
    assert!(format!("{err}").contains("exceed"), "{err}");
    cuda::set_memory_limit(0, old).unwrap();
    let ok = with_device(GPU, || exp(&x));
    ok.eval().unwrap();
    cuda::clear_cache(0).unwrap();
}

#[test]
fn the_default_device_is_the_gpu() {
    let Some(_turn) = gpu() else { return };
    assert_eq!(oxmx_core::default_device(), GPU);
    let (name, arch) = cuda::device_info(0).unwrap();
    eprintln!("gpu 0: {name} ({arch}), {} device(s)", cuda::device_count());
    assert!(arch.starts_with("sm_"));
    let bad = with_device(Device::Gpu(99), || exp(&Array::scalar(1.0f32)));
    let err = bad.eval().unwrap_err();
    assert!(format!("{err}").contains("gpu 99"), "{err}");
}

#[test]
fn without_a_gpu_gpu_streams_give_a_clear_error() {
    if cuda::available() {
        return;
    }
    let x = with_device(GPU, || exp(&Array::scalar(1.0f32)));
    let err = x.eval().unwrap_err();
    assert!(format!("{err}").contains("no CUDA device"), "{err}");
    assert_eq!(oxmx_core::default_device(), Device::Cpu);
}

/// A decoding loop's shape: each step's result is read on this thread while the next step's
/// long task runs on the stream worker (captured into CUDA graphs unless `OXMX_CUDA_GRAPHS=0`),
/// plus reads of results from several steps back. Small reads go through pinned staging memory
/// and must neither see stale data nor wait for the step after them.
#[test]
fn reads_while_the_next_step_runs_see_their_own_step() {
    let Some(_turn) = gpu() else { return };
    with_device(GPU, || {
        let step = |x: &Array| {
            // ~40 ops a step: long enough to be batched.
            let mut y = x.clone();
            for _ in 0..20 {
                y = add(&multiply(&y, &Array::scalar(1.0f32)), &Array::scalar(0.5f32));
            }
            y
        };
        let start = rand(&[3, 5], -1.0, 1.0, Dtype::Float32, 3);
        let first = start.to_vec::<f32>().unwrap();
        let mut history = vec![start.clone()];
        let mut cur = step(&start);
        async_eval(&[&cur]);
        for k in 1..40usize {
            let next = step(&cur);
            async_eval(&[&next]);
            let got = cur.to_vec::<f32>().unwrap();
            for (i, (g, s)) in got.iter().zip(&first).enumerate() {
                let want = s + 10.0 * k as f32;
                assert!((g - want).abs() <= 1e-4 * want.abs().max(1.0), "step {k} element {i}: {g} vs {want}");
            }
            // An older result (launched steps ago) and a big one (read the unstaged way).
            let old = &history[history.len() / 2];
            let old_k = history.len() / 2;
            assert!((old.to_vec::<f32>().unwrap()[0] - (first[0] + 10.0 * old_k as f32)).abs() < 1e-3);
            history.push(cur);
            cur = next;
        }
        let big = add(&rand(&[300, 1000], 0.0, 1.0, Dtype::Float32, 4), &Array::scalar(1.0f32));
        let sum: f32 = big.to_vec::<f32>().unwrap().iter().sum();
        assert!(sum > 300_000.0 && sum < 600_000.0, "{sum}");
    });
}

/// A decoding step run again and again: the same kernels each time (so a batched step replays
/// the graph built for the first one), with arguments that change from step to step: a rotary
/// position passed by value, a cache row written at the step's position, a grid that grows with
/// the cache, scalars. Each step must see its own arguments, not the ones the graph was built
/// or last updated with.
#[test]
fn repeated_steps_take_each_steps_arguments() {
    let Some(_turn) = gpu() else { return };
    let x = rand(&[1, 2, 1, 64], -1.0, 1.0, Dtype::Float32, 91);
    let base = rand(&[1, 2, 40, 64], -1.0, 1.0, Dtype::Float32, 92);
    let step = |cache: &Array, k: usize| {
        let mut y = oxmx_core::fast::rope(&x, 64, false, Some(10000.0), 1.0, k as i64, None);
        for _ in 0..6 {
            y = add(&multiply(&y, &Array::scalar(0.5f32)), &Array::scalar(k as f32));
        }
        let start = [SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(k as isize), Some(k as isize + 1), 1)];
        let cache = slice_update(cache, &y, &start);
        // What attention reads: the rows written so far (a growing view).
        let seen = slice(&cache, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(None, Some(k as isize + 1), 1)]);
        (cache, sum(&exp(&seen), 2, false))
    };
    let run = |device: Device| {
        with_device(device, || {
            let mut cache = base.clone();
            let mut outs = Vec::new();
            for k in 0..24 {
                let (c, s) = step(&cache, k);
                s.eval().unwrap();
                outs.push(s);
                cache = c;
            }
            outs.push(cache);
            outs
        })
    };
    let (g, c) = (run(GPU), run(Device::Cpu));
    for (k, (a, b)) in g.iter().zip(&c).enumerate() {
        assert_close(&format!("step {k}"), a, b, 1e-5);
    }
}

#[test]
fn scatter_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    type S = fn(&Array, &[Array], &Array, &[isize]) -> Array;
    let kinds: [(&str, S); 4] = [("add", scatter_add), ("prod", scatter_prod), ("max", scatter_max), ("min", scatter_min)];
    for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16, Dtype::Float64, Dtype::Int32, Dtype::Int64, Dtype::Int16, Dtype::Uint8] {
        let x = rand(&[40, 6, 5], 0.5, 3.0, dt, 41);
        // Repeated and negative indices along axis 0, computed on the device in the GPU run.
        let raw = rand(&[64], -40.0, 40.0, Dtype::Float32, 42);
        let upd = rand(&[64, 1, 6, 5], 0.5, 1.5, dt, 43);
        for (name, f) in kinds {
            let (g, c) = both(|| f(&x, &[floor(&raw).astype(Dtype::Int32)], &upd, &[0]));
            // Sums of repeated indices may add in another order on the GPU.
            let t = if name == "add" || name == "prod" { tol(dt) * 20.0 } else { 0.0 };
            assert_close(&format!("scatter_{name} {dt:?}"), &g, &c, t);
        }
        // Set with distinct indices along two axes (host-resident index arrays, broadcast).
        let rows = remainder(&multiply(&arange(0.0, 8.0, 1.0, Some(Dtype::Int32)), &Array::scalar(7i32)), &Array::scalar(40i32));
        let cols = reshape(&arange(0.0, 5.0, 1.0, Some(Dtype::Int32)), &[5, 1]);
        let rows = reshape(&rows, &[1, 8]);
        let upd2 = rand(&[5, 8, 1, 6, 1], 0.5, 1.5, dt, 44);
        let (g, c) = both(|| scatter(&x, &[cols.clone(), rows.clone()], &upd2, &[2, 0]));
        assert_close(&format!("scatter {dt:?}"), &g, &c, 0.0);
    }
    // Booleans: add is `or`, prod is `and`.
    let xb = greater(&rand(&[30, 4], 0.0, 1.0, Dtype::Float32, 45), &Array::scalar(0.5f32));
    let ub = greater(&rand(&[50, 1, 4], 0.0, 1.0, Dtype::Float32, 46), &Array::scalar(0.5f32));
    let ib = floor(&rand(&[50], 0.0, 30.0, Dtype::Float32, 47)).astype(Dtype::Int32);
    for (name, f) in kinds {
        let (g, c) = both(|| f(&xb, &[ib.clone()], &ub, &[0]));
        assert_close(&format!("scatter_{name} bool"), &g, &c, 0.0);
    }
    // The gradient of take_along_axis (a cross-entropy's pick) is a scatter-add.
    let logits = rand(&[3, 7, 50], -2.0, 2.0, Dtype::Float32, 48);
    let pick = floor(&rand(&[3, 7, 1], 0.0, 50.0, Dtype::Float32, 49)).astype(Dtype::Int32);
    let loss = |l: Array| sum(&take_along_axis(&subtract(&l, &logsumexp(&l, -1, true)), &pick, Some(-1)), None, false);
    let gg = with_device(GPU, || oxmx_core::grad(loss)(logits.clone()));
    let gc = with_device(Device::Cpu, || oxmx_core::grad(loss)(logits.clone()));
    assert_close("grad of take_along_axis", &gg, &gc, 1e-5);
    // Host-resident out-of-range indices give the CPU's error.
    let bad = Array::from_slice(&[0i32, 40], &[2]);
    let x = rand(&[40, 6, 5], 0.5, 3.0, Dtype::Float32, 51);
    let r = with_device(GPU, || scatter_add(&x, &[bad.clone()], &rand(&[2, 1, 6, 5], 0.0, 1.0, Dtype::Float32, 50), &[0]));
    let err = r.eval().expect_err("index 40 is out of range for an axis of 40");
    assert!(err.to_string().contains("out of bounds"), "{err}");
    common::gpu::assert_no_fallback(&["Scatter"]);
}

#[test]
fn arange_matches_the_cpu() {
    let Some(_turn) = gpu() else { return };
    for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16, Dtype::Float64, Dtype::Int32, Dtype::Int64, Dtype::Uint8] {
        for (start, stop, step) in [(0.0, 200.0, 1.0), (3.0, 250.0, 0.7), (100.0, 1.0, -3.0), (0.0, 0.0, 1.0)] {
            let (g, c) = both(|| arange(start, stop, step, Some(dt)));
            // 16-bit floats: a double just under a halfway point of the 16-bit grid (3 + 335 *
            // 0.7 = 237.49999999999997) rounds down on the CPU and, through f32, up on the GPU.
            let t = if matches!(dt, Dtype::Float16 | Dtype::Bfloat16) { tol(dt) } else { 0.0 };
            assert_close(&format!("arange({start}, {stop}, {step}) {dt:?}"), &g, &c, t);
        }
    }
    common::gpu::assert_no_fallback(&["Arange"]);
}
