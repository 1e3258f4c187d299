//! Executable memory for JIT code: mapped writable, filled, then switched to read + execute
//! (never both at once). Kernels live for the process (they are cached and few), so the
//! mapping is released only when a `Code` is dropped.

pub struct Code {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is immutable (read + execute) once `new` returns.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Code {
    /// Maps `bytes` as position-independent machine code; None if the system refuses.
    pub fn new(bytes: &[u8]) -> Option<Code> {
        if bytes.is_empty() {
            return None;
        }
        let page = 4096;
        let len = bytes.len().div_ceil(page) * page;
        // SAFETY: a fresh anonymous private mapping, written only within its length before it
        // becomes executable.
        unsafe {
            let ptr =
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            if ptr == libc::MAP_FAILED {
                return None;
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as *mut u8, bytes.len());
            if libc::mprotect(ptr, len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                libc::munmap(ptr, len);
                return None;
            }
            Some(Code { ptr, len })
        }
    }

    pub fn entry(&self) -> *const u8 {
        self.ptr as *const u8
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}
