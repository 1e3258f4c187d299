//! Backends: the CPU backend and the CUDA backend, one file per primitive family each.

pub mod cpu;
pub mod cuda;

use crate::device::Device;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::Primitive;
use crate::stream::Stream;

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
            cpu::eval(prim, inputs, specs)
        }
        Device::Gpu(n) => cuda::eval(n, prim, inputs, specs),
    }
}
