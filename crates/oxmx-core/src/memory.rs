//! The host allocator: 64-byte aligned buffers, a size-keyed cache of freed buffers, exact
//! active/peak/cache accounting and limits (`mx.get_active_memory`, `mx.set_memory_limit`, …).
//!
//! Accounting is in allocated bytes (sizes rounded up to the allocation granule), so
//! `active + cache` is exactly what this allocator holds from the system.

use crate::error::{Error, ErrorKind, Result};
use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub const ALIGN: usize = 64;
const SMALL_GRANULE: usize = 64;
const PAGE: usize = 4096;
/// Buffers at least this large are aligned to it and advised as transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`; Linux in its default "madvise" mode backs only such regions with
/// 2 MB pages). A streaming read with 4 KB pages misses the TLB every 64 cache lines: on a
/// 2-core Zen 2 host a plain read ran 25–30 GB/s with 4 KB pages and 29–34 GB/s with huge pages
/// (BENCHMARKS.md, thirtieth session). `OXMX_HUGE_PAGES=0` turns it off.
const HUGE: usize = 2 << 20;

/// The alignment of a heap block of `capacity` bytes (the same at allocation and release).
fn align_for(capacity: usize) -> usize {
    if capacity >= HUGE && huge_pages() {
        HUGE
    } else {
        ALIGN
    }
}

fn huge_pages() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| cfg!(target_os = "linux") && std::env::var("OXMX_HUGE_PAGES").map_or(true, |v| v != "0"))
}

/// Asks the kernel for huge pages over a fresh block (before its first touch, so its pages
/// are faulted in as 2 MB pages). Advice only: a refusal changes nothing.
fn advise_huge(ptr: *mut u8, capacity: usize) {
    #[cfg(target_os = "linux")]
    if capacity >= HUGE && huge_pages() {
        // SAFETY: [ptr, ptr + capacity) is a block we just allocated, aligned to HUGE.
        unsafe { libc::madvise(ptr as *mut libc::c_void, capacity, libc::MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, capacity);
}

struct State {
    active: usize,
    peak: usize,
    cached: usize,
    memory_limit: usize,
    cache_limit: usize,
    /// Freed buffers by capacity.
    cache: BTreeMap<usize, Vec<SendPtr>>,
}

#[derive(Copy, Clone)]
struct SendPtr(NonNull<u8>);
// The pointers in the cache are owned by the allocator and touched only under its lock.
unsafe impl Send for SendPtr {}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let total = total_system_memory();
            Mutex::new(State {
                active: 0,
                peak: 0,
                cached: 0,
                // Like MLX: the default limit is a large fraction of the machine's memory.
                memory_limit: (total as f64 * 1.5) as usize,
                cache_limit: total,
                cache: BTreeMap::new(),
            })
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn total_system_memory() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<usize>().ok()).map(|kb| kb * 1024))
        })
        .unwrap_or(16 << 30)
}

/// The largest cached block a request of `capacity` bytes may take (allocations are rounded to
/// `granule`): an eighth more, or two granules for small blocks, never twice. The block's whole
/// capacity stays held (and counted) while the array lives, so a looser rule wastes memory for
/// as long as the data is kept: a bfloat16 weight cast from a float32 draw would otherwise take
/// the freed float32 block and hold twice its size (a random-weight SmolLM2-360M held 1.45 GB
/// for 0.72 GB of weights). MLX's cache takes at most min(2 size, size + 2 pages); the eighth
/// keeps reuse for buffers that grow a little from step to step (attention over a growing cache).
pub(crate) fn reuse_limit(capacity: usize, granule: usize) -> usize {
    capacity.saturating_mul(2).min(capacity.saturating_add((2 * granule).max(capacity / 8)))
}

fn round_capacity(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else if bytes < PAGE {
        bytes.div_ceil(SMALL_GRANULE) * SMALL_GRANULE
    } else {
        bytes.div_ceil(PAGE) * PAGE
    }
}

/// The memory an evaluated array reads from. On the host it is either owned by the allocator or
/// a window into a memory-mapped file (zero-copy loading). A buffer may also have a copy on a GPU:
/// GPU kernels create buffers that live only there, and a host buffer that a GPU kernel reads is
/// uploaded once and keeps its device copy. Each side is made at most once, on first use by the
/// other side (the unified memory model of DESIGN.md); `migrations` counts them.
pub struct Buffer {
    host: OnceLock<Host>,
    len: usize,
    device: OnceLock<crate::backend::cuda::DeviceBlock>,
}

struct Host {
    ptr: NonNull<u8>,
    storage: Storage,
}

enum Storage {
    Heap { capacity: usize },
    Mapped(#[allow(dead_code)] Arc<memmap2::Mmap>),
    Static,
}

// A Buffer owns its memory (or keeps its mapping alive); shared reads are synchronised by the
// graph (a node's buffer is written once, before it becomes Ready).
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Buffer {
    fn on_host(ptr: NonNull<u8>, len: usize, storage: Storage) -> Buffer {
        let host = OnceLock::new();
        let _ = host.set(Host { ptr, storage });
        Buffer { host, len, device: OnceLock::new() }
    }

    /// Allocates `bytes` bytes (uninitialised contents). Fails with `OutOfMemory` above the limit.
    pub fn alloc(bytes: usize) -> Result<Buffer> {
        let capacity = round_capacity(bytes);
        if capacity == 0 {
            return Ok(Buffer::on_host(NonNull::<u64>::dangling().cast(), 0, Storage::Static));
        }
        let mut st = state();
        // Reuse a cached block of at least this size but not wastefully larger.
        let hit = st.cache.range_mut(capacity..=reuse_limit(capacity, PAGE)).next().map(|(c, v)| (*c, v.pop()));
        if let Some((cap, Some(p))) = hit {
            if st.cache.get(&cap).is_some_and(|v| v.is_empty()) {
                st.cache.remove(&cap);
            }
            st.cached -= cap;
            st.active += cap;
            st.peak = st.peak.max(st.active);
            return Ok(Buffer::on_host(p.0, bytes, Storage::Heap { capacity: cap }));
        }
        if st.active + capacity > st.memory_limit {
            drop_cache(&mut st, usize::MAX);
            if st.active + capacity > st.memory_limit {
                return Err(Error::without_location(
                    ErrorKind::OutOfMemory,
                    format!(
                        "[alloc] allocating {capacity} bytes would exceed the memory limit of {} bytes ({} bytes active)",
                        st.memory_limit, st.active
                    ),
                ));
            }
        }
        let layout = Layout::from_size_align(capacity, align_for(capacity))
            .map_err(|_| Error::without_location(ErrorKind::OutOfMemory, format!("[alloc] invalid allocation size {bytes}")))?;
        // SAFETY: layout has non-zero size.
        let mut raw = unsafe { alloc::alloc(layout) };
        if raw.is_null() {
            // The system may be short because of our own cache: release it and retry once.
            drop_cache(&mut st, usize::MAX);
            raw = unsafe { alloc::alloc(layout) };
        }
        let ptr = NonNull::new(raw)
            .ok_or_else(|| Error::without_location(ErrorKind::OutOfMemory, format!("[alloc] the system refused {capacity} bytes")))?;
        advise_huge(raw, capacity);
        st.active += capacity;
        st.peak = st.peak.max(st.active);
        Ok(Buffer::on_host(ptr, bytes, Storage::Heap { capacity }))
    }

    /// Allocates and zero-fills.
    pub fn zeroed(bytes: usize) -> Result<Buffer> {
        let mut b = Buffer::alloc(bytes)?;
        b.bytes_mut().fill(0);
        Ok(b)
    }

    /// A zero-copy window `[offset, offset+len)` into a memory-mapped file.
    pub fn mapped(map: Arc<memmap2::Mmap>, offset: usize, len: usize) -> Result<Buffer> {
        if offset.checked_add(len).is_none_or(|end| end > map.len()) {
            return Err(Error::io(format!("mapped range {offset}+{len} exceeds the file size {}", map.len())));
        }
        let ptr = NonNull::new(unsafe { map.as_ptr().add(offset) as *mut u8 }).unwrap_or(NonNull::dangling());
        Ok(Buffer::on_host(ptr, len, Storage::Mapped(map)))
    }

    /// A buffer that lives on a GPU only (a GPU kernel's output); the host copy is made on the
    /// first host read.
    pub(crate) fn on_device(block: crate::backend::cuda::DeviceBlock, len: usize) -> Buffer {
        let device = OnceLock::new();
        let _ = device.set(block);
        Buffer { host: OnceLock::new(), len, device }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.host().ptr.as_ptr()
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self.host.get(), Some(Host { storage: Storage::Mapped(_), .. }))
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.host().ptr.as_ptr(), self.len) }
    }
    /// Mutable access: only for a buffer still owned by the kernel that fills it. Any device
    /// copy is dropped (it would go stale).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let ptr = self.host().ptr;
        assert!(!self.is_mapped(), "mapped buffers are read-only");
        self.device.take();
        unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.len) }
    }

    /// Whether the bytes are on the host now (a GPU-made buffer is not until first read).
    pub fn is_on_host(&self) -> bool {
        self.host.get().is_some()
    }

    /// Whether a device copy exists (made by a GPU kernel or uploaded once).
    pub fn is_on_device(&self) -> bool {
        self.device.get().is_some()
    }

    /// Makes the host copy of a GPU-made buffer now; errors (a failed device copy, host memory
    /// limit) are returned instead of panicking in a later `bytes()`.
    pub fn ensure_host(&self) -> Result<()> {
        if self.host.get().is_some() {
            return Ok(());
        }
        let mut b = Buffer::alloc(self.len)?;
        let Some(block) = self.device.get() else {
            return Err(Error::runtime("[memory] a buffer has neither a host nor a device copy".to_string()));
        };
        // SAFETY: `b` was just allocated with `len` bytes; nothing else sees it.
        let dst = unsafe { std::slice::from_raw_parts_mut(b.host().ptr.as_ptr(), self.len) };
        crate::backend::cuda::download(block, dst)?;
        // The new Host moves out of `b`; `b` is left without one and drops nothing.
        if let Some(h) = b.host.take() {
            let _ = self.host.set(h);
        }
        MIGRATIONS_TO_HOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn host(&self) -> &Host {
        if let Some(h) = self.host.get() {
            return h;
        }
        if let Err(e) = self.ensure_host() {
            // Only reachable when a GPU failed between the scheduler's `ensure_host` and a read
            // (the scheduler makes host copies with errors reported before CPU kernels run).
            panic!("[memory] copying a GPU buffer to the host failed: {e}");
        }
        self.host.get().expect("host copy was just made")
    }

    /// The device copy on GPU `ordinal` for a kernel that writes it in place (the buffer is that
    /// kernel's alone): made if missing; the host copy is dropped, as it would go stale.
    pub(crate) fn device_block_mut(&mut self, ordinal: usize) -> Result<&crate::backend::cuda::DeviceBlock> {
        assert!(!self.is_mapped(), "mapped buffers are read-only");
        self.device_block(ordinal)?;
        self.host.take();
        Ok(self.device.get().expect("device copy was just made"))
    }

    /// The device copy on GPU `ordinal`, uploading the host bytes on first use.
    /// The device copy when there is one (never uploads).
    pub(crate) fn device_block_if_any(&self) -> Option<&crate::backend::cuda::DeviceBlock> {
        self.device.get()
    }

    pub(crate) fn device_block(&self, ordinal: usize) -> Result<&crate::backend::cuda::DeviceBlock> {
        if let Some(b) = self.device.get() {
            if b.ordinal() == ordinal {
                return Ok(b);
            }
            return Err(Error::runtime(format!(
                "[memory] the buffer lives on gpu {} and gpu {ordinal} asked for it (copies between GPUs are not supported yet)",
                b.ordinal()
            )));
        }
        let block = crate::backend::cuda::upload(ordinal, self.bytes())?;
        let _ = self.device.set(block);
        MIGRATIONS_TO_DEVICE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.device.get().expect("device copy was just set"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Storage::Heap { capacity } = self.storage {
            let mut st = state();
            st.active -= capacity;
            if st.cached + capacity <= st.cache_limit {
                st.cached += capacity;
                st.cache.entry(capacity).or_default().push(SendPtr(self.ptr));
            } else {
                unsafe { alloc::dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(capacity, align_for(capacity))) };
            }
        }
    }
}

static MIGRATIONS_TO_HOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static MIGRATIONS_TO_DEVICE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Buffers copied (device → host, host → device) since start: each side of a buffer is made at
/// most once, so these make migrations visible (a GPU program that keeps bouncing shows here).
pub fn migrations() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (MIGRATIONS_TO_HOST.load(Relaxed), MIGRATIONS_TO_DEVICE.load(Relaxed))
}

fn drop_cache(st: &mut State, max_keep: usize) {
    // Free largest blocks first until at most `max_keep` bytes stay cached.
    let target = if max_keep == usize::MAX { 0 } else { max_keep };
    while st.cached > target {
        let Some((&cap, _)) = st.cache.iter().next_back() else { break };
        let list = st.cache.get_mut(&cap).unwrap();
        if let Some(p) = list.pop() {
            unsafe { alloc::dealloc(p.0.as_ptr(), Layout::from_size_align_unchecked(cap, align_for(cap))) };
            st.cached -= cap;
        }
        if list.is_empty() {
            st.cache.remove(&cap);
        }
    }
}

// As in MLX, these cover every allocator in use: the host's and, when GPUs are in use, their
// device memory (`backend::cuda::memory_stats` gives one GPU's share).

/// Bytes held by live buffers (host and GPUs).
pub fn active_memory() -> usize {
    state().active + crate::backend::cuda::totals().0
}
/// The highest `active_memory` since start or the last `reset_peak_memory` (host and GPU peaks
/// added).
pub fn peak_memory() -> usize {
    state().peak + crate::backend::cuda::totals().1
}
pub fn reset_peak_memory() {
    let mut st = state();
    st.peak = st.active;
    crate::backend::cuda::reset_peaks();
}
/// Bytes held in the caches of freed buffers (host and GPUs).
pub fn cache_memory() -> usize {
    state().cached + crate::backend::cuda::totals().2
}
/// Returns cached memory to the system (and the GPUs' caches to their drivers).
pub fn clear_cache() {
    drop_cache(&mut state(), usize::MAX);
    crate::backend::cuda::clear_all_caches();
}
/// Sets the limit on active memory, for the host and every GPU; returns the previous host
/// limit. Allocations that would exceed it fail with `ErrorKind::OutOfMemory`.
pub fn set_memory_limit(limit: usize) -> usize {
    crate::backend::cuda::set_all_limits(limit);
    let mut st = state();
    std::mem::replace(&mut st.memory_limit, limit)
}
pub fn memory_limit() -> usize {
    state().memory_limit
}
/// Sets the cache limit; returns the previous one. The cache shrinks at once if needed.
pub fn set_cache_limit(limit: usize) -> usize {
    let mut st = state();
    let old = std::mem::replace(&mut st.cache_limit, limit);
    drop_cache(&mut st, limit);
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large blocks are aligned for huge pages (when on), smaller ones keep the plain
    /// alignment, and both go back to the system with the layout they were allocated with
    /// (through the cache and `clear_cache`).
    #[test]
    fn large_blocks_are_aligned_for_huge_pages() {
        for bytes in [100usize, 64 << 10, HUGE - 1, HUGE, 3 * HUGE + 5] {
            let mut b = Buffer::alloc(bytes).unwrap();
            let want = if round_capacity(bytes) >= HUGE && huge_pages() { HUGE } else { ALIGN };
            assert_eq!(b.as_ptr() as usize % want, 0, "{bytes} bytes: pointer {:p}", b.as_ptr());
            b.bytes_mut().fill(1);
            assert!(b.bytes().iter().all(|&v| v == 1));
        }
        clear_cache();
    }

    /// A freed block serves a request a little smaller than itself (a buffer that grows or
    /// shrinks by a few pages from step to step) but not one of half its size, which would
    /// hold twice its bytes for as long as it lives.
    #[test]
    fn cached_blocks_serve_only_requests_close_to_their_size() {
        assert_eq!(reuse_limit(8 << 20, PAGE), (8 << 20) + (1 << 20));
        assert_eq!(reuse_limit(PAGE, PAGE), 2 * PAGE);
        assert_eq!(reuse_limit(64 << 10, PAGE), (64 << 10) + 2 * PAGE);
        // An odd size no other test asks for, so its block stays ours between the requests.
        let bytes = (8 << 20) + 12_345;
        let a = Buffer::alloc(bytes).unwrap();
        let pa = a.as_ptr() as usize;
        drop(a);
        let half = Buffer::alloc(bytes / 2).unwrap();
        assert_ne!(half.as_ptr() as usize, pa, "a request of half the size took the freed block");
        let near = Buffer::alloc(bytes - 3 * PAGE).unwrap();
        assert_eq!(near.as_ptr() as usize, pa, "a request three pages smaller did not reuse the freed block");
        drop((half, near));
        clear_cache();
    }
}
