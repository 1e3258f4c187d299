//! The sort family: sort / argsort (stable) and partition / argpartition along one axis.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum SortOp {
    /// Sorted values along `axis` (NaNs last).
    Sort { axis: usize },
    /// Indices (uint32) that sort along `axis`; stable.
    ArgSort { axis: usize },
    /// Values rearranged so that position `kth` holds its sorted value, smaller-or-equal values
    /// before it and greater-or-equal after it.
    Partition { axis: usize, kth: usize },
    /// Indices (uint32) of the partition.
    ArgPartition { axis: usize, kth: usize },
}

impl SortOp {
    pub fn name(&self) -> String {
        match self {
            SortOp::Sort { .. } => "Sort".into(),
            SortOp::ArgSort { .. } => "ArgSort".into(),
            SortOp::Partition { .. } => "Partition".into(),
            SortOp::ArgPartition { .. } => "ArgPartition".into(),
        }
    }

    pub fn axis(&self) -> usize {
        match *self {
            SortOp::Sort { axis } | SortOp::ArgSort { axis } | SortOp::Partition { axis, .. } | SortOp::ArgPartition { axis, .. } => axis,
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, dt) = &inputs[0];
        let axis = self.axis();
        if axis >= shape.len() {
            return Err(Error::index(format!("[{}] axis {axis} out of range for shape {shape:?}", self.name())));
        }
        if let SortOp::Partition { kth, .. } | SortOp::ArgPartition { kth, .. } = *self {
            if kth >= shape[axis] && shape[axis] > 0 {
                return Err(Error::invalid(format!("[{}] kth {kth} out of range for axis of size {}", self.name(), shape[axis])));
            }
        }
        let out_dt = match self {
            SortOp::Sort { .. } | SortOp::Partition { .. } => *dt,
            SortOp::ArgSort { .. } | SortOp::ArgPartition { .. } => Dtype::Uint32,
        };
        Ok(vec![(shape.clone(), out_dt)])
    }
}
