//! Kernel launches recorded and replayed as graphs built node by node, instead of captured.
//!
//! A batching task's kernels (graph.rs) used to be captured from the stream and the capture
//! turned into an executable graph: every launch still went through the driver (~0.7 µs into a
//! capture) and every graph launch was preceded by `cuGraphExecUpdate` over all its nodes (~0.5
//! µs a node; thirty-first session, H100: 137 µs for a 256-node chunk, two chunks a decoding
//! step). Here a kernel launch is only written down (function, grid, block, shared memory and
//! the bytes of its parameters, laid out by `cuFuncGetParamInfo`). At the flush the sequence is
//! looked up by the hash of its functions: a sequence seen before replays its executable, after
//! `cuGraphExecKernelNodeSetParams` on just the nodes whose launch differs from last time (a
//! decoding step's new position, a buffer the allocator handed out elsewhere); a new one is built
//! as a chain of kernel nodes, joined by programmatic edges where kernels launch with
//! programmatic dependent launch (what a capture of such launches makes), and instantiated.
//!
//! Only plain kernels are recorded; anything else on the stream (cuBLAS, copies, NCCL) makes
//! graph.rs launch what is recorded first, so the order on the stream is unchanged.
//! `OXMX_GRAPH_REPLAY=0` goes back to capturing.

use super::device::cuda_err;
use crate::error::Result;
use cudarc::driver::sys;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

/// Whether kernel launches are recorded rather than captured (`OXMX_GRAPH_REPLAY=0`: captured).
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_GRAPH_REPLAY").map_or(true, |v| v != "0"))
}

/// One recorded launch. `args` is the kernel's parameter buffer image (each parameter at its
/// offset in `layout`), so two launches compare as bytes.
#[derive(Clone)]
pub(crate) struct Launch {
    func: usize,
    grid: (u32, u32),
    block: u32,
    shared: u32,
    args: Vec<u8>,
    layout: Layout,
}

impl PartialEq for Launch {
    /// The layout follows from the function.
    fn eq(&self, o: &Launch) -> bool {
        self.func == o.func && self.grid == o.grid && self.block == o.block && self.shared == o.shared && self.args == o.args
    }
}

/// Parameter offsets and sizes of a kernel.
type Layout = Arc<[(usize, usize)]>;

/// What replay keeps across flushes: parameter layouts per function and executables per
/// sequence.
#[derive(Default)]
pub(crate) struct Replays {
    layouts: HashMap<usize, Layout>,
    execs: HashMap<u64, Replay>,
    /// The launches recorded since the last flush and the hash of their functions.
    pub(crate) pending: Vec<Launch>,
    hash: u64,
}

/// An executable built from a sequence, its graph's nodes (what `SetParams` names) and the
/// launches it holds now.
struct Replay {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    nodes: Vec<sys::CUgraphNode>,
    launches: Vec<Launch>,
}
// Used only under the device's capture lock.
unsafe impl Send for Replay {}

impl Drop for Replay {
    fn drop(&mut self) {
        // SAFETY: handles this module created; the stream orders launches already queued.
        unsafe {
            let _ = sys::cuGraphExecDestroy(self.exec);
            let _ = sys::cuGraphDestroy(self.graph);
        }
    }
}

/// Executables kept (a decoding step needs a handful; prefill chunks add a few more).
const MAX_EXECS: usize = 64;

fn check(r: sys::CUresult, what: &str) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cuda_err(what, r))
    }
}

impl Replays {
    /// Records a launch of `f`; `params` point at its parameters' values.
    pub(crate) fn record(&mut self, f: sys::CUfunction, grid: (u32, u32), block: u32, shared: u32, params: &[*mut c_void]) -> Result<()> {
        let layout = self.layout(f)?;
        if layout.len() != params.len() {
            return Err(crate::error::Error::runtime(format!(
                "internal: a kernel launch passed {} parameters for {} in its signature",
                params.len(),
                layout.len()
            )));
        }
        let total = layout.last().map_or(0, |&(o, s)| o + s);
        let mut args = vec![0u8; total];
        for (&(off, size), &p) in layout.iter().zip(params) {
            // SAFETY: the caller's pointer is to a live value of the parameter's size (the same
            // contract as cuLaunchKernel's kernelParams).
            args[off..off + size].copy_from_slice(unsafe { std::slice::from_raw_parts(p as *const u8, size) });
        }
        if self.pending.is_empty() {
            self.hash = 0xcbf29ce484222325;
        }
        self.hash = super::compiler::fnv_step(self.hash, f as u64);
        self.pending.push(Launch { func: f as usize, grid, block, shared, args, layout });
        Ok(())
    }

    fn layout(&mut self, f: sys::CUfunction) -> Result<Layout> {
        if let Some(l) = self.layouts.get(&(f as usize)) {
            return Ok(l.clone());
        }
        let mut v = Vec::new();
        loop {
            let (mut off, mut size) = (0usize, 0usize);
            // SAFETY: a live function; an index past the last parameter returns an error.
            let r = unsafe { sys::cuFuncGetParamInfo(f, v.len(), &mut off, &mut size) };
            if r != sys::CUresult::CUDA_SUCCESS {
                break;
            }
            v.push((off, size));
        }
        let l: Layout = v.into();
        self.layouts.insert(f as usize, l.clone());
        Ok(l)
    }

    /// Launches the recorded kernels on `stream` as one graph. `pdl`: the kernels were meant to
    /// launch with programmatic stream serialization (edges become programmatic).
    pub(crate) fn flush(&mut self, stream: sys::CUstream, pdl: bool) -> Result<()> {
        let mut launches = std::mem::take(&mut self.pending);
        if launches.is_empty() {
            return Ok(());
        }
        let key = self.hash ^ (launches.len() as u64).rotate_left(32);
        let reused = match self.execs.get_mut(&key) {
            Some(r) if same_functions(&r.launches, &launches) => super::timed("~replay set params", || r.update(&mut launches)).is_ok(),
            _ => false,
        };
        if !reused {
            let r = super::timed("~replay build", || Replay::build(&launches, pdl))?;
            if self.execs.len() >= MAX_EXECS {
                self.execs.clear();
            }
            self.execs.insert(key, r);
        }
        let exec = self.execs.get(&key).expect("exec was just cached").exec;
        // SAFETY: an instantiated graph of this context on its stream.
        check(super::timed("~graph launch", || unsafe { sys::cuGraphLaunch(exec, stream) }), "launching a CUDA graph")
    }

    /// Drops every executable (after a failure).
    pub(crate) fn clear(&mut self) {
        self.execs.clear();
        self.pending.clear();
    }
}

fn same_functions(a: &[Launch], b: &[Launch]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.func == y.func)
}

/// The driver's description of `l`; `ptrs` (from `param_ptrs`) must outlive its use.
fn node_params(l: &Launch, ptrs: &mut [*mut c_void]) -> sys::CUDA_KERNEL_NODE_PARAMS {
    // SAFETY: a zeroed struct of integers and null pointers is valid.
    let mut p: sys::CUDA_KERNEL_NODE_PARAMS = unsafe { std::mem::zeroed() };
    p.func = l.func as sys::CUfunction;
    p.gridDimX = l.grid.0;
    p.gridDimY = l.grid.1;
    p.gridDimZ = 1;
    p.blockDimX = l.block;
    p.blockDimY = 1;
    p.blockDimZ = 1;
    p.sharedMemBytes = l.shared;
    p.kernelParams = ptrs.as_mut_ptr();
    p
}

/// Pointers to each parameter of `l` inside its buffer image.
fn param_ptrs(l: &Launch) -> Vec<*mut c_void> {
    l.layout.iter().map(|&(off, _)| l.args.as_ptr().wrapping_add(off) as *mut c_void).collect()
}

impl Replay {
    /// Sets the parameters of the nodes whose launch differs from `launches`, then keeps
    /// `launches` (swapped in, not copied). An error leaves the executable unusable and
    /// `launches` as it was, for the caller's rebuild.
    fn update(&mut self, launches: &mut Vec<Launch>) -> Result<()> {
        for (i, l) in launches.iter().enumerate() {
            if self.launches[i] != *l {
                let mut ptrs = param_ptrs(l);
                let p = node_params(l, &mut ptrs);
                // SAFETY: a node of the graph this executable was instantiated from; the
                // function is the same (checked), the parameters match its layout.
                check(unsafe { sys::cuGraphExecKernelNodeSetParams_v2(self.exec, self.nodes[i], &p) }, "updating a graph node")?;
            }
        }
        std::mem::swap(&mut self.launches, launches);
        Ok(())
    }

    /// A chain of kernel nodes for `launches`, instantiated.
    fn build(launches: &[Launch], pdl: bool) -> Result<Replay> {
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        // SAFETY: creates an empty graph.
        check(unsafe { sys::cuGraphCreate(&mut graph, 0) }, "creating a CUDA graph")?;
        let mut r = Replay { graph, exec: std::ptr::null_mut(), nodes: Vec::with_capacity(launches.len()), launches: launches.to_vec() };
        // Programmatic edges (what a capture makes of launches with programmatic stream
        // serialization): the next kernel's blocks may start while this one drains.
        let edge = sys::CUgraphEdgeData {
            from_port: if pdl { sys::CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC as u8 } else { 0 },
            to_port: 0,
            type_: if pdl { sys::CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8 } else { 0 },
            reserved: [0; 5],
        };
        for l in launches {
            let mut ptrs = param_ptrs(l);
            let p = node_params(l, &mut ptrs);
            let mut node: sys::CUgraphNode = std::ptr::null_mut();
            // SAFETY: a live graph; parameters laid out as the function's signature.
            check(unsafe { sys::cuGraphAddKernelNode_v2(&mut node, graph, std::ptr::null(), 0, &p) }, "adding a graph node")?;
            if let Some(&prev) = r.nodes.last() {
                // SAFETY: two nodes of this graph.
                check(unsafe { sys::cuGraphAddDependencies_v2(graph, &prev, &node, &edge, 1) }, "adding a graph edge")?;
            }
            r.nodes.push(node);
        }
        // SAFETY: a complete graph.
        check(unsafe { sys::cuGraphInstantiateWithFlags(&mut r.exec, graph, 0) }, "instantiating a CUDA graph")?;
        Ok(r)
    }
}
