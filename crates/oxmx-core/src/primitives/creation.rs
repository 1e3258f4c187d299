//! Ops that make arrays from nothing but parameters.

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum CreationOp {
    /// `start + i * step` for `i in 0..len`.
    Arange { start: f64, step: f64, len: usize, dtype: Dtype },
}

impl CreationOp {
    pub fn name(&self) -> String {
        match self {
            CreationOp::Arange { .. } => "Arange".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 0)?;
        match *self {
            CreationOp::Arange { len, dtype, .. } => Ok(vec![(vec![len], dtype)]),
        }
    }
}
