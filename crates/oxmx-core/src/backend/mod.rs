//! Backends: the CPU backend (one file per primitive family) and, later, CUDA.

pub mod cpu;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::Primitive;
use crate::stream::Stream;

/// Runs one primitive on the device of `stream`.
/// `inputs` is mutable so a kernel may write into an input buffer the scheduler donated (see
/// `Primitive::donates_input`).
pub fn eval(prim: &Primitive, stream: Stream, inputs: &mut [Data], specs: &[Spec]) -> Result<Vec<Data>> {
    match stream.device {
        Device::Cpu => cpu::eval(prim, inputs, specs),
        Device::Gpu(n) => Err(Error::runtime(format!("[{}] no GPU backend is available for gpu {n}", prim.name()))),
    }
}
