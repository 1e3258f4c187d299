//! The NCCL backend for GPUs, through cudarc (NCCL is loaded at run time like the rest of CUDA).
//! One communicator per process, on the process's default GPU; ranks meet through
//! `rendezvous.rs`. The collectives themselves run on the GPU's stream in
//! `backend/cuda/distributed.rs`; the host-buffer entry points here (used when a collective of
//! an NCCL group is evaluated on a CPU stream) stage through device memory.

use super::backend::Communicator;
use super::rendezvous;
use crate::device::Device;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::primitives::distributed::CollectiveReduce;
use cudarc::nccl::{result as nccl, sys};
use std::sync::Arc;

pub(crate) struct NcclComm {
    raw: sys::ncclComm_t,
    rank: usize,
    size: usize,
    ordinal: usize,
}

// An NCCL communicator may be used from any thread; oxmx orders its uses on the device stream.
unsafe impl Send for NcclComm {}
unsafe impl Sync for NcclComm {}

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY: the communicator is ours; nothing uses it once the last group handle is gone.
        unsafe {
            let _ = nccl::comm_destroy(self.raw);
        }
    }
}

pub(crate) fn nccl_err(what: &str, e: nccl::NcclError) -> Error {
    Error::runtime(format!("[distributed] NCCL {what} failed: {:?}", e.0))
}

/// Whether NCCL's library loads and a GPU exists.
pub(crate) fn available() -> bool {
    // SAFETY: only tries to open the library.
    crate::device::gpu_available() && unsafe { sys::is_culib_present() }
}

impl NcclComm {
    /// The world communicator: rank and size from the launcher's environment (a process started
    /// alone is rank 0 of 1), on the default device, which must be a GPU.
    pub(crate) fn world() -> Result<Arc<dyn Communicator>> {
        if !available() {
            return Err(Error::runtime(
                "[distributed] the NCCL backend needs a CUDA GPU and NCCL's library (libnccl.so.2); neither a GPU nor the library was found",
            ));
        }
        let Device::Gpu(ordinal) = crate::default_device() else {
            return Err(Error::runtime("[distributed] the NCCL backend runs on GPUs, but the default device is the CPU"));
        };
        let (rank, size) = rendezvous::rank_and_size().unwrap_or((0, 1));
        let id = if rank == 0 { Some(nccl::get_uniqueid().map_err(|e| nccl_err("ncclGetUniqueId", e))?) } else { None };
        let id_bytes: Option<Vec<u8>> = id.map(|id| id.internal.iter().map(|&c| c as u8).collect());
        let shared = if size > 1 {
            let address = rendezvous::coordinator().ok_or_else(|| {
                Error::runtime("[distributed] OXMX_COORDINATOR (host:port of rank 0) is not set: start the ranks with `oxmx launch`")
            })?;
            rendezvous::share(id_bytes.as_deref(), 128, rank, size, &address)?
        } else {
            id_bytes.unwrap_or_else(|| vec![0; 128])
        };
        let mut internal = [0 as std::ffi::c_char; 128];
        for (d, s) in internal.iter_mut().zip(&shared) {
            *d = *s as std::ffi::c_char;
        }
        let id = sys::ncclUniqueId { internal };
        crate::backend::cuda::bind_device(ordinal)?;
        let mut raw: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the device's context is current on this thread.
        unsafe { nccl::comm_init_rank(&mut raw, size as i32, id, rank as i32) }.map_err(|e| nccl_err("ncclCommInitRank", e))?;
        Ok(Arc::new(NcclComm { raw, rank, size, ordinal }))
    }

    pub(crate) fn raw(&self) -> sys::ncclComm_t {
        self.raw
    }
    pub(crate) fn ordinal(&self) -> usize {
        self.ordinal
    }
}

impl Communicator for NcclComm {
    fn backend(&self) -> &'static str {
        "nccl"
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn split(&self, color: i32, key: i32) -> Result<Arc<dyn Communicator>> {
        crate::backend::cuda::bind_device(self.ordinal)?;
        let mut raw: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: a live communicator; a null config inherits the parent's.
        let r = unsafe { sys::ncclCommSplit(self.raw, color, key, &mut raw, std::ptr::null_mut()) };
        r.result().map_err(|e| nccl_err("ncclCommSplit", e))?;
        let rank = unsafe { nccl::comm_user_rank(raw) }.map_err(|e| nccl_err("ncclCommUserRank", e))? as usize;
        let size = unsafe { nccl::comm_count(raw) }.map_err(|e| nccl_err("ncclCommCount", e))? as usize;
        Ok(Arc::new(NcclComm { raw, rank, size, ordinal: self.ordinal }))
    }
    fn all_reduce(&self, kind: CollectiveReduce, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        crate::backend::cuda::nccl_host(self, HostCall::AllReduce(kind), dtype, input, output)
    }
    fn all_gather(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        crate::backend::cuda::nccl_host(self, HostCall::AllGather, dtype, input, output)
    }
    fn reduce_scatter(&self, dtype: Dtype, input: &[u8], output: &mut [u8]) -> Result<()> {
        crate::backend::cuda::nccl_host(self, HostCall::ReduceScatter, dtype, input, output)
    }
    fn send(&self, dtype: Dtype, input: &[u8], dst: usize) -> Result<()> {
        crate::backend::cuda::nccl_host(self, HostCall::Send(dst), dtype, input, &mut [])
    }
    fn recv(&self, dtype: Dtype, output: &mut [u8], src: usize) -> Result<()> {
        crate::backend::cuda::nccl_host(self, HostCall::Recv(src), dtype, &[], output)
    }
    fn nccl(&self) -> Option<&NcclComm> {
        Some(self)
    }
}

/// A collective on host buffers, staged through the GPU.
#[derive(Clone, Copy, Debug)]
pub(crate) enum HostCall {
    AllReduce(CollectiveReduce),
    AllGather,
    ReduceScatter,
    Send(usize),
    Recv(usize),
}
