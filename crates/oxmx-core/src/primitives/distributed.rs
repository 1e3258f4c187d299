//! Collective communication as graph nodes: `all_sum`/`all_max`/`all_min`, `all_gather`,
//! `reduce_scatter` (sum), `send`, `recv`. Like every primitive they are lazy: nothing is
//! exchanged until the result is evaluated, and a stream runs its ops in one topological order,
//! so ranks that build the same graph issue their collectives in the same order.

use crate::distributed::Group;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

/// The reduction of an all-reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CollectiveReduce {
    Sum,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DistributedOp {
    AllReduce {
        kind: CollectiveReduce,
        group: Group,
    },
    /// Concatenates every rank's input along axis 0 (rank order).
    AllGather {
        group: Group,
    },
    /// Sums over ranks, then keeps this rank's slice of axis 0 (which must divide by the size).
    ReduceScatter {
        group: Group,
    },
    /// Sends the input to `dst`; the output is the input (evaluating it performs the send).
    Send {
        dst: usize,
        group: Group,
    },
    /// Receives an array of this shape and dtype from `src` (no inputs).
    Recv {
        src: usize,
        shape: Vec<usize>,
        dtype: Dtype,
        group: Group,
    },
}

impl DistributedOp {
    pub fn group(&self) -> &Group {
        match self {
            DistributedOp::AllReduce { group, .. }
            | DistributedOp::AllGather { group }
            | DistributedOp::ReduceScatter { group }
            | DistributedOp::Send { group, .. }
            | DistributedOp::Recv { group, .. } => group,
        }
    }

    pub fn name(&self) -> String {
        match self {
            DistributedOp::AllReduce { kind: CollectiveReduce::Sum, .. } => "AllSum".into(),
            DistributedOp::AllReduce { kind: CollectiveReduce::Max, .. } => "AllMax".into(),
            DistributedOp::AllReduce { kind: CollectiveReduce::Min, .. } => "AllMin".into(),
            DistributedOp::AllGather { .. } => "AllGather".into(),
            DistributedOp::ReduceScatter { .. } => "ReduceScatter".into(),
            DistributedOp::Send { dst, .. } => format!("Send[{dst}]"),
            DistributedOp::Recv { src, .. } => format!("Recv[{src}]"),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        if let DistributedOp::Recv { shape, dtype, .. } = self {
            crate::primitives::expect_inputs(&self.name(), inputs, 0)?;
            return Ok(vec![(shape.clone(), *dtype)]);
        }
        crate::primitives::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, dtype) = &inputs[0];
        let n = self.group().size();
        match self {
            DistributedOp::AllReduce { .. } | DistributedOp::Send { .. } => Ok(vec![(shape.clone(), *dtype)]),
            DistributedOp::AllGather { .. } => {
                let mut out = if shape.is_empty() { vec![1] } else { shape.clone() };
                out[0] *= n;
                Ok(vec![(out, *dtype)])
            }
            DistributedOp::ReduceScatter { .. } => {
                if shape.is_empty() || shape[0] % n != 0 {
                    return Err(Error::invalid(format!(
                        "[reduce_scatter] the first axis of an input of shape {shape:?} must divide by the group size {n}"
                    )));
                }
                let mut out = shape.clone();
                out[0] /= n;
                Ok(vec![(out, *dtype)])
            }
            DistributedOp::Recv { .. } => unreachable!("handled above"),
        }
    }
}
