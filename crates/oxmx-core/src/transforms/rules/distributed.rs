//! Derivatives of the collectives. The model is tensor parallelism's: a reduced output is the
//! same on every rank, so its cotangent is too, and each rank's input gets it unchanged (an
//! all-sum's transpose is the identity per rank, as in MLX); a gather's transpose takes this
//! rank's block; a reduce-scatter's transpose gathers the blocks. Max and min send the
//! cotangent to the elements that won.

use crate::array::Array;
use crate::distributed as dist;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::distributed::{CollectiveReduce, DistributedOp};

pub(crate) fn vjp(op: &DistributedOp, inputs: &[Array], out: &Array, cot: &Array, argnums: &[usize]) -> Result<Vec<Array>> {
    if argnums.is_empty() {
        return Ok(vec![]);
    }
    let g = match op {
        DistributedOp::AllReduce { kind: CollectiveReduce::Sum, .. } | DistributedOp::Send { .. } => cot.clone(),
        DistributedOp::AllReduce { .. } => o::where_(&o::equal(&inputs[0], out), cot, &o::zeros_like(cot)),
        DistributedOp::AllGather { group } => {
            let x = &inputs[0];
            let k = if x.ndim() == 0 { 1 } else { x.shape()[0] };
            let start = (group.rank() * k) as isize;
            let mut lo = vec![0isize; cot.ndim()];
            let mut hi: Vec<isize> = cot.shape().iter().map(|&d| d as isize).collect();
            lo[0] = start;
            hi[0] = start + k as isize;
            o::reshape_to(&o::slice_range(cot, &lo, &hi), x.shape())
        }
        DistributedOp::ReduceScatter { group } => dist::all_gather(cot, Some(group)),
        DistributedOp::Recv { .. } => return Ok(vec![]),
    };
    Ok(argnums.iter().map(|_| g.clone()).collect())
}
