//! What one GPU op costs on the host, piece by piece: raw `cuLaunchKernel` (small and
//! Index-sized parameters), small host→device copies (pageable and pinned), CUDA graph capture /
//! instantiate / update / launch, and oxmx's own per-op cost (graph building + scheduling +
//! dispatch) on a chain of tiny element-wise ops. Run on a machine with a CUDA device:
//! `cargo run --profile iterate -p oxmx-bench --example cuda_dispatch_probe`.
//! Numbers are printed, not asserted: they say where decoding's per-token time goes.

use cudarc::driver::{sys, CudaContext};
use std::ffi::c_void;
use std::time::Instant;

const SRC: &str = r#"
struct Big { long long v[39]; };
extern "C" __global__ void small(float* p, int n) { if (n < 0) p[threadIdx.x] = 1.0f; }
extern "C" __global__ void big(float* p, Big b) { if (b.v[0] < 0) p[threadIdx.x] = 1.0f; }
"#;

fn check(r: sys::CUresult, what: &str) {
    assert_eq!(r, sys::CUresult::CUDA_SUCCESS, "{what}");
}

fn us(t: Instant, n: usize) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    if std::env::args().any(|a| a == "--oxmx-only") {
        oxmx_chain();
        return;
    }
    let ctx = CudaContext::new(0).expect("a CUDA device");
    let stream = ctx.new_stream().unwrap();
    let s = stream.cu_stream();
    let ptx = cudarc::nvrtc::compile_ptx(SRC).unwrap();
    let module = ctx.load_module(ptx).unwrap();
    let small = module.load_function("small").unwrap().cu_function();
    let big = module.load_function("big").unwrap().cu_function();
    let dptr = unsafe { cudarc::driver::result::malloc_sync(1 << 20) }.unwrap();
    let sync = || stream.synchronize().unwrap();

    let n = 20000;
    let mut p = dptr;
    let mut k: i32 = 1;
    let mut b = [1i64; 39];
    let launch = |f: sys::CUfunction, params: &mut [*mut c_void]| unsafe {
        check(sys::cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, s, params.as_mut_ptr(), std::ptr::null_mut()), "launch");
    };
    for (name, f, big_param) in [("small params", small, false), ("312-byte params", big, true)] {
        for _ in 0..2 {
            sync();
            let t = Instant::now();
            for _ in 0..n {
                let mut params: [*mut c_void; 2] =
                    [&mut p as *mut u64 as _, if big_param { &mut b as *mut [i64; 39] as _ } else { &mut k as *mut i32 as _ }];
                launch(f, &mut params);
            }
            let host = us(t, n);
            sync();
            println!("cuLaunchKernel ({name}): host {host:.2} us/launch, with the GPU draining {:.2} us/kernel", us(t, n));
        }
    }

    // Small copies to the device.
    let host_val = vec![7u8; 8];
    let m = 5000;
    sync();
    let t = Instant::now();
    for i in 0..m {
        unsafe { cudarc::driver::result::memcpy_htod_async(dptr + (i % 1000) as u64 * 8, &host_val[..], s) }.unwrap();
    }
    println!("8-byte HtoD from pageable memory: host {:.2} us/copy", us(t, m));
    sync();
    let mut pinned: *mut c_void = std::ptr::null_mut();
    unsafe { check(sys::cuMemHostAlloc(&mut pinned, 1 << 16, 0), "host alloc") };
    let t = Instant::now();
    for i in 0..m {
        unsafe { check(sys::cuMemcpyHtoDAsync_v2(dptr + (i % 1000) as u64 * 8, pinned, 8, s), "pinned copy") };
    }
    println!("8-byte HtoD from pinned memory: host {:.2} us/copy", us(t, m));
    sync();

    // CUDA graphs: capture 1000 launches, instantiate, replay, update.
    let nodes = 1000;
    let mut capture = |kval: i32| -> (sys::CUgraph, f64) {
        let mut kv = kval;
        let t = Instant::now();
        unsafe { check(sys::cuStreamBeginCapture_v2(s, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "begin") };
        for _ in 0..nodes {
            let mut params: [*mut c_void; 2] = [&mut p as *mut u64 as _, &mut b as *mut [i64; 39] as _];
            let _ = &mut kv;
            launch(big, &mut params);
        }
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        unsafe { check(sys::cuStreamEndCapture(s, &mut graph), "end") };
        (graph, us(t, nodes))
    };
    let (graph, cap_us) = capture(1);
    let t = Instant::now();
    let mut exec: sys::CUgraphExec = std::ptr::null_mut();
    unsafe { check(sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0), "instantiate") };
    let inst_us = us(t, nodes);
    println!("graph capture: {cap_us:.2} us/launch captured; instantiate {inst_us:.2} us/node");
    for _ in 0..3 {
        sync();
        let t = Instant::now();
        unsafe { check(sys::cuGraphLaunch(exec, s), "graph launch") };
        let host = t.elapsed().as_secs_f64() * 1e6;
        sync();
        println!("graph launch of {nodes} nodes: host {host:.1} us, GPU done after {:.2} us/node", us(t, nodes));
    }
    for _ in 0..2 {
        let (g2, cap2) = capture(2);
        let t = Instant::now();
        let mut info: sys::CUgraphExecUpdateResultInfo = unsafe { std::mem::zeroed() };
        let r = unsafe { sys::cuGraphExecUpdate_v2(exec, g2, &mut info) };
        println!("re-capture {cap2:.2} us/launch; cuGraphExecUpdate {:.2} us/node ({r:?})", us(t, nodes));
        unsafe { sys::cuGraphDestroy(g2) };
    }
    let mut count = 0usize;
    unsafe { check(sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count), "count") };
    let mut handles = vec![std::ptr::null_mut(); count];
    unsafe { check(sys::cuGraphGetNodes(graph, handles.as_mut_ptr(), &mut count), "nodes") };
    let t = Instant::now();
    for h in &handles {
        let mut params: [*mut c_void; 2] = [&mut p as *mut u64 as _, &mut b as *mut [i64; 39] as _];
        let np = sys::CUDA_KERNEL_NODE_PARAMS {
            func: big,
            gridDimX: 1,
            gridDimY: 1,
            gridDimZ: 1,
            blockDimX: 32,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: 0,
            kernelParams: params.as_mut_ptr(),
            extra: std::ptr::null_mut(),
            kern: std::ptr::null_mut(),
            ctx: std::ptr::null_mut(),
        };
        unsafe { check(sys::cuGraphExecKernelNodeSetParams_v2(exec, *h, &np), "set params") };
    }
    println!("cuGraphExecKernelNodeSetParams: {:.2} us/node", us(t, count));
    sync();

    oxmx_chain();
}

/// oxmx: a chain of 1-element adds on the default device (GPU or CPU).
fn oxmx_chain() {
    use oxmx_core::prelude::*;
    println!("oxmx default device: {:?}", oxmx_core::default_device());
    let x = Array::from_slice(&[1.0f32], &[1]).astype(Dtype::Bfloat16);
    x.eval().unwrap();
    for len in [1000usize, 1000, 5000] {
        let t = Instant::now();
        let mut y = x.clone();
        for _ in 0..len {
            y = &y + &x;
        }
        let build = us(t, len);
        y.eval().unwrap();
        println!("oxmx add chain of {len}: build {build:.2} us/op, build+eval {:.2} us/op", us(t, len));
        drop(y);
    }
    for (k, (calls, secs)) in oxmx_core::backend::cuda::profile() {
        println!("  profile {k}: {calls} calls {:.2} us/call", secs * 1e6 / calls as f64);
    }
}
