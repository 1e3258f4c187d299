//! Distributed communication (MLX's `mx.distributed`): `init` gives a [`Group`] of ranks, and the
//! collectives below are lazy ops on arrays (graph nodes like any other: see
//! `primitives/distributed.rs`), differentiable and batchable.
//!
//! Backends: **MPI** for CPUs (Open MPI, loaded at run time: `mpi.rs`), **NCCL** for GPUs
//! (through cudarc, loaded at run time: `nccl.rs`). `oxmx launch` starts the ranks; a process
//! started without a launcher gets a group of one (as in MLX), in which every collective returns
//! its input.

mod backend;
mod mpi;
mod nccl;
mod rendezvous;

pub(crate) use backend::Communicator;
pub(crate) use nccl::{nccl_err, HostCall, NcclComm};

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::primitives::distributed::{CollectiveReduce, DistributedOp};
use crate::primitives::Primitive;
use std::sync::{Arc, Mutex};

/// A set of ranks that communicate: the world from [`init`], or a part of it from
/// [`Group::split`]. Cheap to clone; equal when it is the same communicator.
#[derive(Clone)]
pub struct Group {
    comm: Arc<dyn Communicator>,
}

impl PartialEq for Group {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.comm, &other.comm)
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group(backend={}, rank={}, size={})", self.backend(), self.rank(), self.size())
    }
}

impl Group {
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn size(&self) -> usize {
        self.comm.size()
    }
    /// `"mpi"`, `"nccl"` or `"singleton"`.
    pub fn backend(&self) -> &'static str {
        self.comm.backend()
    }
    /// The ranks that pass the same `color` form a new group, ordered by `key` (`None`: by
    /// rank). Every rank of this group must call it.
    pub fn split(&self, color: i32, key: Option<i32>) -> Result<Group> {
        if color < 0 {
            return Err(Error::invalid(format!("[Group.split] color must be non-negative, got {color}")));
        }
        let key = key.unwrap_or(self.rank() as i32);
        Ok(Group { comm: self.comm.split(color, key)? })
    }
    pub(crate) fn communicator(&self) -> &dyn Communicator {
        &*self.comm
    }
}

/// The backends `init` knows.
pub const BACKENDS: &[&str] = &["any", "mpi", "nccl"];

/// Whether `backend` (`"any"`, `"mpi"`, `"nccl"`) can be used in this process: its library
/// loads (and, for NCCL, a GPU exists).
pub fn is_available(backend: &str) -> bool {
    match backend {
        "mpi" => mpi::library_present(),
        "nccl" => nccl::available(),
        "any" => mpi::library_present() || nccl::available(),
        _ => false,
    }
}

struct World {
    /// Groups already made, by backend name asked for.
    groups: Vec<(String, Group)>,
    /// The group collectives use when none is given: the first one `init` returned.
    default: Option<Group>,
}

fn world() -> &'static Mutex<World> {
    static W: Mutex<World> = Mutex::new(World { groups: Vec::new(), default: None });
    &W
}

/// Starts (once) and returns the world group of `backend` (`"any"` picks: the one named by
/// `OXMX_DISTRIBUTED_BACKEND`, else NCCL when the default device is a GPU and a launcher set
/// the rank, else MPI when mpirun started this process). Without a launcher, a non-strict
/// `init` returns a group of size 1; a strict one is an error, as is a backend that cannot load.
pub fn init(strict: bool, backend: &str) -> Result<Group> {
    if !BACKENDS.contains(&backend) {
        return Err(Error::invalid(format!("[distributed.init] unknown backend {backend:?}; expected one of {BACKENDS:?}")));
    }
    let mut w = world().lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, g)) = w.groups.iter().find(|(b, _)| b == backend) {
        // A group of one stands in for a missing backend; strict callers still hear about it.
        if !(strict && g.backend() == "singleton") {
            return Ok(g.clone());
        }
    }
    let chosen = match backend {
        "any" => choose_backend(),
        b => Some(b.to_string()),
    };
    let comm: Result<Arc<dyn Communicator>> = match chosen.as_deref() {
        Some("mpi") => mpi::MpiComm::world(),
        Some("nccl") => nccl::NcclComm::world(),
        Some(other) => Err(Error::invalid(format!(
            "[distributed.init] OXMX_DISTRIBUTED_BACKEND={other:?} is not a backend; expected \"mpi\" or \"nccl\""
        ))),
        None if strict => Err(Error::runtime(
            "[distributed.init] no distributed backend was started for this process: launch it with `oxmx launch -n N -- program` (or mpirun), or call init with strict=false for a group of one",
        )),
        None => Ok(Arc::new(backend::Singleton)),
    };
    let group = Group { comm: comm? };
    w.groups.retain(|(b, _)| b != backend);
    w.groups.push((backend.to_string(), group.clone()));
    if w.default.is_none() {
        w.default = Some(group.clone());
    }
    Ok(group)
}

fn choose_backend() -> Option<String> {
    if let Ok(b) = std::env::var("OXMX_DISTRIBUTED_BACKEND") {
        if !b.is_empty() && b != "any" {
            return Some(b);
        }
    }
    if crate::default_device().is_gpu() && rendezvous::launched() && nccl::available() {
        return Some("nccl".into());
    }
    if mpi::launched_by_mpi() {
        return Some("mpi".into());
    }
    None
}

/// The group used when an op is given none: the world from the first `init` (started now, not
/// strict, if nothing called `init`).
pub fn default_group() -> Result<Group> {
    if let Some(g) = world().lock().unwrap_or_else(|p| p.into_inner()).default.clone() {
        return Ok(g);
    }
    init(false, "any")
}

fn group_or_default(group: Option<&Group>) -> Result<Group> {
    match group {
        Some(g) => Ok(g.clone()),
        None => default_group(),
    }
}

fn collective(x: &Array, group: Option<&Group>, make: impl FnOnce(Group) -> DistributedOp) -> Array {
    Array::build(|| {
        let g = group_or_default(group)?;
        Ok(Array::from_op(Primitive::Distributed(make(g)), vec![x.clone()]))
    })
}

fn all_reduce(x: &Array, kind: CollectiveReduce, group: Option<&Group>) -> Array {
    Array::build(|| {
        let g = group_or_default(group)?;
        if g.size() == 1 {
            return Ok(x.clone());
        }
        Ok(collective(x, Some(&g), |group| DistributedOp::AllReduce { kind, group }))
    })
}

/// The element-wise sum of `x` over the ranks of `group` (default: the world).
#[track_caller]
pub fn all_sum(x: &Array, group: Option<&Group>) -> Array {
    all_reduce(x, CollectiveReduce::Sum, group)
}

/// The element-wise maximum of `x` over the ranks.
#[track_caller]
pub fn all_max(x: &Array, group: Option<&Group>) -> Array {
    all_reduce(x, CollectiveReduce::Max, group)
}

/// The element-wise minimum of `x` over the ranks.
#[track_caller]
pub fn all_min(x: &Array, group: Option<&Group>) -> Array {
    all_reduce(x, CollectiveReduce::Min, group)
}

/// Every rank's `x` concatenated along axis 0, in rank order (a scalar counts as shape `[1]`).
#[track_caller]
pub fn all_gather(x: &Array, group: Option<&Group>) -> Array {
    Array::build(|| {
        let g = group_or_default(group)?;
        if g.size() == 1 {
            return Ok(if x.ndim() == 0 { crate::ops::reshape(x, &[1]) } else { x.clone() });
        }
        Ok(collective(x, Some(&g), |group| DistributedOp::AllGather { group }))
    })
}

/// The sum over ranks, split along axis 0 into one block per rank: rank `r` gets block `r`.
/// Axis 0 must divide by the group size.
#[track_caller]
pub fn reduce_scatter(x: &Array, group: Option<&Group>) -> Array {
    collective(x, group, |group| DistributedOp::ReduceScatter { group })
}

/// MLX's name for [`reduce_scatter`].
#[track_caller]
pub fn sum_scatter(x: &Array, group: Option<&Group>) -> Array {
    reduce_scatter(x, group)
}

fn check_peer(op: &str, peer: usize, g: &Group) -> Result<()> {
    if peer >= g.size() {
        return Err(Error::invalid(format!("[{op}] rank {peer} is out of range for a group of size {}", g.size())));
    }
    if peer == g.rank() {
        return Err(Error::invalid(format!("[{op}] rank {peer} is this process: a rank cannot {op} to itself")));
    }
    Ok(())
}

/// Sends `x` to rank `dst`. Returns `x`; evaluating the result performs the send.
#[track_caller]
pub fn send(x: &Array, dst: usize, group: Option<&Group>) -> Array {
    Array::build(|| {
        let g = group_or_default(group)?;
        check_peer("send", dst, &g)?;
        Ok(collective(x, Some(&g), |group| DistributedOp::Send { dst, group }))
    })
}

/// An array of `shape` and `dtype` received from rank `src`.
#[track_caller]
pub fn recv(shape: &[usize], dtype: Dtype, src: usize, group: Option<&Group>) -> Array {
    Array::build(|| {
        let g = group_or_default(group)?;
        check_peer("recv", src, &g)?;
        Ok(Array::from_op(Primitive::Distributed(DistributedOp::Recv { src, shape: shape.to_vec(), dtype, group: g }), vec![]))
    })
}

/// [`recv`] with the shape and dtype of `x`.
#[track_caller]
pub fn recv_like(x: &Array, src: usize, group: Option<&Group>) -> Array {
    recv(x.shape(), x.dtype(), src, group)
}
