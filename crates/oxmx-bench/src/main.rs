//! The oxmx side of the benchmark harness: runs each named workload, prints one JSON line per
//! workload with the median time and the achieved rate. `scripts/bench.py` runs the same
//! workloads in NumPy, PyTorch and MLX in the same session and prints the ratio table.
//!
//! Usage: `oxmx-bench [filter]`

use oxmx_core::ops;
use oxmx_core::prelude::*;
use std::time::Instant;

mod fast;
mod gguf;
mod gpu;
mod nn;
mod quant;
mod transforms;

/// Median seconds of `iters` evaluations of `f` after one warm-up.
fn time(iters: usize, mut f: impl FnMut() -> Array) -> f64 {
    if oxmx_core::default_device().is_gpu() {
        return time_gpu(iters, f);
    }
    let run = |f: &mut dyn FnMut() -> Array| {
        f().eval().expect("benchmark workload failed");
        // GPU kernels are queued asynchronously: wait for them inside the timed region.
        oxmx_core::synchronize(oxmx_core::default_stream());
    };
    run(&mut f);
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Clock::now();
            run(&mut f);
            start.elapsed()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// On a GPU: `iters` evaluations queued back to back (`async_eval`, results kept alive), then
/// one device synchronisation; the mean per evaluation. This is the throughput a program
/// that keeps the GPU fed gets (PyTorch's rows are timed the same way, with CUDA events around
/// a warm call); a per-call `eval` + synchronise would add two thread wake-ups and a
/// device round trip to every row (~30 µs), which only small kernels notice.
///
/// The queue runs twice and the second pass is timed: the first fills the device's buffer cache
/// with `iters` outputs, so the timed pass allocates nothing fresh. A running program reuses its
/// buffers the same way (PyTorch's caching allocator is warm in its rows too); timing the first
/// pass measured `cuMemAlloc` of each 64 MB output (host time of the order of the kernel's).
fn time_gpu(iters: usize, mut f: impl FnMut() -> Array) -> f64 {
    // At least 30 a pass: the pass's fixed costs (the first launch's latency, the final
    // synchronisation, ~20-40 µs) spread over 5 evaluations added 4-8 µs to each.
    let iters = iters.max(30);
    let sync = || oxmx_core::synchronize(oxmx_core::default_stream());
    f().eval().expect("benchmark workload failed");
    sync();
    let mut pass = || {
        let start = Instant::now();
        let mut keep = Vec::with_capacity(iters);
        for _ in 0..iters {
            let a = f();
            oxmx_core::async_eval(&[&a]);
            keep.push(a);
        }
        sync();
        let t = start.elapsed().as_secs_f64() / iters as f64;
        for a in &keep {
            a.check().expect("benchmark workload failed");
        }
        t
    };
    pass();
    pass()
}

/// Wall-clock time, or with `OXMX_BENCH_CPU_TIME=1` the CPU time of the whole process (all
/// threads). On a shared machine (other tenants, parallel builds) wall time swings by 2x; CPU
/// time does not, so kernel changes can still be compared there (it counts spinning threads too,
/// so it is a comparison tool, not a number for BENCHMARKS.md).
enum Clock {
    Wall(Instant),
    Cpu(f64),
}

impl Clock {
    fn now() -> Clock {
        if std::env::var_os("OXMX_BENCH_CPU_TIME").is_some() {
            Clock::Cpu(process_cpu_seconds())
        } else {
            Clock::Wall(Instant::now())
        }
    }
    fn elapsed(&self) -> f64 {
        match self {
            Clock::Wall(t) => t.elapsed().as_secs_f64(),
            Clock::Cpu(t) => process_cpu_seconds() - t,
        }
    }
}

fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_PROCESS_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The machine's copy bandwidth (read + write bytes per second) with a plain multithreaded copy.
/// f32 storage from oxmx's own allocator, so the machine's reference rates are read from memory
/// laid out as the kernels' arrays are (large blocks on transparent huge pages, `memory.rs`):
/// a kernel's fraction of them stays honest.
pub(crate) struct HostF32 {
    buf: oxmx_core::memory::Buffer,
    n: usize,
}

impl HostF32 {
    pub(crate) fn new(n: usize, v: f32) -> HostF32 {
        let buf = oxmx_core::memory::Buffer::alloc(n * 4).expect("allocating a benchmark buffer");
        let mut h = HostF32 { buf, n };
        h.fill(v);
        h
    }
}

impl std::ops::Deref for HostF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: the buffer holds n * 4 bytes, aligned to at least 64 (f32-aligned).
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const f32, self.n) }
    }
}

impl std::ops::DerefMut for HostF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        let n = self.n;
        // SAFETY: as deref, borrowed mutably through the buffer.
        unsafe { std::slice::from_raw_parts_mut(self.buf.bytes_mut().as_mut_ptr() as *mut f32, n) }
    }
}

fn copy_bandwidth(n: usize) -> f64 {
    let src = HostF32::new(n, 1.0);
    let mut dst = HostF32::new(n, 0.0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let run = |dst: &mut [f32]| {
        std::thread::scope(|s| {
            let chunk = n.div_ceil(threads);
            for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
    };
    run(&mut dst);
    let mut best = f64::MAX;
    for _ in 0..10 {
        let st = Instant::now();
        run(&mut dst);
        best = best.min(st.elapsed().as_secs_f64());
    }
    (2 * n * 4) as f64 / best
}

pub(crate) fn report(name: &str, secs: f64, bytes: f64, flops: f64) {
    println!(
        "{}",
        serde_json::json!({"impl": "oxmx", "bench": name, "ms": secs * 1e3, "gbps": bytes / secs / 1e9, "gflops": flops / secs / 1e9})
    );
    // With OXMX_CPU_PROFILE=1, every row is followed by its kernels' times (set-up included).
    print_cpu_profile();
}

pub(crate) fn input(shape: &[usize], seed: u64) -> Array {
    // Deterministic pseudo-random values in [-1, 1) without depending on the random module.
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Array::from_slice(&v, shape)
}

/// ResNet-like conv2d workloads (NHWC, f32): name, batch, height = width, C_in, C_out, kernel,
/// stride, padding. Mirrored in scripts/bench.py.
const CONV2D: &[(&str, usize, usize, usize, usize, usize, usize, usize)] = &[
    ("conv2d_n1_56x56x64_3x3", 1, 56, 64, 64, 3, 1, 1),
    ("conv2d_n8_56x56x64_3x3", 8, 56, 64, 64, 3, 1, 1),
    ("conv2d_n4_28x28x128_3x3", 4, 28, 128, 128, 3, 1, 1),
    ("conv2d_n4_28x28x128_3x3_s2", 4, 28, 128, 128, 3, 2, 1),
    ("conv2d_n4_56x56x64_1x1_256", 4, 56, 64, 256, 1, 1, 0),
    ("conv2d_n4_224x224x3_7x7_s2", 4, 224, 3, 64, 7, 2, 3),
];

/// With `OXMX_CPU_PROFILE=1`: the kernels' run time per primitive since the last call (all
/// threads' time added up), largest first, on stderr.
pub(crate) fn print_cpu_profile() {
    if std::env::var("OXMX_CPU_PROFILE").map_or(true, |v| v != "1") {
        return;
    }
    let mut prof: Vec<(String, (u64, f64))> = oxmx_core::backend::cuda::profile().into_iter().collect();
    oxmx_core::backend::cuda::profile_reset();
    prof.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let (calls, total): (u64, f64) = prof.iter().fold((0, 0.0), |(c, t), p| (c + p.1 .0, t + p.1 .1));
    if calls == 0 {
        return;
    }
    eprintln!("[cpu] {calls} kernels, {:.1} ms", total * 1e3);
    for (name, (n, t)) in prof.iter().take(25) {
        eprintln!("[cpu]   {name:40} {n:8} calls {:9.2} ms {:8.1} us/call", t * 1e3, t * 1e6 / *n as f64);
    }
}

fn main() {
    // Output piped into `head` (or a closed pipe) ends the run quietly, as for other command-line
    // tools, instead of `println!` panicking on the broken pipe.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let filter = std::env::args().nth(1).unwrap_or_default();
    let want = |name: &str| filter.is_empty() || name.contains(&filter);
    // OXMX_BENCH_N shrinks the element-wise rows, e.g. to see a kernel with its data in cache.
    let n16m = std::env::var("OXMX_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize << 24);
    // The gelu rows report their fraction of copy bandwidth, so they measure it too.
    if want("copy") || want("gelu_16M_f32_compiled") {
        let bw = copy_bandwidth(n16m);
        println!("{}", serde_json::json!({"impl": "machine", "bench": "copy_16M_f32", "gbps": bw / 1e9}));
    }
    if want("eval_latency") {
        // One tiny op evaluated and waited for: the fixed cost every small kernel pays (graph
        // build, hand-off to the stream thread, wake-up of the caller).
        let s = input(&[16], 3);
        s.eval().unwrap();
        report("eval_latency_add_16_f32", time(5000, || &s + 1.0), 128.0, 16.0);
    }
    let x = input(&[n16m], 1);
    let y = input(&[n16m], 2);
    x.eval().unwrap();
    y.eval().unwrap();
    let elem_bytes = |k: usize| (k * n16m * 4) as f64;
    if want("add") {
        report("add_16M_f32", time(10, || &x + &y), elem_bytes(3), n16m as f64);
    }
    if want("mul_scalar") {
        report("mul_scalar_16M_f32", time(10, || &x * 3.0), elem_bytes(2), n16m as f64);
    }
    if want("exp") {
        report("exp_16M_f32", time(5, || ops::exp(&x)), elem_bytes(2), n16m as f64);
    }
    if want("tanh") {
        report("tanh_16M_f32", time(5, || ops::tanh(&x)), elem_bytes(2), n16m as f64);
    }
    if want("gelu_16M_f32_compiled") {
        // tanh-GELU: eleven element-wise ops. Uncompiled, every op streams 16M floats through
        // memory; compiled, one fused kernel reads x once and writes y once (floor: 2 x 64 MB
        // at copy bandwidth).
        let gelu = |x: Array| {
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            &x * 0.5 * (ops::tanh(&((&x + &x * &x * &x * 0.044715) * c)) + 1.0)
        };
        if want("gelu_16M_f32") {
            // Uncompiled, as users run it: eval-time fusion merges the exact runs (the
            // multiplies and adds around tanh), so it is also timed op by op, which is what
            // `compile`'s target is measured against.
            report("gelu_16M_f32", time(5, || gelu(x.clone())), elem_bytes(2), 0.0);
            let was = oxmx_core::set_eval_fusion(false);
            report("gelu_16M_f32_op_by_op", time(5, || gelu(x.clone())), elem_bytes(2), 0.0);
            oxmx_core::set_eval_fusion(was);
        }
        let compiled = oxmx_core::compile(gelu);
        report("gelu_16M_f32_compiled", time(10, || compiled.call(x.clone())), elem_bytes(2), 0.0);
    }
    let m = input(&[4096, 4096], 3);
    m.eval().unwrap();
    let mat_bytes = (4096 * 4096 * 4) as f64;
    if want("sum") {
        report("sum_4096x4096_axis-1", time(10, || ops::sum(&m, -1isize, false)), mat_bytes, 0.0);
        report("sum_4096x4096_axis0", time(10, || ops::sum(&m, 0isize, false)), mat_bytes, 0.0);
    }
    if want("softmax") {
        report("softmax_4096x4096", time(5, || ops::softmax(&m, -1isize, false)), 2.0 * mat_bytes, 0.0);
    }
    if want("logsumexp") {
        report("logsumexp_4096x4096", time(5, || ops::logsumexp(&m, -1isize, false)), mat_bytes, 0.0);
    }
    if want("var") {
        report("var_4096x4096", time(5, || ops::var(&m, -1isize, false, 0)), mat_bytes, 0.0);
    }
    if want("sub_rows") {
        // Layer norm's centring step on its own: a [4096, 1] column broadcast along rows.
        let mu = ops::mean(&m, -1isize, true);
        mu.eval().unwrap();
        report("sub_rows_4096x4096", time(10, || &m - &mu), 2.0 * mat_bytes, 0.0);
    }
    for &(name, n, hw, c, o, k, stride, pad) in CONV2D {
        if want(name) {
            let x = input(&[n, hw, hw, c], 4);
            let w = input(&[o, k, k, c], 5);
            x.eval().unwrap();
            w.eval().unwrap();
            let ohw = (hw + 2 * pad - k) / stride + 1;
            let flops = 2.0 * (n * ohw * ohw * o * k * k * c) as f64;
            let bytes = ((n * hw * hw * c + o * k * k * c + n * ohw * ohw * o) * 4) as f64;
            // The single-image row takes ~2 ms: 40 runs, so the median is not at the mercy of a
            // noisy host's one slow stretch (scripts/bench.py times the peers the same way).
            let iters = (40 / n).max(10);
            report(name, time(iters, || ops::conv2d(&x, &w, [stride; 2], [pad; 2], [1, 1], 1)), bytes, flops);
        }
    }
    if want("fft") {
        let f = input(&[512, 4096], 6);
        f.eval().unwrap();
        // 5 n log2 n flops per complex transform, the usual FFT convention.
        let flops = 5.0 * 512.0 * 4096.0 * 12.0;
        report("fft_512x4096_f32", time(10, || ops::fft::fft(&f, None, -1)), (512 * 4096 * 12) as f64, flops);
    }
    if want("layernorm") {
        report(
            "layernorm_4096x4096",
            time(5, || {
                let mu = ops::mean(&m, -1isize, true);
                let v = ops::var(&m, -1isize, true, 0);
                (&m - &mu) * ops::rsqrt(&(v + 1e-5))
            }),
            2.0 * mat_bytes,
            0.0,
        );
    }
    drop((x, y, m));
    for n in [1024usize, 2048, 4096] {
        let flops = 2.0 * (n * n * n) as f64;
        // On the GPU every row is cheap: more iterations, and the half-precision 4096s too.
        let gpu = oxmx_core::default_device().is_gpu();
        let iters = if gpu {
            20
        } else if n >= 4096 {
            3
        } else {
            5
        };
        for dt in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
            let name = format!("matmul_{n}_{}", dt.name());
            if !want(&name) || (dt != Dtype::Float32 && n == 4096 && !gpu) {
                continue;
            }
            let a = input(&[n, n], 10).astype(dt);
            let b = input(&[n, n], 11).astype(dt);
            a.eval().unwrap();
            b.eval().unwrap();
            report(&name, time(iters, || ops::matmul(&a, &b)), (3 * n * n * dt.size()) as f64, flops);
        }
    }
    // The products of the training steps (issue 4), with their transposed operands: `x @ Wᵀ`
    // forward, `gᵀ @ x` for the weight gradient, `g @ W` for the input gradient; the MLP's
    // batch of 256 and the transformer's 2048 tokens of width 128 (MLP 512).
    let train_products = [
        (256usize, 784usize, 512usize, false, true),
        (256, 512, 512, false, true),
        (512, 256, 784, true, false),
        (256, 512, 512, false, false),
        (2048, 128, 512, false, true),
        (2048, 512, 128, false, true),
        (2048, 128, 128, false, false),
        (512, 2048, 128, true, false),
    ];
    for (m, k, n, at, bt) in train_products {
        let name = format!("matmul_train_{m}x{k}x{n}{}{}_f32", if at { "_at" } else { "" }, if bt { "_bt" } else { "" });
        if !want(&name) {
            continue;
        }
        let operand =
            |r: usize, c: usize, t: bool, seed: u64| if t { ops::transpose(&input(&[c, r], seed), &[1, 0]) } else { input(&[r, c], seed) };
        let (a, b) = (operand(m, k, at, 13), operand(k, n, bt, 14));
        oxmx_core::eval(&[&a, &b]).unwrap();
        report(&name, time(400, || ops::matmul(&a, &b)), (4 * (m * k + k * n + m * n)) as f64, 2.0 * (m * k * n) as f64);
    }
    if want("sort") {
        let v = input(&[1 << 20], 12);
        v.eval().unwrap();
        report("sort_1M_f32", time(5, || ops::sort(&v, Some(-1))), (2 * 4 << 20) as f64, 0.0);
    }
    gguf::run(&want);
    transforms::run(&want);
    nn::run(&want);
    quant::run(&want);
    gpu::run(&want);
    fast::run(&want);
}
