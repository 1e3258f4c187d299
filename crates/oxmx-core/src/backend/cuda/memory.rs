//! Device memory: a size-bucketed cache of freed blocks in front of `cuMemAlloc`, with exact
//! active / peak / cached accounting per device and a limit. Running out is an `OutOfMemory`
//! error, never a crash.
//!
//! Every use of a block is ordered on the device's one stream (see `device.rs`), so a block
//! freed by a dropped buffer can be handed to the next kernel at once: the stream runs the
//! earlier readers first.

use super::device::{cuda_err, gpu, Gpu};
use crate::error::{Error, ErrorKind, Result};
use cudarc::driver::result as cu;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A block of device memory owned by a `Buffer`; returned to the cache when dropped.
pub struct DeviceBlock {
    ordinal: usize,
    ptr: u64,
    capacity: usize,
    /// The device's launch count after the last kernel that wrote this block (graph.rs
    /// `launch_seq`; 0: unknown). A read waits for that launch, not for later work.
    written: std::sync::atomic::AtomicU64,
}

impl DeviceBlock {
    fn new(ordinal: usize, ptr: u64, capacity: usize) -> DeviceBlock {
        DeviceBlock { ordinal, ptr, capacity, written: Default::default() }
    }
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
    /// Records that kernels up to launch `seq` wrote this block.
    pub(crate) fn mark_written(&self, seq: u64) {
        self.written.fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for DeviceBlock {
    fn drop(&mut self) {
        if self.capacity == 0 {
            return;
        }
        let mut st = pool(self.ordinal);
        st.active -= self.capacity;
        st.cached += self.capacity;
        st.cache.entry(self.capacity).or_default().push(self.ptr);
    }
}

#[derive(Default)]
struct Pool {
    active: usize,
    peak: usize,
    cached: usize,
    limit: usize,
    cache: BTreeMap<usize, Vec<u64>>,
}

fn pools() -> MutexGuard<'static, HashMap<usize, &'static Mutex<Pool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, &'static Mutex<Pool>>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(HashMap::new())).lock().unwrap_or_else(|p| p.into_inner())
}

fn pool(ordinal: usize) -> MutexGuard<'static, Pool> {
    let mut map = pools();
    let p: &'static Mutex<Pool> = map.entry(ordinal).or_insert_with(|| {
        let limit = USER_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
        Box::leak(Box::new(Mutex::new(Pool { limit, ..Pool::default() })))
    });
    drop(map);
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// The limit `memory::set_memory_limit` set for every GPU (0: the device's default).
static USER_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every pool in use, for the totals `memory::active_memory` and friends report.
fn each_pool(mut f: impl FnMut(usize, &mut Pool)) {
    let list: Vec<(usize, &'static Mutex<Pool>)> = pools().iter().map(|(k, v)| (*k, *v)).collect();
    for (ordinal, p) in list {
        f(ordinal, &mut p.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// (active, peak, cached) bytes over all GPUs in use.
pub(crate) fn totals() -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    each_pool(|_, p| {
        t.0 += p.active;
        t.1 += p.peak;
        t.2 += p.cached;
    });
    t
}

pub(crate) fn reset_peaks() {
    each_pool(|_, p| p.peak = p.active);
}

/// `memory::set_memory_limit` for every GPU (those not in use yet get it when they start).
pub(crate) fn set_all_limits(limit: usize) {
    USER_LIMIT.store(limit, std::sync::atomic::Ordering::Relaxed);
    each_pool(|_, p| p.limit = limit);
}

pub(crate) fn clear_all_caches() {
    let mut ordinals = Vec::new();
    each_pool(|o, _| ordinals.push(o));
    for o in ordinals {
        let _ = clear_cache(o);
    }
}

/// Blocks below this size are rounded to powers of two, larger ones to multiples of 2 MB.
const LARGE_BLOCK: usize = 1 << 20;

/// Small blocks round to powers of two (from 256 bytes), large ones to 2 MiB: few distinct
/// sizes, so freed blocks are found again.
fn round(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else if bytes < LARGE_BLOCK {
        bytes.next_power_of_two().max(256)
    } else {
        bytes.div_ceil(2 << 20) * (2 << 20)
    }
}

fn free_cached(g: &Gpu, st: &mut Pool) {
    let _ = g.synchronize();
    for (cap, ptrs) in std::mem::take(&mut st.cache) {
        for p in ptrs {
            // SAFETY: cached blocks belong to nobody; the stream is idle.
            unsafe {
                let _ = cu::free_sync(p);
            }
            st.cached -= cap;
        }
    }
}

/// A block of at least `bytes` bytes on GPU `ordinal` (contents undefined).
pub(crate) fn alloc(ordinal: usize, bytes: usize) -> Result<DeviceBlock> {
    super::timed("~alloc", || alloc_untimed(ordinal, bytes))
}

fn alloc_untimed(ordinal: usize, bytes: usize) -> Result<DeviceBlock> {
    let capacity = round(bytes);
    if capacity == 0 {
        return Ok(DeviceBlock::new(ordinal, 0, 0));
    }
    let g = gpu(ordinal)?;
    let mut st = pool(ordinal);
    if st.limit == 0 {
        // Like MLX: a large fraction of the device's memory.
        st.limit = g.total_mem / 20 * 19;
    }
    // Small blocks are power-of-two buckets (the next one up may serve), large ones multiples
    // of 2 MB (see `reuse_limit`).
    let granule = if capacity < LARGE_BLOCK { capacity } else { 2 << 20 };
    let hit = st.cache.range_mut(capacity..=crate::memory::reuse_limit(capacity, granule)).next().map(|(c, v)| (*c, v.pop()));
    if let Some((cap, Some(ptr))) = hit {
        if st.cache.get(&cap).is_some_and(|v| v.is_empty()) {
            st.cache.remove(&cap);
        }
        st.cached -= cap;
        st.active += cap;
        st.peak = st.peak.max(st.active);
        return Ok(DeviceBlock::new(ordinal, ptr, cap));
    }
    if st.active + capacity > st.limit {
        return Err(oom(ordinal, capacity, &st));
    }
    // SAFETY: plain allocation on the bound context.
    let ptr = match unsafe { cu::malloc_sync(capacity) } {
        Ok(p) => p,
        Err(_) => {
            // Our own cache may hold the memory: release it and try once more.
            free_cached(g, &mut st);
            unsafe { cu::malloc_sync(capacity) }.map_err(|_| oom(ordinal, capacity, &st))?
        }
    };
    st.active += capacity;
    st.peak = st.peak.max(st.active);
    Ok(DeviceBlock::new(ordinal, ptr, capacity))
}

fn oom(ordinal: usize, capacity: usize, st: &Pool) -> Error {
    Error::without_location(
        ErrorKind::OutOfMemory,
        format!(
            "[gpu] allocating {capacity} bytes on gpu {ordinal} would exceed its memory ({} bytes active, limit {})",
            st.active, st.limit
        ),
    )
}

/// Uploads up to this many bytes as a kernel's parameter: while CUDA graphs are capturing, a
/// copy from host memory would end the capture (graph.rs); outside a capture, a copy from
/// pageable memory waits for the stream's queued work, so the GPU idles while the host then
/// launches the next kernel (an `x * 3.0` over 16M floats: kernel 36 µs, each evaluation 44 µs
/// on an H200). A launch carrying the bytes is queued like any other.
const PARAM_UPLOAD: usize = 1024;

/// Copies host bytes into a new block on GPU `ordinal`.
pub(crate) fn upload(ordinal: usize, bytes: &[u8]) -> Result<DeviceBlock> {
    let block = alloc(ordinal, bytes.len())?;
    if !bytes.is_empty() {
        let g = gpu(ordinal)?;
        if bytes.len() <= PARAM_UPLOAD {
            if bytes.len() <= 64 {
                write_bytes::<64>(g, block.ptr, bytes)?;
            } else {
                write_bytes::<PARAM_UPLOAD>(g, block.ptr, bytes)?;
            }
            return Ok(block);
        }
        // SAFETY: the block holds at least `bytes.len()` bytes; a copy from pageable memory
        // returns once the source has been staged, so `bytes` may go away afterwards (which is
        // also why it cannot be captured into a graph).
        super::graph::outside_capture(g, "~graph flush: upload", || {
            unsafe { cu::memcpy_htod_async(block.ptr, bytes, g.cu_stream()) }.map_err(|e| cuda_err("copying to the device", e))
        })?;
    }
    Ok(block)
}

/// Writes `bytes` (at most N) at `dst` with a kernel that carries them as its parameter: a
/// launch like any other, so it is captured into the current graph (the driver copies
/// parameters at launch; a graph update takes the next step's bytes).
fn write_bytes<const N: usize>(g: &Gpu, dst: u64, bytes: &[u8]) -> Result<()> {
    let name = format!("write_bytes_{N}");
    let f = super::compiler::function(g, &name, || {
        format!(
            "struct Bytes{N} {{ unsigned char b[{N}]; }};\n\
             extern \"C\" __global__ void {name}(unsigned char* dst, Bytes{N} src, int n) {{\n\
             for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];\n}}\n"
        )
    })?;
    let mut payload = [0u8; N];
    payload[..bytes.len()].copy_from_slice(bytes);
    super::compiler::Args::new().arg(dst).arg(payload).arg(bytes.len() as i32).launch(g, &f, (1, 1), 256)
}

/// Reads up to this many bytes through pinned staging memory (a decoding step's token, a
/// scalar): the copy is queued and the capture lock released at once, so the stream worker
/// keeps launching the next step's kernels while this thread waits for the copy alone.
const STAGED_READ: usize = 64 << 10;

/// Pinned host memory and the event that says a read into it has landed.
pub(crate) struct Staging {
    host: *mut u8,
    done: super::graph::Event,
}
// Owned by one reader at a time (taken from and returned to the device's pool).
unsafe impl Send for Staging {}

impl Drop for Staging {
    fn drop(&mut self) {
        // SAFETY: memory this module allocated with cuMemAllocHost.
        unsafe {
            let _ = cudarc::driver::sys::cuMemFreeHost(self.host.cast());
        }
    }
}

/// Copies a block's first `dst.len()` bytes to the host, after the work queued before it.
pub(crate) fn download(block: &DeviceBlock, dst: &mut [u8]) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    let g = gpu(block.ordinal)?;
    if dst.len() <= STAGED_READ {
        return staged_download(g, block, dst);
    }
    // SAFETY: the block holds at least `dst.len()` bytes.
    super::graph::outside_capture(g, "~graph flush: large download", || {
        unsafe { cu::memcpy_dtoh_async(dst, block.ptr, g.cu_stream()) }.map_err(|e| cuda_err("copying to the host", e))
    })?;
    g.synchronize()
}

fn staged_download(g: &Gpu, block: &DeviceBlock, dst: &mut [u8]) -> Result<()> {
    // Each reader takes a staging buffer of its own from the device's pool (no lock is held
    // while it waits: a reader waiting for another thread's capture must not block that
    // thread's own reads), and gives it back when its bytes are out.
    let st = match g.staging.lock().unwrap_or_else(|p| p.into_inner()).pop() {
        Some(st) => st,
        None => Staging::new()?,
    };
    let r = read_through(g, &st, block, dst);
    g.staging.lock().unwrap_or_else(|p| p.into_inner()).push(st);
    r
}

impl Staging {
    fn new() -> Result<Staging> {
        let mut host: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: allocates pinned memory in the bound context.
        let r = unsafe { cudarc::driver::sys::cuMemAllocHost_v2(&mut host, STAGED_READ) };
        if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            return Err(cuda_err("allocating pinned host memory", r));
        }
        Ok(Staging { host: host.cast(), done: super::graph::Event::new()? })
    }
}

fn read_through(g: &Gpu, st: &Staging, block: &DeviceBlock, dst: &mut [u8]) -> Result<()> {
    // `OXMX_READ_AFTER_ALL=1` makes reads wait for everything queued (for measuring what
    // waiting for the data's own writer saves).
    static AFTER_ALL: OnceLock<bool> = OnceLock::new();
    let after_all = *AFTER_ALL.get_or_init(|| std::env::var("OXMX_READ_AFTER_ALL").is_ok_and(|v| v == "1"));
    let written = if after_all { 0 } else { block.written.load(std::sync::atomic::Ordering::Relaxed) };
    super::graph::enqueue_read(g, written, |stream| {
        // SAFETY: the staging memory holds STAGED_READ >= dst.len() bytes and the block at
        // least dst.len(); this reader owns `st` until the copy is consumed.
        let r = unsafe { cudarc::driver::sys::cuMemcpyDtoHAsync_v2(st.host.cast(), block.ptr, dst.len(), stream) };
        if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            return Err(cuda_err("copying to the host", r));
        }
        st.done.record(stream)
    })?;
    st.done.wait()?;
    // SAFETY: the copy has landed (event) and nothing else writes this staging memory.
    dst.copy_from_slice(unsafe { std::slice::from_raw_parts(st.host, dst.len()) });
    Ok(())
}

/// (active, peak, cached) bytes on GPU `ordinal`.
pub fn memory_stats(ordinal: usize) -> (usize, usize, usize) {
    let st = pool(ordinal);
    (st.active, st.peak, st.cached)
}

/// Sets the limit on active memory of GPU `ordinal`; returns the previous one.
pub fn set_memory_limit(ordinal: usize, limit: usize) -> Result<usize> {
    let g = gpu(ordinal)?;
    let mut st = pool(ordinal);
    if st.limit == 0 {
        st.limit = g.total_mem / 20 * 19;
    }
    Ok(std::mem::replace(&mut st.limit, limit))
}

/// Returns the cached blocks of GPU `ordinal` to the driver.
pub fn clear_cache(ordinal: usize) -> Result<()> {
    let g = gpu(ordinal)?;
    free_cached(g, &mut pool(ordinal));
    Ok(())
}
