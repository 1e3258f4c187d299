//! What a communication backend provides: collectives over host byte buffers (and, for GPU
//! backends, over device memory: see `backend/cuda/distributed.rs`).

use crate::dtype::Dtype;
use crate::error::Result;
use crate::primitives::distributed::CollectiveReduce;
use std::sync::Arc;

/// One communicator: a set of ranks that run collectives together. Every call blocks until
/// this rank's part is done; all ranks must make the same calls in the same order.
pub(crate) trait Communicator: Send + Sync {
    fn backend(&self) -> &'static str;
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// A new communicator of the ranks that pass the same `color`, ordered by `key` (then by
    /// rank). Collective over this communicator.
    fn split(&self, color: i32, key: i32) -> Result<Arc<dyn Communicator>>;
    /// `output` (same length as `input`) becomes the element-wise reduction over ranks.
    fn all_reduce(&self, kind: CollectiveReduce, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()>;
    /// `output` (`size` × `input`) becomes every rank's input in rank order.
    fn all_gather(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()>;
    /// `output` (`input` / `size`) becomes this rank's block of the sum over ranks.
    fn reduce_scatter(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()>;
    fn send(&self, dtype: Dtype, input: &[u8], dst: usize) -> Result<()>;
    fn recv(&self, dtype: Dtype, output: &mut [u8], src: usize) -> Result<()>;
    /// The NCCL communicator behind this one, for collectives on device memory.
    fn nccl(&self) -> Option<&super::nccl::NcclComm> {
        None
    }
}

/// A group of one process (what `init` gives without a launcher, as MLX does): reductions and
/// gathers return their input, point-to-point calls have nobody to talk to.
pub(crate) struct Singleton;

impl Communicator for Singleton {
    fn backend(&self) -> &'static str {
        "singleton"
    }
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn split(&self, _color: i32, _key: i32) -> Result<Arc<dyn Communicator>> {
        Ok(Arc::new(Singleton))
    }
    fn all_reduce(&self, _: CollectiveReduce, _: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn all_gather(&self, _: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn reduce_scatter(&self, _: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn send(&self, _: Dtype, _: &[u8], dst: usize) -> Result<()> {
        Err(crate::error::Error::invalid(format!("[send] rank {dst} does not exist: the group has one rank (this process)")))
    }
    fn recv(&self, _: Dtype, _: &mut [u8], src: usize) -> Result<()> {
        Err(crate::error::Error::invalid(format!("[recv] rank {src} does not exist: the group has one rank (this process)")))
    }
}
