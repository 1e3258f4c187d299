//! The random family: counter-based threefry2x32 bits from a `uint32[2]` key.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum RandomOp {
    /// `shape` uint32 words of threefry2x32 output for the key input (`uint32[2]`).
    Bits { shape: Vec<usize> },
}

impl RandomOp {
    pub fn name(&self) -> String {
        match self {
            RandomOp::Bits { .. } => "RandomBits".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (kshape, kdt) = &inputs[0];
        if kshape.as_slice() != [2] || *kdt != Dtype::Uint32 {
            return Err(Error::invalid(format!("[random] key must be a uint32 array of shape [2], got {kshape:?} {kdt}")));
        }
        match self {
            RandomOp::Bits { shape } => Ok(vec![(shape.clone(), Dtype::Uint32)]),
        }
    }
}
