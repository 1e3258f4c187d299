//! CUDA graphs for batches of ops: while a stream worker runs a task of several ops (a decoding
//! step is ~600 of them), the kernels those ops launch are captured into a graph instead of
//! being launched one by one, and the graph is launched when the task ends, when it holds
//! `flush_nodes()` kernels (so the GPU starts early on long tasks), or when something must
//! reach the device's stream directly (an upload too large for a kernel parameter, a
//! synchronisation).
//!
//! Why: a `cuLaunchKernel` costs 3–5 µs of host time (H100/H200 hosts, measured by
//! `examples/cuda_dispatch_probe`), a captured launch ~1 µs, and ending a capture, updating the
//! cached executable (`cuGraphExecUpdate`) and launching it ~0.6 µs per node. A step's chunks
//! have the same kernel sequence every step, so their executables are kept (keyed by a hash of
//! the sequence) and updated in place with the step's new arguments; a sequence never seen
//! before is instantiated (~2.6 µs per node).
//!
//! Ordering is unchanged: a capture on the device's one stream records its kernels as a chain
//! in launch order, and the graph launch takes the captured work's place in the stream. Every
//! stream operation goes through this module under one lock per device, so nothing can slip
//! onto the stream between the end of a capture and its launch.
//!
//! Reads (`enqueue_read`): a block remembers the launch count after its last writer, and
//! "marks" (events recorded after each graph launch and every `MARK_EVERY` direct launches)
//! tell which launches are done; a small read waits on the side stream for the first mark
//! covering its data. So a decoding loop's read of token n waits for step n only, while the
//! stream worker keeps capturing step n + 1 (a read queued on the stream itself would wait for
//! whatever of step n + 1 was launched before it). Measured against reading after everything
//! (`OXMX_READ_AFTER_ALL=1`, same H200 run) it gained nothing for Llama-3-8B decoding, which is
//! bound by the worker's host time and the GPU; it is the ordering a read asks for.
//!
//! Failures: if a capture cannot be turned into a graph, the work in it never ran; the error
//! is kept and returned by `end_batch`, whose caller fails the task's outputs, and capturing is
//! switched off for the rest of the process.
//!
//! On by default; `OXMX_CUDA_GRAPHS=0` turns it off (the CUDA tests pass either way).
//! Measured on H200 hosts (BENCHMARKS.md, thirteenth session): Llama-3-8B-shaped decoding,
//! 4-bit 172 → 211 tok/s and bf16 147 → 166 with graphs (same-run pairs).

use super::compiler::fnv_step;
use super::device::{cuda_err, Gpu};
use super::replay::Replays;
use crate::error::{Error, Result};
use cudarc::driver::sys;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

/// Captured kernels after which the graph is launched at the next op boundary (default 256;
/// `OXMX_GRAPH_FLUSH_NODES` overrides it, for measuring: larger chunks launch fewer graphs but
/// start the GPU later).
fn flush_nodes() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("OXMX_GRAPH_FLUSH_NODES").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(256))
}
/// Tasks with fewer ops launch directly (a graph's fixed cost would not pay off).
const MIN_TASK_OPS: usize = 8;
/// Executable graphs kept for reuse (a decoding step needs a handful).
const MAX_EXECS: usize = 64;

static DISABLED: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let env_on = *ENV.get_or_init(|| std::env::var("OXMX_CUDA_GRAPHS").map_or(true, |v| v != "0"));
    env_on && !DISABLED.load(Ordering::Relaxed)
}

/// Per-device capture state (in `Gpu::capture`).
#[derive(Default)]
pub(crate) struct Capture {
    /// Tasks running now that asked for batching.
    batching: usize,
    /// Whether the stream is capturing.
    active: bool,
    /// Kernels in the current capture and the hash of their sequence.
    nodes: usize,
    hash: u64,
    /// Executable graphs by sequence hash.
    execs: HashMap<u64, Exec>,
    /// A capture that failed: its work never ran.
    failed: Option<Error>,
    /// Graph launches so far (readers on other threads wait for the next one).
    launches: u64,
    /// Kernel launches (captured or direct) so far: blocks are stamped with it (`launch_seq`).
    seq: u64,
    /// Recent marks, oldest first: an event recorded on the stream once every launch up to
    /// `.0` had been queued. Reads wait on the first mark that covers their data.
    marks: std::collections::VecDeque<(u64, Event)>,
    /// With `OXMX_GPU_PROFILE`: timing events around each graph launch (start, end), read by
    /// `gpu_time` to tell how long the GPU spent running the graphs against the wall time.
    timings: Vec<(Event, Event)>,
    /// Kernel launches recorded instead of captured, and their executables (replay.rs).
    replays: Replays,
}

impl Capture {
    /// Whether work is batched but not yet on the stream (captured or recorded).
    fn pending(&self) -> bool {
        self.active || !self.replays.pending.is_empty()
    }
}

/// Direct launches between two marks (a read waits at most this many launches past its data).
const MARK_EVERY: u64 = 16;
/// Marks kept (older ones are re-recorded as new ones).
const MAX_MARKS: usize = 64;

/// A CUDA event without timing.
pub(crate) struct Event(pub sys::CUevent);
// Used under the device's locks; the driver's events are thread-safe handles.
unsafe impl Send for Event {}

impl Event {
    pub(crate) fn new() -> Result<Event> {
        Self::with_flags(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32)
    }

    /// An event that records a time stamp (for `elapsed_since`).
    fn timing() -> Result<Event> {
        Self::with_flags(sys::CUevent_flags::CU_EVENT_DEFAULT as u32)
    }

    fn with_flags(flags: u32) -> Result<Event> {
        let mut e: sys::CUevent = std::ptr::null_mut();
        // SAFETY: creates an event in the bound context.
        check(unsafe { sys::cuEventCreate(&mut e, flags) }, "creating a CUDA event")?;
        Ok(Event(e))
    }

    /// Seconds between `start` and this event, once both have run (waits for this one).
    fn elapsed_since(&self, start: &Event) -> Result<f64> {
        self.wait()?;
        let mut ms = 0f32;
        // SAFETY: two live timing events of one context, both recorded and complete.
        check(unsafe { sys::cuEventElapsedTime_v2(&mut ms, start.0, self.0) }, "reading a CUDA event's time")?;
        Ok(ms as f64 * 1e-3)
    }

    pub(crate) fn record(&self, stream: sys::CUstream) -> Result<()> {
        // SAFETY: a live event and stream of the same context.
        check(unsafe { sys::cuEventRecord(self.0, stream) }, "recording a CUDA event")
    }

    /// Blocks the host until the work before the last `record` has run.
    pub(crate) fn wait(&self) -> Result<()> {
        // SAFETY: a live event.
        check(unsafe { sys::cuEventSynchronize(self.0) }, "waiting for a CUDA event")
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: an event this module created.
        unsafe {
            let _ = sys::cuEventDestroy_v2(self.0);
        }
    }
}

thread_local! {
    /// Batching tasks this thread is running (they may read their own captured results).
    static IN_BATCH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How long a reader on another thread waits for the running capture to be launched by its
/// task before launching it itself (a task may be waiting for that reader's own results).
const READ_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

struct Exec(sys::CUgraphExec);
// Used only under the device's capture lock.
unsafe impl Send for Exec {}

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: an executable graph this module instantiated; the stream orders its launches.
        unsafe {
            let _ = sys::cuGraphExecDestroy(self.0);
        }
    }
}

fn lock(g: &Gpu) -> MutexGuard<'_, Capture> {
    g.capture.lock().unwrap_or_else(|p| p.into_inner())
}

fn check(r: sys::CUresult, what: &str) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cuda_err(what, r))
    }
}

/// Runs `op` (which puts kernels on `g`'s stream: one of ours, or a cuBLAS call) under the
/// capture lock, inside the current capture when a batching task runs. `key` identifies the
/// launch (function, grid, sizes) for the executable-graph cache.
pub(crate) fn launch(g: &Gpu, key: &[u64], op: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut st = lock(g);
    if !st.replays.pending.is_empty() {
        // Recorded kernels go first: this launch cannot be recorded.
        flush_locked(g, &mut st, "~graph flush: not a plain kernel")?;
    }
    if st.batching > 0 && !st.active && enabled() {
        // Relaxed: allocations (cuMemAlloc) and module loads stay legal while capturing.
        // SAFETY: the device's stream, not capturing (checked under the lock).
        check(
            unsafe { sys::cuStreamBeginCapture_v2(g.cu_stream(), sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED) },
            "starting a CUDA graph capture",
        )?;
        st.active = true;
        st.nodes = 0;
        st.hash = 0xcbf29ce484222325;
    }
    if st.active {
        st.nodes += 1;
        for &k in key {
            st.hash = fnv_step(st.hash, k);
        }
    }
    super::timed("~launch (driver)", op)?;
    st.seq += 1;
    if !st.pending() && st.seq - st.marks.back().map_or(0, |m| m.0) >= MARK_EVERY {
        mark_locked(g, &mut st)?;
    }
    Ok(())
}

/// Launches kernel `f` (through `op`, which launches it directly or into a capture), or, in a
/// batching task with replay on, records it for the graph the batch is launched as (replay.rs).
/// `params` as for `cuLaunchKernel`.
pub(crate) fn launch_kernel(
    g: &Gpu,
    f: sys::CUfunction,
    grid: (u32, u32),
    block: u32,
    shared: u32,
    params: &mut [*mut std::ffi::c_void],
    op: impl FnOnce(&mut [*mut std::ffi::c_void]) -> Result<()>,
) -> Result<()> {
    {
        let mut st = lock(g);
        if st.batching > 0 && !st.active && enabled() && super::replay::enabled() {
            super::timed("~replay record", || st.replays.record(f, grid, block, shared, params))?;
            st.seq += 1;
            return Ok(());
        }
    }
    launch(g, &[f as u64], || op(params))
}

/// The launch count so far: kernels launched up to now have numbers at most this.
pub(crate) fn launch_seq(g: &Gpu) -> u64 {
    lock(g).seq
}

/// Records a mark covering every launch so far (not while capturing: the stream is the graph's).
fn mark_locked(g: &Gpu, st: &mut Capture) -> Result<()> {
    debug_assert!(!st.pending());
    let ev = if st.marks.len() >= MAX_MARKS { st.marks.pop_front().expect("non-empty").1 } else { Event::new()? };
    // The driver snapshots an event at each wait, so re-recording an old one cannot disturb a
    // wait already queued on it.
    ev.record(g.cu_stream())?;
    st.marks.push_back((st.seq, ev));
    Ok(())
}

/// Runs `op` (a copy or synchronisation) directly on the stream, after launching whatever is
/// captured so far. `why` names the profile row counting the flushes it causes.
pub(crate) fn outside_capture<T>(g: &Gpu, why: &str, op: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut st = lock(g);
    flush_locked(g, &mut st, why)?;
    super::timed("~copy/sync (driver)", op)
}

/// Runs `op` (stream work that must not be captured into a cached graph, such as an NCCL
/// collective) directly on the stream after launching what is captured, and counts it as a
/// launch, so that a read of what it wrote waits for it.
pub(crate) fn launch_direct(g: &Gpu, why: &str, op: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut st = lock(g);
    flush_locked(g, &mut st, why)?;
    super::timed(why, op)?;
    st.seq += 1;
    Ok(())
}

/// Issues `op` (a device-to-host copy of data whose last writer was launch `written`; 0:
/// unknown) so that it runs after that writer but not after work queued since: it goes on the
/// side stream behind the first mark covering `written`. Without such a mark yet: a capture of
/// this thread's own task is launched; another thread's capture is waited for (at most
/// `READ_WAIT`, then launched); otherwise a mark is recorded now. The capture lock is released
/// once `op` is queued, so the caller waits for its copy alone while the stream worker keeps
/// launching the next step.
pub(crate) fn enqueue_read(g: &Gpu, written: u64, op: impl FnOnce(sys::CUstream) -> Result<()>) -> Result<()> {
    let mut st = lock(g);
    let written = if written == 0 { st.seq } else { written };
    loop {
        if let Some((_, ev)) = st.marks.iter().find(|m| m.0 >= written) {
            // SAFETY: live stream and event of this device's context.
            check(unsafe { sys::cuStreamWaitEvent(g.read_stream.cu_stream(), ev.0, 0) }, "ordering a read after its data")?;
            return super::timed("~copy/sync (driver)", || op(g.read_stream.cu_stream()));
        }
        if !st.pending() {
            mark_locked(g, &mut st)?;
            continue;
        }
        if IN_BATCH.with(|c| c.get()) > 0 {
            // This thread's own task needs a result it captured: launch the capture now.
            flush_locked(g, &mut st, "~graph flush: read by the task")?;
            continue;
        }
        let seen = st.launches;
        let deadline = std::time::Instant::now() + READ_WAIT;
        st = super::timed("~graph read: wait for launch", move || {
            while st.pending() && st.launches == seen {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                st = match g.capture_launched.wait_timeout(st, deadline - now) {
                    Ok((guard, _)) => guard,
                    Err(p) => p.into_inner().0,
                };
            }
            st
        });
        if st.pending() && st.launches == seen {
            flush_locked(g, &mut st, "~graph flush: read (timed out)")?;
        }
    }
}

/// Launches the captured work at an op boundary once it holds `flush_nodes()` kernels.
pub(crate) fn flush_if_long(g: &Gpu) -> Result<()> {
    let mut st = lock(g);
    if (st.active && st.nodes >= flush_nodes()) || st.replays.pending.len() >= flush_nodes() {
        flush_locked(g, &mut st, "~graph flush: long")?;
    }
    Ok(())
}

/// `why` names the profile row that counts flushes for this reason.
fn flush_locked(g: &Gpu, st: &mut Capture, why: &str) -> Result<()> {
    if !st.pending() {
        return match &st.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        };
    }
    super::timed(why, || ());
    let r = if st.active {
        st.active = false;
        super::timed("~graph end+update+launch", || end_and_launch(g, st))
    } else {
        super::timed("~graph replay+launch", || replay_and_launch(g, st))
    };
    if let Err(e) = &r {
        DISABLED.store(true, Ordering::Relaxed);
        st.execs.clear();
        st.replays.clear();
        st.failed = Some(Error::runtime(format!("{e} (CUDA graphs are now off for this process)")));
    }
    r?;
    // Reads of what this graph computed wait for this mark, not for later work.
    mark_locked(g, st)
}

fn end_and_launch(g: &Gpu, st: &mut Capture) -> Result<()> {
    let mut graph: sys::CUgraph = std::ptr::null_mut();
    // SAFETY: the stream is capturing (state under the lock).
    check(unsafe { sys::cuStreamEndCapture(g.cu_stream(), &mut graph) }, "ending a CUDA graph capture")?;
    let result = (|| {
        let key = st.hash ^ (st.nodes as u64).rotate_left(32);
        let reuse = match st.execs.get(&key) {
            Some(exec) => {
                // SAFETY: both handles are live; a failed update leaves the exec launchable
                // but we replace it anyway.
                let mut info: sys::CUgraphExecUpdateResultInfo = unsafe { std::mem::zeroed() };
                let ok = super::timed("~graph update", || unsafe { sys::cuGraphExecUpdate_v2(exec.0, graph, &mut info) })
                    == sys::CUresult::CUDA_SUCCESS;
                if !ok {
                    super::timed(&format!("~graph update refused ({:?})", info.result), || ());
                }
                ok
            }
            None => false,
        };
        if !reuse {
            let mut exec: sys::CUgraphExec = std::ptr::null_mut();
            // SAFETY: a complete graph from the capture.
            check(
                super::timed("~graph instantiate", || unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0) }),
                "instantiating a CUDA graph",
            )?;
            if st.execs.len() >= MAX_EXECS {
                st.execs.clear();
            }
            st.execs.insert(key, Exec(exec));
        }
        let exec = st.execs.get(&key).expect("exec was just cached").0;
        timed_launch(g, st, |_| {
            // SAFETY: an instantiated graph on this device's stream.
            check(super::timed("~graph launch", || unsafe { sys::cuGraphLaunch(exec, g.cu_stream()) }), "launching a CUDA graph")
        })
    })();
    // SAFETY: the executable graph no longer needs the captured one.
    unsafe {
        let _ = sys::cuGraphDestroy(graph);
    }
    result
}

/// Launches the recorded kernels as one graph (replay.rs).
fn replay_and_launch(g: &Gpu, st: &mut Capture) -> Result<()> {
    timed_launch(g, st, |st| st.replays.flush(g.cu_stream(), g.pdl))
}

/// Runs `launch` (a graph launch on the stream) between timing events when profiling, and tells
/// readers waiting for a launch.
fn timed_launch(g: &Gpu, st: &mut Capture, launch: impl FnOnce(&mut Capture) -> Result<()>) -> Result<()> {
    let timing = if super::profiling() { Some((Event::timing()?, Event::timing()?)) } else { None };
    if let Some((start, _)) = &timing {
        start.record(g.cu_stream())?;
    }
    launch(st)?;
    if let Some((start, end)) = timing {
        end.record(g.cu_stream())?;
        st.timings.push((start, end));
    }
    st.launches += 1;
    g.capture_launched.notify_all();
    Ok(())
}

/// With `OXMX_GPU_PROFILE`: the graphs launched since the last call, the GPU time they ran
/// (each from the moment the stream reached it to its end: idle gaps between graphs are not
/// counted) and the span from the first one's start to the last one's end. Busy over span is
/// the GPU's utilisation while graphs ran; a host-bound loop shows it well under 1. Waits for
/// the last graph.
pub(crate) fn gpu_time(g: &Gpu) -> Result<(u64, f64, f64)> {
    let timings = std::mem::take(&mut lock(g).timings);
    let mut busy = 0.0;
    for (start, end) in &timings {
        busy += end.elapsed_since(start)?;
    }
    let span = match (timings.first(), timings.last()) {
        (Some((first, _)), Some((_, last))) => last.elapsed_since(first)?,
        _ => 0.0,
    };
    Ok((timings.len() as u64, busy, span))
}

/// A task of `ops` ops starts on this device: batch its launches when it is long enough.
/// Returns whether it batches (then `end_batch` must follow).
pub(crate) fn begin_batch(g: &Gpu, ops: usize) -> bool {
    if ops < MIN_TASK_OPS || !enabled() {
        return false;
    }
    lock(g).batching += 1;
    IN_BATCH.with(|c| c.set(c.get() + 1));
    true
}

/// The batching task ends: its captured work is launched. An error means work captured since
/// the last launch never ran (the caller fails the task's outputs).
pub(crate) fn end_batch(g: &Gpu) -> Result<()> {
    IN_BATCH.with(|c| c.set(c.get().saturating_sub(1)));
    let mut st = lock(g);
    st.batching = st.batching.saturating_sub(1);
    let r = flush_locked(g, &mut st, "~graph flush: task end");
    // Reported once, to the task that was running.
    st.failed = None;
    r
}
