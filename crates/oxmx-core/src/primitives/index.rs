//! The index family (filled in by its own change).

use crate::error::Result;
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum IndexOp {}

impl IndexOp {
    pub fn name(&self) -> String {
        match *self {}
    }

    pub fn output_specs(&self, _inputs: &[Spec]) -> Result<Vec<Spec>> {
        match *self {}
    }
}
