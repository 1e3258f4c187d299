//! Backends: the CPU backend and the CUDA backend, one file per primitive family each.

pub mod cpu;
pub mod cuda;

use crate::device::Device;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::Primitive;
use crate::stream::Stream;

/// A stream worker starts a task of `ops` ops in order; `true` when the device batches their
/// launches (GPU: CUDA graphs), and then `after_op` / `end_batch` must follow.
pub fn begin_batch(stream: Stream, ops: usize) -> bool {
    match stream.device {
        Device::Cpu => false,
        Device::Gpu(n) => cuda::begin_batch(n, ops),
    }
}

pub fn after_op(stream: Stream) {
    if let Device::Gpu(n) = stream.device {
        cuda::after_op(n);
    }
}

/// Ends a batched task: its work is launched. An error means some of it never ran.
pub fn end_batch(stream: Stream) -> Result<()> {
    match stream.device {
        Device::Cpu => Ok(()),
        Device::Gpu(n) => cuda::end_batch(n),
    }
}

/// Whether `OXMX_CPU_PROFILE` asks for the run time of every CPU kernel, per primitive name
/// (read with `cuda::profile()`, the table `OXMX_GPU_PROFILE` fills for GPU dispatches).
pub fn cpu_profiling() -> bool {
    static P: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *P.get_or_init(|| std::env::var_os("OXMX_CPU_PROFILE").is_some())
}

/// Runs one primitive on the device of `stream`.
/// `inputs` is mutable so a kernel may write into an input buffer the scheduler donated (see
/// `Primitive::donates_input`).
pub fn eval(prim: &Primitive, stream: Stream, inputs: &mut [Data], specs: &[Spec]) -> Result<Vec<Data>> {
    match stream.device {
        Device::Cpu => {
            // Inputs a GPU made get their host copy here, where a failure is an error.
            for d in inputs.iter() {
                d.buffer.ensure_host()?;
            }
            if cpu_profiling() {
                let mut name = prim.name();
                static SHAPES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
                if *SHAPES.get_or_init(|| std::env::var_os("OXMX_CPU_PROFILE_SHAPES").is_some()) {
                    for d in inputs.iter() {
                        name += &format!(" {:?}/{:?}", d.shape, d.strides);
                    }
                }
                return cuda::timed(&name, || cpu::eval(prim, inputs, specs));
            }
            cpu::eval(prim, inputs, specs)
        }
        Device::Gpu(n) => cuda::eval(n, prim, inputs, specs),
    }
}
