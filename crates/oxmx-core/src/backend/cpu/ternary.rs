//! `where` on the CPU.

use super::elementwise::map_ternary;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::TernaryOp;

pub fn eval(op: &TernaryOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    match op {
        TernaryOp::Select => {
            let (c, x, y) = (&inputs[0], &inputs[1], &inputs[2]);
            crate::dispatch!(x.dtype, T => Ok(vec![map_ternary::<bool, T, T, T>(c, x, y, |c, x, y| if c { x } else { y })?]))
        }
    }
}
