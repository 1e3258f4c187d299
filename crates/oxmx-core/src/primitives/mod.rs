//! Primitives: the operations a graph node can hold, one family per file. Each family answers
//! its output shapes and dtypes (`output_specs`), equality (for CSE) and a printable name; the
//! backends and transforms `match` on families exhaustively, so a new primitive is a compile
//! error everywhere it is still missing.

pub mod binary;
pub mod cast;
pub mod conv;
pub mod creation;
pub mod custom;
pub mod distributed;
pub mod fast;
pub mod fft;
pub mod fused;
pub mod index;
pub mod linalg;
pub mod matmul;
pub mod quantized;
pub mod random;
pub mod reduce;
pub mod shape;
pub mod sort;
pub mod ternary;
pub mod unary;

pub use binary::BinaryOp;
pub use cast::CastOp;
pub use conv::ConvOp;
pub use creation::CreationOp;
pub use custom::CustomOp;
pub use distributed::DistributedOp;
pub use fast::FastOp;
pub use fft::FftOp;
pub use fused::{FusedInstr, FusedOp};
pub use index::IndexOp;
pub use linalg::LinalgOp;
pub use matmul::MatmulOp;
pub use quantized::{QuantMode, QuantParams, QuantizedOp};
pub use random::RandomOp;
pub use reduce::ReduceOp;
pub use shape::ShapeOp;
pub use sort::SortOp;
pub use ternary::TernaryOp;
pub use unary::UnaryOp;

use crate::error::Result;
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum Primitive {
    Cast(CastOp),
    Creation(CreationOp),
    Unary(UnaryOp),
    Binary(BinaryOp),
    Ternary(TernaryOp),
    Reduce(ReduceOp),
    Shape(ShapeOp),
    Index(IndexOp),
    Matmul(MatmulOp),
    Conv(ConvOp),
    Sort(SortOp),
    Random(RandomOp),
    Fft(FftOp),
    Linalg(LinalgOp),
    Quantized(QuantizedOp),
    /// mx.fast: fused norms, rope and attention (with an op-built fallback).
    Fast(FastOp),
    Custom(CustomOp),
    /// A region of element-wise ops merged by `compile`.
    Fused(FusedOp),
    /// A collective or point-to-point transfer between ranks (`mx.distributed`).
    Distributed(DistributedOp),
}

impl Primitive {
    /// Output shapes and dtypes for inputs of the given shapes and dtypes; validates them.
    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        match self {
            Primitive::Cast(op) => op.output_specs(inputs),
            Primitive::Creation(op) => op.output_specs(inputs),
            Primitive::Unary(op) => op.output_specs(inputs),
            Primitive::Binary(op) => op.output_specs(inputs),
            Primitive::Ternary(op) => op.output_specs(inputs),
            Primitive::Reduce(op) => op.output_specs(inputs),
            Primitive::Shape(op) => op.output_specs(inputs),
            Primitive::Index(op) => op.output_specs(inputs),
            Primitive::Matmul(op) => op.output_specs(inputs),
            Primitive::Conv(op) => op.output_specs(inputs),
            Primitive::Sort(op) => op.output_specs(inputs),
            Primitive::Random(op) => op.output_specs(inputs),
            Primitive::Fft(op) => op.output_specs(inputs),
            Primitive::Linalg(op) => op.output_specs(inputs),
            Primitive::Quantized(op) => op.output_specs(inputs),
            Primitive::Fast(op) => op.output_specs(inputs),
            Primitive::Custom(op) => op.output_specs(inputs),
            Primitive::Fused(op) => op.output_specs(inputs),
            Primitive::Distributed(op) => op.output_specs(inputs),
        }
    }

    /// Whether the kernel may write its output into its first input's buffer when the scheduler
    /// donates it (the input has no other owner): same shape and dtype in and out.
    pub fn donates_input(&self) -> bool {
        matches!(self, Primitive::Index(IndexOp::SliceUpdate { .. }))
    }

    pub fn name(&self) -> String {
        match self {
            Primitive::Cast(op) => op.name(),
            Primitive::Creation(op) => op.name(),
            Primitive::Unary(op) => op.name(),
            Primitive::Binary(op) => op.name(),
            Primitive::Ternary(op) => op.name(),
            Primitive::Reduce(op) => op.name(),
            Primitive::Shape(op) => op.name(),
            Primitive::Index(op) => op.name(),
            Primitive::Matmul(op) => op.name(),
            Primitive::Conv(op) => op.name(),
            Primitive::Sort(op) => op.name(),
            Primitive::Random(op) => op.name(),
            Primitive::Fft(op) => op.name(),
            Primitive::Linalg(op) => op.name(),
            Primitive::Quantized(op) => op.name(),
            Primitive::Fast(op) => op.name(),
            Primitive::Custom(op) => op.name(),
            Primitive::Fused(op) => op.name(),
            Primitive::Distributed(op) => op.name(),
        }
    }
}

/// Checks the number of inputs a primitive received.
pub(crate) fn expect_inputs(name: &str, inputs: &[Spec], n: usize) -> Result<()> {
    if inputs.len() != n {
        crate::bail!("[{name}] expected {n} inputs, got {}", inputs.len());
    }
    Ok(())
}

/// Checks that all inputs share one shape and one dtype (element-wise primitives: the op layer
/// broadcasts and promotes before building the node).
pub(crate) fn expect_same(name: &str, inputs: &[Spec]) -> Result<()> {
    if let Some((s0, d0)) = inputs.first() {
        for (s, d) in &inputs[1..] {
            if s != s0 || d != d0 {
                crate::bail!("[{name}] inputs must share shape and dtype, got {s0:?} {d0} and {s:?} {d}");
            }
        }
    }
    Ok(())
}
