//! Creation kernels.

use crate::dtype::Element;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::CreationOp;

pub fn eval(op: &CreationOp, _inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    match *op {
        CreationOp::Arange { start, step, len, dtype } => crate::dispatch!(dtype, T => {
            Ok(vec![Data::build::<T>(vec![len], |out| {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = T::from_f64(start + i as f64 * step);
                }
            })?])
        }),
    }
}
