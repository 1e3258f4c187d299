//! Collectives on host memory: the group's backend reads the input's bytes and writes a fresh
//! dense output (MPI; an NCCL group stages through its GPU).

use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::distributed::DistributedOp;

fn dense_bytes(d: &Data) -> Result<Data> {
    d.to_row_contiguous()
}

fn bytes_of(d: &Data) -> &[u8] {
    let start = d.offset as usize * d.dtype.size();
    &d.buffer.bytes()[start..start + d.size() * d.dtype.size()]
}

pub fn eval(op: &DistributedOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let comm = op.group().communicator();
    let (shape, dtype) = (specs[0].0.clone(), specs[0].1);
    let out_bytes = shape.iter().product::<usize>() * dtype.size();
    let mut out = Buffer::alloc(out_bytes)?;
    match op {
        DistributedOp::Recv { src, .. } => comm.recv(dtype, &mut out.bytes_mut()[..out_bytes], *src)?,
        DistributedOp::Send { dst, .. } => {
            let x = dense_bytes(&inputs[0])?;
            comm.send(dtype, bytes_of(&x), *dst)?;
            return Ok(vec![inputs[0].clone()]);
        }
        _ => {
            let x = dense_bytes(&inputs[0])?;
            let (src, dst) = (bytes_of(&x), &mut out.bytes_mut()[..out_bytes]);
            match op {
                DistributedOp::AllReduce { kind, .. } => comm.all_reduce(*kind, dtype, src, dst)?,
                DistributedOp::AllGather { .. } => comm.all_gather(dtype, src, dst)?,
                DistributedOp::ReduceScatter { .. } => comm.reduce_scatter(dtype, src, dst)?,
                DistributedOp::Send { .. } | DistributedOp::Recv { .. } => unreachable!("handled above"),
            }
        }
    }
    Ok(vec![Data::dense(out, shape, dtype)])
}
