//! CUDA graphs for batches of ops: while a stream worker runs a task of several ops (a decoding
//! step is ~1000 of them), the kernels those ops launch are captured into a graph instead of
//! being launched one by one, and the graph is launched when the task ends, when it holds
//! `FLUSH_NODES` kernels (so the GPU starts early on long tasks), or when something must reach
//! the device directly (a copy, a synchronisation).
//!
//! Why: a `cuLaunchKernel` costs ~3 µs of host time (measured on an H200 host by
//! `examples/cuda_dispatch_probe`), while a captured launch costs 0.3–0.6 µs, updating a cached
//! executable graph ~0.15 µs per node and a graph launch a few µs in all. A step's chunks have
//! the same kernel sequence every step, so their executables are kept (keyed by a hash of the
//! sequence) and updated in place with the step's new arguments (`cuGraphExecUpdate`); a
//! sequence never seen before is instantiated (~2.6 µs per node, about what launching it
//! directly costs).
//!
//! Ordering is unchanged: a capture on the device's one stream records its kernels as a chain
//! in launch order, and the graph launch takes the captured work's place in the stream. Every
//! stream operation goes through this module under one lock per device, so nothing can slip
//! onto the stream between the end of a capture and its launch.
//!
//! Failures: if a capture cannot be turned into a graph, the work in it never ran; the error
//! is kept and returned by `end_batch`, whose caller fails the task's outputs, and capturing is
//! switched off for the rest of the process.
//!
//! Off by default (`OXMX_CUDA_GRAPHS=1` turns it on; the CUDA tests pass either way). Measured
//! on an H100 host (BENCHMARKS.md, eleventh session): a captured launch costs 0.69 µs against
//! 3.33 µs direct, but ending a capture, updating and launching costs ~0.7 µs per node, and
//! every copy to the device (still ~7 per decoding step) ends a capture early with a sequence
//! that must be instantiated anew (~140 µs a flush), so Llama-3-8B decoding got slower (4-bit
//! 99 vs 124 tok/s). It pays once small uploads are captured too (as kernel parameters) and
//! the dense mat-vec stops going through cuBLAS (17 µs of host time per call).

use super::compiler::fnv_step;
use super::device::{cuda_err, Gpu};
use crate::error::{Error, Result};
use cudarc::driver::sys;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

/// Captured kernels after which the graph is launched at the next op boundary.
const FLUSH_NODES: usize = 256;
/// Tasks with fewer ops launch directly (a graph's fixed cost would not pay off).
const MIN_TASK_OPS: usize = 8;
/// Executable graphs kept for reuse (a decoding step needs a handful).
const MAX_EXECS: usize = 64;

static DISABLED: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_on = *ENV.get_or_init(|| std::env::var("OXMX_CUDA_GRAPHS").is_ok_and(|v| v == "1"));
    env_on && !DISABLED.load(Ordering::Relaxed)
}

/// Per-device capture state (in `Gpu::capture`).
#[derive(Default)]
pub(crate) struct Capture {
    /// Tasks running now that asked for batching.
    batching: usize,
    /// Whether the stream is capturing.
    active: bool,
    /// Kernels in the current capture and the hash of their sequence.
    nodes: usize,
    hash: u64,
    /// Executable graphs by sequence hash.
    execs: HashMap<u64, Exec>,
    /// A capture that failed: its work never ran.
    failed: Option<Error>,
}

struct Exec(sys::CUgraphExec);
// Used only under the device's capture lock.
unsafe impl Send for Exec {}

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: an executable graph this module instantiated; the stream orders its launches.
        unsafe {
            let _ = sys::cuGraphExecDestroy(self.0);
        }
    }
}

fn lock(g: &Gpu) -> MutexGuard<'_, Capture> {
    g.capture.lock().unwrap_or_else(|p| p.into_inner())
}

fn check(r: sys::CUresult, what: &str) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cuda_err(what, r))
    }
}

/// Runs `op` (which puts kernels on `g`'s stream: one of ours, or a cuBLAS call) under the
/// capture lock, inside the current capture when a batching task runs. `key` identifies the
/// launch (function, grid, sizes) for the executable-graph cache.
pub(crate) fn launch(g: &Gpu, key: &[u64], op: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut st = lock(g);
    if st.batching > 0 && !st.active && enabled() {
        // Relaxed: allocations (cuMemAlloc) and module loads stay legal while capturing.
        // SAFETY: the device's stream, not capturing (checked under the lock).
        check(
            unsafe { sys::cuStreamBeginCapture_v2(g.cu_stream(), sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED) },
            "starting a CUDA graph capture",
        )?;
        st.active = true;
        st.nodes = 0;
        st.hash = 0xcbf29ce484222325;
    }
    if st.active {
        st.nodes += 1;
        for &k in key {
            st.hash = fnv_step(st.hash, k);
        }
    }
    super::timed("~launch (driver)", op)
}

/// Whether a batching task is running with graphs on (then small uploads travel as kernel
/// parameters, memory.rs, instead of ending the capture).
pub(crate) fn batching(g: &Gpu) -> bool {
    enabled() && lock(g).batching > 0
}

/// Runs `op` (a copy or synchronisation) directly on the stream, after launching whatever is
/// captured so far.
pub(crate) fn outside_capture<T>(g: &Gpu, op: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut st = lock(g);
    flush_locked(g, &mut st)?;
    super::timed("~copy/sync (driver)", op)
}

/// Launches the captured work at an op boundary once it holds `FLUSH_NODES` kernels.
pub(crate) fn flush_if_long(g: &Gpu) -> Result<()> {
    let mut st = lock(g);
    if st.active && st.nodes >= FLUSH_NODES {
        flush_locked(g, &mut st)?;
    }
    Ok(())
}

fn flush_locked(g: &Gpu, st: &mut Capture) -> Result<()> {
    if !st.active {
        return match &st.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
    }
    st.active = false;
    let r = super::timed("~graph end+update+launch", || end_and_launch(g, st));
    if let Err(e) = &r {
        DISABLED.store(true, Ordering::Relaxed);
        st.execs.clear();
        st.failed = Some(Error::runtime(format!("{e} (CUDA graphs are now off for this process)")));
    }
    r
}

fn end_and_launch(g: &Gpu, st: &mut Capture) -> Result<()> {
    let mut graph: sys::CUgraph = std::ptr::null_mut();
    // SAFETY: the stream is capturing (state under the lock).
    check(unsafe { sys::cuStreamEndCapture(g.cu_stream(), &mut graph) }, "ending a CUDA graph capture")?;
    let result = (|| {
        let key = st.hash ^ (st.nodes as u64).rotate_left(32);
        let reuse = match st.execs.get(&key) {
            Some(exec) => {
                // SAFETY: both handles are live; a failed update leaves the exec launchable
                // but we replace it anyway.
                let mut info: sys::CUgraphExecUpdateResultInfo = unsafe { std::mem::zeroed() };
                (unsafe { sys::cuGraphExecUpdate_v2(exec.0, graph, &mut info) }) == sys::CUresult::CUDA_SUCCESS
            }
            None => false,
        };
        if !reuse {
            let mut exec: sys::CUgraphExec = std::ptr::null_mut();
            // SAFETY: a complete graph from the capture.
            check(unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0) }, "instantiating a CUDA graph")?;
            if st.execs.len() >= MAX_EXECS {
                st.execs.clear();
            }
            st.execs.insert(key, Exec(exec));
        }
        let exec = st.execs.get(&key).expect("exec was just cached").0;
        // SAFETY: an instantiated graph on this device's stream.
        check(unsafe { sys::cuGraphLaunch(exec, g.cu_stream()) }, "launching a CUDA graph")
    })();
    // SAFETY: the executable graph no longer needs the captured one.
    unsafe {
        let _ = sys::cuGraphDestroy(graph);
    }
    result
}

/// A task of `ops` ops starts on this device: batch its launches when it is long enough.
/// Returns whether it batches (then `end_batch` must follow).
pub(crate) fn begin_batch(g: &Gpu, ops: usize) -> bool {
    if ops < MIN_TASK_OPS || !enabled() {
        return false;
    }
    lock(g).batching += 1;
    true
}

/// The batching task ends: its captured work is launched. An error means work captured since
/// the last launch never ran (the caller fails the task's outputs).
pub(crate) fn end_batch(g: &Gpu) -> Result<()> {
    let mut st = lock(g);
    st.batching = st.batching.saturating_sub(1);
    let r = flush_locked(g, &mut st);
    // Reported once, to the task that was running.
    st.failed = None;
    r
}
