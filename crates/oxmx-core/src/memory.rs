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

fn round_capacity(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else if bytes < PAGE {
        bytes.div_ceil(SMALL_GRANULE) * SMALL_GRANULE
    } else {
        bytes.div_ceil(PAGE) * PAGE
    }
}

/// A block of host memory that an evaluated array reads from: either owned by the allocator or a
/// window into a memory-mapped file (zero-copy loading).
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    storage: Storage,
}

enum Storage {
    Heap { capacity: usize },
    Mapped(#[allow(dead_code)] Arc<memmap2::Mmap>),
    Static,
}

// A Buffer owns its memory (or keeps its mapping alive); shared reads are synchronised by the
// graph (a node's buffer is written once, before it becomes Ready).
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// Allocates `bytes` bytes (uninitialised contents). Fails with `OutOfMemory` above the limit.
    pub fn alloc(bytes: usize) -> Result<Buffer> {
        let capacity = round_capacity(bytes);
        if capacity == 0 {
            return Ok(Buffer { ptr: NonNull::<u64>::dangling().cast(), len: 0, storage: Storage::Static });
        }
        let mut st = state();
        // Reuse a cached block of at least this size but not wastefully larger.
        let hit = st.cache.range_mut(capacity..=capacity.saturating_mul(2).max(capacity + PAGE)).next().map(|(c, v)| (*c, v.pop()));
        if let Some((cap, Some(p))) = hit {
            if st.cache.get(&cap).is_some_and(|v| v.is_empty()) {
                st.cache.remove(&cap);
            }
            st.cached -= cap;
            st.active += cap;
            st.peak = st.peak.max(st.active);
            return Ok(Buffer { ptr: p.0, len: bytes, storage: Storage::Heap { capacity: cap } });
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
        let layout = Layout::from_size_align(capacity, ALIGN)
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
        st.active += capacity;
        st.peak = st.peak.max(st.active);
        Ok(Buffer { ptr, len: bytes, storage: Storage::Heap { capacity } })
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
        Ok(Buffer { ptr, len, storage: Storage::Mapped(map) })
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the buffer's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    /// Mutable access: only for a buffer still owned by the kernel that fills it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(!self.is_mapped(), "mapped buffers are read-only");
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Storage::Heap { capacity } = self.storage {
            let mut st = state();
            st.active -= capacity;
            if st.cached + capacity <= st.cache_limit {
                st.cached += capacity;
                st.cache.entry(capacity).or_default().push(SendPtr(self.ptr));
            } else {
                unsafe { alloc::dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(capacity, ALIGN)) };
            }
        }
    }
}

fn drop_cache(st: &mut State, max_keep: usize) {
    // Free largest blocks first until at most `max_keep` bytes stay cached.
    let target = if max_keep == usize::MAX { 0 } else { max_keep };
    while st.cached > target {
        let Some((&cap, _)) = st.cache.iter().next_back() else { break };
        let list = st.cache.get_mut(&cap).unwrap();
        if let Some(p) = list.pop() {
            unsafe { alloc::dealloc(p.0.as_ptr(), Layout::from_size_align_unchecked(cap, ALIGN)) };
            st.cached -= cap;
        }
        if list.is_empty() {
            st.cache.remove(&cap);
        }
    }
}

/// Bytes held by live buffers.
pub fn active_memory() -> usize {
    state().active
}
/// The highest `active_memory` since start or the last `reset_peak_memory`.
pub fn peak_memory() -> usize {
    state().peak
}
pub fn reset_peak_memory() {
    let mut st = state();
    st.peak = st.active;
}
/// Bytes held in the cache of freed buffers.
pub fn cache_memory() -> usize {
    state().cached
}
/// Returns cached memory to the system.
pub fn clear_cache() {
    drop_cache(&mut state(), usize::MAX);
}
/// Sets the limit on active memory; returns the previous limit. Allocations that would exceed
/// it fail with `ErrorKind::OutOfMemory`.
pub fn set_memory_limit(limit: usize) -> usize {
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
