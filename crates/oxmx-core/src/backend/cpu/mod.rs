//! The CPU backend: one file per primitive family, mirroring `primitives/`.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod amx;
pub mod binary;
pub mod cast;
pub mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_direct;
pub mod creation;
pub mod distributed;
pub mod elementwise;
pub mod fast;
pub mod fastmath;
pub mod fft;
pub mod fused;
pub mod gemv;
#[cfg(target_arch = "x86_64")]
mod gemv_avx2;
#[cfg(target_arch = "x86_64")]
mod gemv_bf16;
pub mod index;
pub mod jit;
mod kfloat;
pub mod linalg;
pub mod matmul;
pub mod quantized;
pub mod radix;
pub mod random;
pub mod reduce;
pub mod rowwise;
#[cfg(target_arch = "x86_64")]
mod sdpa512;
#[cfg(target_arch = "x86_64")]
mod sdpa_avx2;
#[cfg(target_arch = "x86_64")]
mod sdpa_rows;
mod sgemm;
#[cfg(target_arch = "x86_64")]
mod sgemm512;
#[cfg(target_arch = "x86_64")]
mod sgemm_small;
pub mod shape;
pub mod simd;
pub mod sort;
pub mod ternary;
pub mod unary;

use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::{IndexOp, Primitive};

pub fn eval(prim: &Primitive, inputs: &mut [Data], specs: &[Spec]) -> Result<Vec<Data>> {
    if let Primitive::Index(op @ IndexOp::SliceUpdate { .. }) = prim {
        if let Some(out) = index::slice_update_in_place(op, inputs) {
            return out;
        }
    }
    let inputs: &[Data] = inputs;
    match prim {
        Primitive::Cast(op) => cast::eval(op, inputs, specs),
        Primitive::Creation(op) => creation::eval(op, inputs, specs),
        Primitive::Unary(op) => unary::eval(*op, inputs, specs),
        Primitive::Binary(op) => binary::eval(*op, inputs, specs),
        Primitive::Ternary(op) => ternary::eval(op, inputs, specs),
        Primitive::Reduce(op) => reduce::eval(op, inputs, specs),
        Primitive::Shape(op) => shape::eval(op, inputs, specs),
        Primitive::Index(op) => index::eval(op, inputs, specs),
        Primitive::Matmul(op) => matmul::eval(op, inputs, specs),
        Primitive::Conv(op) => conv::eval(op, inputs, specs),
        Primitive::Sort(op) => sort::eval(op, inputs, specs),
        Primitive::Random(op) => random::eval(op, inputs, specs),
        Primitive::Fft(op) => fft::eval(op, inputs, specs),
        Primitive::Linalg(op) => linalg::eval(op, inputs, specs),
        Primitive::Quantized(op) => quantized::eval(op, inputs, specs),
        Primitive::Fast(op) => fast::eval(op, inputs, specs),
        // The forward outputs were computed by their own graph: pass them through.
        Primitive::Custom(op) => Ok(inputs[op.n_primals..].to_vec()),
        Primitive::Fused(op) => fused::eval(op, inputs, specs),
        Primitive::Distributed(op) => distributed::eval(op, inputs, specs),
    }
}
