//! Kernels are CUDA C compiled by NVRTC for the device's architecture on first use, cached in
//! memory per process and as PTX on disk across runs (`$OXMX_CACHE_DIR` or
//! `~/.cache/oxmx/cuda`), keyed by a hash of the source and the architecture.

use super::device::{cuda_err, Gpu};
use crate::error::{Error, Result};
use cudarc::driver::{sys, CudaFunction};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::path::PathBuf;

/// Helpers every kernel source starts with (half / bfloat16 conversions, index arithmetic).
const COMMON: Family = Family { file: "common.cuh", text: include_str!("kernels/common.cuh") };

/// A kernel source file of `kernels/`, built into the binary. With `OXMX_CUDA_KERNELS_DIR` set
/// (kernel development), the file of that name in that folder is read instead, so a kernel can
/// be changed and rerun without rebuilding the crate (the on-disk PTX cache is keyed by the
/// source, so the change is compiled).
#[derive(Clone, Copy)]
pub(crate) struct Family {
    pub file: &'static str,
    pub text: &'static str,
}

impl Family {
    fn source(&self) -> std::borrow::Cow<'static, str> {
        if let Some(dir) = std::env::var_os("OXMX_CUDA_KERNELS_DIR") {
            if let Ok(t) = std::fs::read_to_string(PathBuf::from(dir).join(self.file)) {
                return t.into();
            }
        }
        self.text.into()
    }
}

/// FNV-1a: a stable hash for cache file names (std's hasher may change between releases).
pub(crate) fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h = fnv_step(h, b as u64);
        }
    }
    h
}

/// One FNV-1a step over a value.
pub(crate) fn fnv_step(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100000001b3)
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OXMX_CACHE_DIR") {
        return Some(PathBuf::from(d).join("cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/oxmx/cuda"))
}

/// Whether NVRTC can be loaded.
fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The kernel `name` if this device has compiled it already.
pub(crate) fn cached(g: &Gpu, name: &str) -> Option<CudaFunction> {
    super::timed("~kernel lookup", || g.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned())
}

/// The kernel `name`, compiled once per device from the source `body()` makes (COMMON is
/// prepended). `name` must determine the source (callers encode every parameter in it): the
/// source is only generated on a cache miss, which keeps a launch's host cost to a map lookup.
pub(crate) fn function(g: &Gpu, name: &str, body: impl FnOnce() -> String) -> Result<CudaFunction> {
    function_for(g, name, g.arch, body)
}

/// As `function`, compiled for target `arch` (e.g. `sm_90a`, whose architecture-specific
/// instructions such as wgmma the portable `sm_90` target lacks).
fn function_for(g: &Gpu, name: &str, arch: &'static str, body: impl FnOnce() -> String) -> Result<CudaFunction> {
    if let Some(f) = cached(g, name) {
        return Ok(f);
    }
    let src = kernel_source(name, body())?;
    let ptx = ptx_for(name, &src, arch)?;
    let module = g.ctx.load_module(ptx).map_err(|e| cuda_err(&format!("loading kernel {name}"), e))?;
    let f = module.load_function(name).map_err(|e| cuda_err(&format!("finding kernel {name}"), e))?;
    g.kernels.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), f.clone());
    Ok(f)
}

/// The whole source of kernel `name`: COMMON, then `body` with the grid dependency inserted.
fn kernel_source(name: &str, body: String) -> Result<String> {
    Ok(format!("{}\n{}", COMMON.source(), with_grid_dependency(name, body)?))
}

fn compile_options(arch: &'static str) -> CompileOptions {
    CompileOptions { arch: Some(arch), options: vec!["--std=c++17".into()], ..Default::default() }
}

/// `src` with `oxmx_grid_dependency()` (kernels/common.cuh) as the first statement of kernel
/// `name`, so that every kernel may be launched with programmatic dependent launch. Each
/// source defines its kernel as `extern "C" __global__ void name(params) {`, and parameter
/// lists hold no braces: the body starts at the first `{` after the name.
fn with_grid_dependency(name: &str, mut src: String) -> Result<String> {
    let head = format!("__global__ void {name}(");
    let body = src.find(&head).and_then(|at| src[at..].find('{').map(|b| at + b + 1));
    let Some(body) = body else {
        return Err(Error::runtime(format!("[gpu] kernel source for {name} does not define `__global__ void {name}(...)`")));
    };
    src.insert_str(body, " oxmx_grid_dependency();");
    Ok(src)
}

/// The kernel `name` from a templated family source (`kernels/*.cu`) and the one-line call
/// that instantiates it: `extern "C" __global__ void name(params()) { call(); }`. The two
/// strings are only built on a cache miss (this runs on every launch).
pub(crate) fn template_function(
    g: &Gpu,
    family: Family,
    name: &str,
    params: impl FnOnce() -> String,
    call: impl FnOnce() -> String,
) -> Result<CudaFunction> {
    template_function_bounded(g, family, name, None, params, call)
}

/// As `template_function_bounded`, compiled for target `arch` (see `function_for`).
pub(crate) fn template_function_for(
    g: &Gpu,
    family: Family,
    name: &str,
    arch: &'static str,
    bounds: Option<(u32, u32)>,
    params: impl FnOnce() -> String,
    call: impl FnOnce() -> String,
) -> Result<CudaFunction> {
    function_for(g, name, arch, || template_source(family, name, bounds, params(), call()))
}

/// As `template_function`, with `__launch_bounds__(threads, min_blocks)` on the kernel when
/// `bounds` is given (for kernels that need the register budget of exactly that occupancy).
pub(crate) fn template_function_bounded(
    g: &Gpu,
    family: Family,
    name: &str,
    bounds: Option<(u32, u32)>,
    params: impl FnOnce() -> String,
    call: impl FnOnce() -> String,
) -> Result<CudaFunction> {
    function(g, name, || template_source(family, name, bounds, params(), call()))
}

/// `family`'s source with kernel `name` defined as one call into it.
fn template_source(family: Family, name: &str, bounds: Option<(u32, u32)>, params: String, call: String) -> String {
    let lb = bounds.map(|(t, b)| format!("__launch_bounds__({t}, {b}) ")).unwrap_or_default();
    format!("{}\nextern \"C\" {lb}__global__ void {name}({params}) {{ {call}; }}\n", family.source())
}

fn ptx_for(name: &str, src: &str, arch: &'static str) -> Result<Ptx> {
    let file = cache_dir().map(|d| d.join(format!("{name}-{arch}-{:016x}.ptx", fnv(&[src, arch]))));
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        return Ok(Ptx::from_src(text));
    }
    if !nvrtc_present() {
        return Err(Error::runtime(
            "[gpu] NVRTC (libnvrtc) could not be loaded: add the CUDA toolkit's lib folder to LD_LIBRARY_PATH".to_string(),
        ));
    }
    let opts = compile_options(arch);
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts)
        .map_err(|e| Error::runtime(format!("[gpu] NVRTC could not compile kernel {name}: {e:?}")))?;
    if let Some(f) = &file {
        // The disk cache is an optimisation: failing to write it is not an error.
        if let Some(dir) = f.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, ptx.to_src()).is_ok() {
            let _ = std::fs::rename(&tmp, f);
        }
    }
    Ok(ptx)
}

/// Compiles kernel `name` from `body` as `function` would, for `arch`, without a device: `None`
/// when NVRTC cannot be loaded (tests of generated sources skip then).
#[cfg(test)]
pub(crate) fn compile_only(name: &str, body: String, arch: &'static str) -> Option<Result<()>> {
    if !nvrtc_present() {
        return None;
    }
    let src = match kernel_source(name, body) {
        Ok(src) => src,
        Err(e) => return Some(Err(e)),
    };
    let opts = compile_options(arch);
    Some(cudarc::nvrtc::compile_ptx_with_opts(&src, opts).map(|_| ()).map_err(|e| Error::runtime(format!("{name}: {e:?}"))))
}

/// Launches `f` over `n` threads' worth of grid-stride work with `params` (pointers to each
/// argument's value, in order).
pub(crate) fn launch(g: &Gpu, f: &CudaFunction, n: usize, params: &mut [*mut std::ffi::c_void]) -> Result<()> {
    const THREADS: usize = 256;
    let blocks = n.div_ceil(THREADS).clamp(1, g.sm_count as usize * 32);
    launch_grid(g, f, (blocks as u32, 1), THREADS as u32, 0, params)
}

pub(crate) fn launch_grid(
    g: &Gpu,
    f: &CudaFunction,
    blocks: (u32, u32),
    threads: u32,
    shared: u32,
    params: &mut [*mut std::ffi::c_void],
) -> Result<()> {
    // The graph cache keys on the kernel sequence only: grids change from step to step (the
    // attention kernel's splits grow with the cache) and cuGraphExecUpdate takes new ones.
    super::graph::launch_kernel(g, f.cu_function(), blocks, threads, shared, params, |params| {
        // SAFETY: the callers pass parameter lists that match their kernels' signatures, with
        // device pointers to blocks that stay alive while the stream uses them (the driver
        // copies the values at the call, captured or not).
        unsafe {
            if g.pdl {
                launch_dependent(f.cu_function(), blocks, threads, shared, g.cu_stream(), params)
            } else {
                cudarc::driver::result::launch_kernel(
                    f.cu_function(),
                    (blocks.0, blocks.1, 1),
                    (threads, 1, 1),
                    shared,
                    g.cu_stream(),
                    params,
                )
            }
        }
        .map_err(|e| cuda_err("launching a kernel", e))
    })
}

/// `cuLaunchKernelEx` with programmatic stream serialization allowed: the kernel's blocks may
/// be scheduled before the previous kernel on the stream has finished (each kernel waits for it
/// first, `oxmx_grid_dependency`), which hides the launch gap between dependent kernels, ~1 µs
/// of a few-µs decoding kernel. A capture turns it into a programmatic edge of the graph.
///
/// # Safety
/// As `cuLaunchKernel`: a live function of the current context and parameters matching it.
unsafe fn launch_dependent(
    f: sys::CUfunction,
    blocks: (u32, u32),
    threads: u32,
    shared: u32,
    stream: sys::CUstream,
    params: &mut [*mut std::ffi::c_void],
) -> std::result::Result<(), cudarc::driver::DriverError> {
    // SAFETY: a zeroed attribute is a valid bit pattern (a C union of integers).
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: blocks.0,
        gridDimY: blocks.1,
        gridDimZ: 1,
        blockDimX: threads,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: shared,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: the config and attribute live for the call; the caller vouches for f and params.
    unsafe { sys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut()) }.result()
}

/// Kernel arguments by value, in order (the driver copies each from its pointer at launch).
#[derive(Default)]
pub(crate) struct Args(Vec<Box<[u8]>>);

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    /// Appends `v` (a plain value whose layout matches the kernel parameter: integers, floats,
    /// device pointers as u64, `#[repr(C)]` structs).
    pub fn arg<T: Copy + 'static>(mut self, v: T) -> Args {
        // SAFETY: reads the bytes of a Copy value that lives for the call.
        let bytes = unsafe { std::slice::from_raw_parts(&v as *const T as *const u8, std::mem::size_of::<T>()) };
        self.0.push(bytes.to_vec().into_boxed_slice());
        self
    }

    /// Launches `f` with these arguments.
    pub fn launch(self, g: &Gpu, f: &CudaFunction, blocks: (u32, u32), threads: u32) -> Result<()> {
        self.launch_shared(g, f, blocks, threads, 0)
    }

    /// Launches `f` with these arguments and `shared` bytes of dynamic shared memory (above
    /// 48 KB the kernel is allowed that much first, as the driver requires).
    pub fn launch_shared(mut self, g: &Gpu, f: &CudaFunction, blocks: (u32, u32), threads: u32, shared: u32) -> Result<()> {
        if shared > 48 * 1024 {
            let attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
            f.set_attribute(attr, shared as i32).map_err(|e| cuda_err("allowing a kernel its shared memory", e))?;
        }
        let mut ptrs: Vec<*mut std::ffi::c_void> = self.0.iter_mut().map(|b| b.as_mut_ptr() as *mut std::ffi::c_void).collect();
        launch_grid(g, f, blocks, threads, shared, &mut ptrs)
    }
}

/// A kernel-tuning override `R,U` from the environment (each in 1..=8), for trying launch
/// shapes on a device without rebuilding.
pub(crate) fn env_pair(name: &str) -> Option<(usize, usize)> {
    let v = std::env::var(name).ok()?;
    let (a, b) = v.split_once(',')?;
    let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((1..=8).contains(&a) && (1..=8).contains(&b)).then_some((a, b))
}
