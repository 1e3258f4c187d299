//! One GPU: its CUDA context, the stream every oxmx stream of the device runs on, the cuBLAS
//! handle and the cache of compiled kernels.
//!
//! The driver, NVRTC and cuBLAS are loaded at run time (cudarc's `dynamic-loading`), so the
//! same binary runs on machines without CUDA; `available()` only says yes when the driver
//! library loads and reports a device.

use crate::error::{Error, Result};
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

pub(crate) struct Gpu {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    /// All of this device's work is ordered on one stream: kernels, copies and frees then need
    /// no events between them. (Several oxmx streams on one GPU still run their host-side
    /// scheduling concurrently.)
    pub stream: Arc<CudaStream>,
    /// Device-to-host reads issued while another thread's task is capturing `stream` (graph.rs).
    pub read_stream: Arc<CudaStream>,
    /// `sm_XY` for NVRTC.
    pub arch: &'static str,
    /// Compute capability 9.0 (H100, H200): kernels using Hopper's architecture-specific
    /// instructions (wgmma) can be compiled for the `sm_90a` target.
    pub sm90a: bool,
    pub sm_count: u32,
    pub total_mem: usize,
    /// Kernels launch with programmatic dependent launch (compiler.rs, `launch_grid`): compute
    /// capability 9.0 and later, unless `OXMX_PDL=0`.
    pub pdl: bool,
    pub blas: Mutex<Option<super::matmul::BlasHandle>>,
    pub kernels: Mutex<HashMap<String, CudaFunction>>,
    /// CUDA graph capture of batched ops (graph.rs); also orders every use of the stream.
    pub capture: Mutex<super::graph::Capture>,
    /// Signalled after each graph launch (readers on other threads wait for it).
    pub capture_launched: Condvar,
    /// Pinned host buffers for small device-to-host reads, one per concurrent reader (memory.rs).
    pub staging: Mutex<Vec<super::memory::Staging>>,
}

// The raw handles inside are used under the context binding each entry point makes.
unsafe impl Send for Gpu {}
unsafe impl Sync for Gpu {}

/// Whether the CUDA driver library can be loaded (without loading it into a panic).
fn driver_present() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { sys::is_culib_present() }
}

/// The number of CUDA devices (0 without a driver or a device).
pub fn device_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        if std::env::var_os("OXMX_DISABLE_GPU").is_some() || !driver_present() {
            return 0;
        }
        if cudarc::driver::result::init().is_err() {
            return 0;
        }
        CudaContext::device_count().map(|n| n.max(0) as usize).unwrap_or(0)
    })
}

/// The device `ordinal`, created on first use and bound to the calling thread.
pub(crate) fn gpu(ordinal: usize) -> Result<&'static Gpu> {
    super::timed("~gpu() lookup", || gpu_untimed(ordinal))
}

/// One slot per device, read without a lock (every kernel launch looks its device up; the
/// mutex this replaced cost ~0.5 µs a lookup); a mutex only orders creation.
static SLOTS: OnceLock<Vec<OnceLock<&'static Gpu>>> = OnceLock::new();

/// The device `ordinal` if something already created it (bound to the calling thread), without
/// creating it: for reports that must not start a GPU a run never used.
pub(crate) fn existing(ordinal: usize) -> Option<&'static Gpu> {
    let g = *SLOTS.get()?.get(ordinal)?.get()?;
    g.ctx.bind_to_thread().ok()?;
    Some(g)
}

fn gpu_untimed(ordinal: usize) -> Result<&'static Gpu> {
    static CREATING: Mutex<()> = Mutex::new(());
    let n = device_count();
    if ordinal >= n {
        return Err(Error::runtime(if n == 0 {
            format!("[gpu] gpu {ordinal} was asked for but no CUDA device is available (driver library or device missing)")
        } else {
            format!("[gpu] gpu {ordinal} does not exist ({n} CUDA device(s))")
        }));
    }
    let slot = &SLOTS.get_or_init(|| (0..n).map(|_| OnceLock::new()).collect())[ordinal];
    if let Some(&g) = slot.get() {
        g.ctx.bind_to_thread().map_err(|e| cuda_err("binding the context", e))?;
        return Ok(g);
    }
    let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&g) = slot.get() {
        g.ctx.bind_to_thread().map_err(|e| cuda_err("binding the context", e))?;
        return Ok(g);
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("creating the context", e))?;
    let stream = ctx.new_stream().map_err(|e| cuda_err("creating a stream", e))?;
    let read_stream = ctx.new_stream().map_err(|e| cuda_err("creating a stream", e))?;
    let (major, minor) = ctx.compute_capability().map_err(|e| cuda_err("reading the compute capability", e))?;
    let sm_count = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| cuda_err("reading the multiprocessor count", e))? as u32;
    let total_mem = ctx.total_mem().map_err(|e| cuda_err("reading the memory size", e))?;
    let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
    let pdl = major >= 9 && std::env::var("OXMX_PDL").map_or(true, |v| v != "0");
    let g: &'static Gpu = Box::leak(Box::new(Gpu {
        ordinal,
        ctx,
        stream,
        arch,
        sm90a: (major, minor) == (9, 0),
        sm_count,
        total_mem,
        pdl,
        blas: Mutex::new(None),
        kernels: Mutex::new(HashMap::new()),
        capture: Mutex::new(Default::default()),
        capture_launched: Condvar::new(),
        staging: Mutex::new(Vec::new()),
        read_stream,
    }));
    let _ = slot.set(g);
    Ok(g)
}

/// A driver error as an oxmx error naming what was being done.
pub(crate) fn cuda_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::runtime(format!("[gpu] {what} failed: {e:?}"))
}

impl Gpu {
    pub fn cu_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// Waits for all work queued on this device (captured work is launched first).
    pub fn synchronize(&self) -> Result<()> {
        super::graph::outside_capture(self, "~graph flush: synchronize", || {
            self.stream.synchronize().map_err(|e| cuda_err("synchronizing the stream", e))
        })
    }
}
