//! The CUDA backend (through cudarc: the driver, NVRTC and cuBLAS are loaded at run time, so
//! builds and CI need no CUDA toolkit).
//!
//! A primitive on a GPU stream runs its GPU kernel when this backend has one for its dtypes and
//! layout; otherwise it runs the CPU kernel on host copies of its inputs and its output stays on
//! the host until a GPU kernel reads it (each side of a buffer is made once, see
//! `memory::Buffer`). So every primitive works on the GPU from the start, and `fallbacks()`
//! shows which ones still run on the CPU. Families mirror `backend/cpu/` file by file.

mod compiler;
mod device;
mod distributed;
mod elementwise;
mod fast;
mod flash;
mod fused;
mod graph;
mod index;
mod matmul;
mod matvec;
mod memory;
mod quantized;
mod reduce;
mod replay;

pub use device::device_count;
pub(crate) use distributed::{bind_device, nccl_host};
pub(crate) use memory::{clear_all_caches, download, reset_peaks, set_all_limits, totals, upload};
pub use memory::{clear_cache, memory_stats, set_memory_limit, DeviceBlock};

use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::{CastOp, CreationOp, Primitive, ReduceOp, ShapeOp};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Whether a CUDA device can be used (a driver library that loads and at least one device;
/// `OXMX_DISABLE_GPU=1` says no).
pub fn available() -> bool {
    device_count() > 0
}

/// Waits for all work queued on GPU `ordinal`.
pub fn synchronize(ordinal: usize) -> Result<()> {
    device::gpu(ordinal)?.synchronize()
}

/// The device's name and compute capability, e.g. `("NVIDIA H200", "sm_90")`.
pub fn device_info(ordinal: usize) -> Result<(String, String)> {
    let g = device::gpu(ordinal)?;
    let name = g.ctx.name().map_err(|e| device::cuda_err("reading the device name", e))?;
    Ok((name, g.arch.to_string()))
}

fn fallback_counts() -> &'static Mutex<BTreeMap<String, u64>> {
    static F: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    &F
}

/// Primitives (by name) that ran on the CPU for a GPU stream, with counts.
pub fn fallbacks() -> BTreeMap<String, u64> {
    fallback_counts().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether `OXMX_GPU_PROFILE` asks for host-side timings of GPU primitives (or
/// `OXMX_CPU_PROFILE` for the run times of CPU kernels, kept in the same table).
fn profiling() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var_os("OXMX_GPU_PROFILE").is_some() || crate::backend::cpu_profiling())
}

/// With `OXMX_GPU_PROFILE` set, adds the host time of `f` to the profile row `name` (rows for
/// parts of a primitive's dispatch start with `~`).
pub(crate) fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    if !profiling() {
        return f();
    }
    let t0 = std::time::Instant::now();
    let r = f();
    let dt = t0.elapsed().as_secs_f64();
    let mut t = profile_table().lock().unwrap_or_else(|p| p.into_inner());
    // Looked up before inserting: a key String per call would add its allocation to every row.
    match t.get_mut(name) {
        Some(e) => {
            e.0 += 1;
            e.1 += dt;
        }
        None => {
            t.insert(name.to_string(), (1, dt));
        }
    }
    r
}

fn profile_table() -> &'static Mutex<BTreeMap<String, (u64, f64)>> {
    static T: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());
    &T
}

/// With `OXMX_GPU_PROFILE` set: per primitive name, (calls, seconds) of host time spent
/// dispatching it for a GPU stream (kernel launches are asynchronous, so this is the host's
/// cost per op, not the kernel's run time; fallbacks include their CPU kernel). Empty otherwise.
/// Two rows come from the GPU's own clock (CUDA events around each graph launch, rows starting
/// with `~gpu`): the time the GPU ran graphs and the span they covered.
pub fn profile() -> BTreeMap<String, (u64, f64)> {
    let mut table = profile_table().lock().unwrap_or_else(|p| p.into_inner()).clone();
    if profiling() && !table.is_empty() {
        for ordinal in 0..device_count() {
            if let Some(Ok((n, busy, span))) = device::existing(ordinal).map(graph::gpu_time) {
                if n > 0 {
                    table.insert(format!("~gpu {ordinal}: graphs running (GPU clock)"), (n, busy));
                    table.insert(format!("~gpu {ordinal}: first graph start to last end (GPU clock)"), (1, span));
                }
            }
        }
    }
    table
}

/// Kernel launches (direct or captured into graphs) on GPU `ordinal` so far; 0 for a device not
/// in use. With Nsight Compute's `--launch-skip`, it finds a phase of a run (e.g. one decoding
/// step); a library call that launches several kernels (cuBLAS) counts once.
pub fn launches(ordinal: usize) -> u64 {
    device::existing(ordinal).map_or(0, graph::launch_seq)
}

/// Empties the `OXMX_GPU_PROFILE` table (to profile one phase, e.g. a benchmark's last trial,
/// without the kernel compilations and loads of the first).
pub fn profile_reset() {
    profile_table().lock().unwrap_or_else(|p| p.into_inner()).clear();
    // The GPU-clock rows restart too (devices this run has not used are left alone).
    for g in (0..device_count()).filter_map(device::existing) {
        let _ = graph::gpu_time(g);
    }
}

/// A stream worker starts a task of `ops` ops on GPU `ordinal`; `true` when its kernels are
/// batched into CUDA graphs (then `after_op` follows each op and `end_batch` the task).
pub(crate) fn begin_batch(ordinal: usize, ops: usize) -> bool {
    device::gpu(ordinal).is_ok_and(|g| graph::begin_batch(g, ops))
}

/// Between two ops of a batched task: launches the captured work once there is enough of it.
pub(crate) fn after_op(ordinal: usize) {
    if let Ok(g) = device::gpu(ordinal) {
        // A failure is kept and reported by `end_batch`.
        let _ = graph::flush_if_long(g);
    }
}

/// The batched task ended: launches what it captured. An error means captured work never ran.
pub(crate) fn end_batch(ordinal: usize) -> Result<()> {
    graph::end_batch(device::gpu(ordinal)?)
}

/// Runs `prim` on GPU `ordinal`.
pub(crate) fn eval(ordinal: usize, prim: &Primitive, inputs: &mut [Data], specs: &[Spec]) -> Result<Vec<Data>> {
    if profiling() {
        return timed(&prim.name(), || eval_on(ordinal, prim, inputs, specs));
    }
    eval_on(ordinal, prim, inputs, specs)
}

fn eval_on(ordinal: usize, prim: &Primitive, inputs: &mut [Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let g = device::gpu(ordinal)?;
    if let Some(out) = gpu_kernel(g, prim, &mut *inputs, specs)? {
        // Stamp what the kernels wrote (views of older data get a later stamp: still safe), so
        // a read waits for these launches and not for the work queued after them.
        let seq = graph::launch_seq(g);
        for d in &out {
            if let Some(b) = d.buffer.device_block_if_any() {
                b.mark_written(seq);
            }
        }
        return Ok(out);
    }
    *fallback_counts().lock().unwrap_or_else(|p| p.into_inner()).entry(prim.name()).or_insert(0) += 1;
    for d in inputs.iter() {
        d.buffer.ensure_host()?;
    }
    crate::backend::cpu::eval(prim, inputs, specs)
}

/// The GPU kernel's outputs, or `None` when there is none for these inputs.
fn gpu_kernel(g: &device::Gpu, prim: &Primitive, inputs: &mut [Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let one = |r: Result<Option<Data>>| r.map(|o| o.map(|d| vec![d]));
    match prim {
        Primitive::Unary(op) => one(elementwise::unary(g, *op, &inputs[0], &specs[0])),
        Primitive::Binary(op) => one(elementwise::binary(g, *op, &inputs[0], &inputs[1], &specs[0])),
        Primitive::Ternary(_) => one(elementwise::select(g, &inputs[0], &inputs[1], &inputs[2], &specs[0])),
        Primitive::Cast(CastOp::AsType(_)) => one(elementwise::cast(g, &inputs[0], &specs[0])),
        Primitive::Matmul(_) => one(matmul::matmul(g, &inputs[0], &inputs[1], &specs[0])),
        Primitive::Reduce(ReduceOp::Reduce { kind, axes, .. }) => one(reduce::reduce(g, *kind, axes, &inputs[0], &specs[0])),
        Primitive::Reduce(ReduceOp::Softmax) => one(reduce::softmax(g, &inputs[0], &specs[0])),
        Primitive::Reduce(ReduceOp::LogSumExp) => one(reduce::logsumexp(g, &inputs[0], &specs[0])),
        Primitive::Reduce(ReduceOp::ArgMax { axis }) => one(reduce::arg_reduce(g, *axis, true, &inputs[0], &specs[0])),
        Primitive::Reduce(ReduceOp::ArgMin { axis }) => one(reduce::arg_reduce(g, *axis, false, &inputs[0], &specs[0])),
        Primitive::Shape(op) => shape(g, op, inputs, specs),
        Primitive::Fast(op) => fast::eval(g, op, inputs, specs),
        Primitive::Quantized(op) => quantized::eval(g, op, inputs, specs),
        Primitive::Index(op) => index::eval(g, op, inputs, specs),
        Primitive::Fused(op) => fused::eval(g, op, inputs, specs),
        Primitive::Distributed(op) => distributed::eval(g, op, inputs, specs),
        Primitive::Creation(CreationOp::Arange { start, step, len, dtype }) => one(elementwise::arange(g, *start, *step, *len, *dtype)),
        _ => Ok(None),
    }
}

/// Views cost nothing on either device: they run the CPU's view code, which touches no bytes.
/// Ops that need a dense input get a GPU copy first.
fn shape(g: &device::Gpu, op: &ShapeOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    match op {
        ShapeOp::Broadcast(_) | ShapeOp::Transpose(_) | ShapeOp::Slice { .. } | ShapeOp::StopGradient => {
            crate::backend::cpu::shape::eval(op, inputs, specs).map(Some)
        }
        ShapeOp::Reshape(_) | ShapeOp::Copy | ShapeOp::AsStrided { .. } => {
            if !inputs[0].is_row_contiguous()
                && !matches!(op, ShapeOp::Reshape(_) if crate::backend::cpu::shape::reshapes_as_view(&inputs[0], specs))
            {
                let Some(dense) = elementwise::contiguous(g, &inputs[0])? else { return Ok(None) };
                return crate::backend::cpu::shape::eval(op, &[dense], specs).map(Some);
            }
            crate::backend::cpu::shape::eval(op, inputs, specs).map(Some)
        }
        ShapeOp::Concatenate { .. } | ShapeOp::Pad { .. } => index::assemble(g, op, inputs, &specs[0]),
    }
}
