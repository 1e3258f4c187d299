//! Collectives of an NCCL group on device memory, queued on the GPU's stream. NCCL calls go
//! outside CUDA graph capture (`graph::launch_direct`): the cached executables are updated
//! with new kernel arguments each step, which NCCL's own kernels do not allow for.

use super::device::{gpu, Gpu};
use super::elementwise::contiguous;
use super::fast::{dptr, output};
use super::graph;
use crate::distributed::NcclComm;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::distributed::{CollectiveReduce, DistributedOp};
use cudarc::nccl::{result as nccl, sys};
use std::ffi::c_void;

/// Makes GPU `ordinal`'s context current on this thread.
pub(crate) fn bind_device(ordinal: usize) -> Result<()> {
    gpu(ordinal).map(|_| ())
}

/// The NCCL type, reduction and element count for a reduction over `n` elements of `dtype`.
/// Booleans reduce as bytes (sum and max: or; min: and); complex sums as pairs of floats.
fn reduction(dtype: Dtype, kind: CollectiveReduce, n: usize, what: &str) -> Result<(sys::ncclDataType_t, sys::ncclRedOp_t, usize)> {
    use sys::ncclDataType_t as T;
    use sys::ncclRedOp_t as O;
    let op = match kind {
        CollectiveReduce::Sum => O::ncclSum,
        CollectiveReduce::Max => O::ncclMax,
        CollectiveReduce::Min => O::ncclMin,
    };
    let t = match dtype {
        Dtype::Bool => return Ok((T::ncclUint8, if kind == CollectiveReduce::Min { O::ncclMin } else { O::ncclMax }, n)),
        Dtype::Complex64 if kind == CollectiveReduce::Sum => return Ok((T::ncclFloat32, op, 2 * n)),
        Dtype::Uint8 => T::ncclUint8,
        Dtype::Int8 => T::ncclInt8,
        Dtype::Uint32 => T::ncclUint32,
        Dtype::Int32 => T::ncclInt32,
        Dtype::Uint64 => T::ncclUint64,
        Dtype::Int64 => T::ncclInt64,
        Dtype::Float16 => T::ncclFloat16,
        Dtype::Bfloat16 => T::ncclBfloat16,
        Dtype::Float32 => T::ncclFloat32,
        Dtype::Float64 => T::ncclFloat64,
        Dtype::Int16 | Dtype::Uint16 | Dtype::Complex64 => {
            return Err(Error::invalid(format!("[{what}] NCCL cannot reduce {dtype}; cast the array (e.g. to int32 or float32) first")))
        }
    };
    Ok((t, op, n))
}

fn check(what: &str, r: std::result::Result<nccl::NcclStatus, nccl::NcclError>) -> Result<()> {
    r.map(|_| ()).map_err(|e| crate::distributed::nccl_err(what, e))
}

/// Queues the collective `call` from `src` into `dst` (device addresses, `bytes` of the input
/// and output as the collective defines them).
#[allow(clippy::too_many_arguments)]
fn queue(g: &Gpu, comm: &NcclComm, call: HostOrNode, dtype: Dtype, src: u64, dst: u64, in_bytes: usize, out_bytes: usize) -> Result<()> {
    let stream = g.cu_stream() as sys::cudaStream_t;
    let (s, d) = (src as *const c_void, dst as *mut c_void);
    let c = comm.raw();
    let size = dtype.size();
    graph::launch_direct(g, "~nccl", || {
        // SAFETY: `src`/`dst` are live device blocks of the sizes given; the stream is the
        // device's, whose context is current.
        unsafe {
            match call {
                HostOrNode::AllReduce(kind) => {
                    let (t, op, n) = reduction(dtype, kind, in_bytes / size, "all_reduce")?;
                    check("ncclAllReduce", nccl::all_reduce(s, d, n, t, op, c, stream))
                }
                HostOrNode::ReduceScatter => {
                    let (t, op, n) = reduction(dtype, CollectiveReduce::Sum, out_bytes / size, "reduce_scatter")?;
                    check("ncclReduceScatter", nccl::reduce_scatter(s, d, n, t, op, c, stream))
                }
                HostOrNode::AllGather => {
                    check("ncclAllGather", nccl::all_gather(s, d, in_bytes, sys::ncclDataType_t::ncclUint8, c, stream))
                }
                HostOrNode::Send(peer) => {
                    check("ncclSend", nccl::send(s, in_bytes, sys::ncclDataType_t::ncclUint8, peer as i32, c, stream))
                }
                HostOrNode::Recv(peer) => {
                    check("ncclRecv", nccl::recv(d, out_bytes, sys::ncclDataType_t::ncclUint8, peer as i32, c, stream))
                }
            }
        }
    })
}

pub(crate) use crate::distributed::HostCall as HostOrNode;

/// Runs `op` on the GPU when its group is an NCCL group (`None`: another backend, which runs on
/// host copies).
pub(crate) fn eval(g: &Gpu, op: &DistributedOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let Some(comm) = op.group().communicator().nccl() else { return Ok(None) };
    if comm.ordinal() != g.ordinal {
        return Err(Error::runtime(format!(
            "[{}] the group's NCCL communicator is on gpu {}, the op runs on gpu {}",
            op.name(),
            comm.ordinal(),
            g.ordinal
        )));
    }
    let (shape, dtype) = (&specs[0].0, specs[0].1);
    let call = match op {
        DistributedOp::AllReduce { kind, .. } => HostOrNode::AllReduce(*kind),
        DistributedOp::AllGather { .. } => HostOrNode::AllGather,
        DistributedOp::ReduceScatter { .. } => HostOrNode::ReduceScatter,
        DistributedOp::Send { dst, .. } => HostOrNode::Send(*dst),
        DistributedOp::Recv { src, .. } => HostOrNode::Recv(*src),
    };
    let out_bytes = shape.iter().product::<usize>() * dtype.size();
    if let DistributedOp::Recv { .. } = op {
        let (out, optr) = output(g, shape, dtype)?;
        if out_bytes > 0 {
            queue(g, comm, call, dtype, 0, optr, 0, out_bytes)?;
        }
        return Ok(Some(vec![out]));
    }
    let Some(x) = contiguous(g, &inputs[0])? else { return Ok(None) };
    let in_bytes = x.size() * dtype.size();
    if let DistributedOp::Send { .. } = op {
        if in_bytes > 0 {
            queue(g, comm, call, dtype, dptr(g, &x)?, 0, in_bytes, 0)?;
        }
        return Ok(Some(vec![x]));
    }
    let (out, optr) = output(g, shape, dtype)?;
    if out_bytes > 0 {
        queue(g, comm, call, dtype, dptr(g, &x)?, optr, in_bytes, out_bytes)?;
    }
    Ok(Some(vec![out]))
}

/// A collective of an NCCL group on host buffers: copied to the group's GPU, run, copied back.
pub(crate) fn nccl_host(comm: &NcclComm, call: HostOrNode, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
    let g = gpu(comm.ordinal())?;
    let src = super::memory::upload(g.ordinal, input)?;
    let dst = super::memory::alloc(g.ordinal, output.len())?;
    if !input.is_empty() || !output.is_empty() {
        queue(g, comm, call, dtype, src.ptr(), dst.ptr(), input.len(), output.len())?;
    }
    if !output.is_empty() {
        let buf = Buffer::on_device(dst, output.len());
        let block = buf.device_block(g.ordinal)?;
        super::memory::download(block, output)?;
    } else {
        g.synchronize()?;
    }
    Ok(())
}
