//! Kernels are CUDA C compiled by NVRTC for the device's architecture on first use, cached in
//! memory per process and as PTX on disk across runs (`$OXMX_CACHE_DIR` or
//! `~/.cache/oxmx/cuda`), keyed by a hash of the source and the architecture.

use super::device::{cuda_err, Gpu};
use crate::error::{Error, Result};
use cudarc::driver::CudaFunction;
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::path::PathBuf;

/// Helpers every kernel source starts with (half / bfloat16 conversions, index arithmetic).
const COMMON: &str = include_str!("kernels/common.cuh");

/// FNV-1a: a stable hash for cache file names (std's hasher may change between releases).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
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

/// The kernel `name` from `body` (COMMON is prepended), compiled once per device.
pub(crate) fn function(g: &Gpu, name: &str, body: &str) -> Result<CudaFunction> {
    let key = format!("{name}:{:016x}", fnv(&[body]));
    if let Some(f) = g.kernels.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(f.clone());
    }
    let src = format!("{COMMON}\n{body}");
    let ptx = ptx_for(g, name, &src)?;
    let module = g.ctx.load_module(ptx).map_err(|e| cuda_err(&format!("loading kernel {name}"), e))?;
    let f = module.load_function(name).map_err(|e| cuda_err(&format!("finding kernel {name}"), e))?;
    g.kernels.lock().unwrap_or_else(|p| p.into_inner()).insert(key, f.clone());
    Ok(f)
}

fn ptx_for(g: &Gpu, name: &str, src: &str) -> Result<Ptx> {
    let file = cache_dir().map(|d| d.join(format!("{name}-{}-{:016x}.ptx", g.arch, fnv(&[src, g.arch]))));
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        return Ok(Ptx::from_src(text));
    }
    if !nvrtc_present() {
        return Err(Error::runtime(
            "[gpu] NVRTC (libnvrtc) could not be loaded: add the CUDA toolkit's lib folder to LD_LIBRARY_PATH".to_string(),
        ));
    }
    let opts = CompileOptions { arch: Some(g.arch), options: vec!["--std=c++17".into()], ..Default::default() };
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

/// Launches `f` over `n` threads' worth of grid-stride work with `params` (pointers to each
/// argument's value, in order).
pub(crate) fn launch(g: &Gpu, f: &CudaFunction, n: usize, params: &mut [*mut std::ffi::c_void]) -> Result<()> {
    const THREADS: usize = 256;
    let blocks = n.div_ceil(THREADS).clamp(1, g.sm_count as usize * 32);
    launch_grid(g, f, blocks as u32, THREADS as u32, 0, params)
}

pub(crate) fn launch_grid(
    g: &Gpu,
    f: &CudaFunction,
    blocks: u32,
    threads: u32,
    shared: u32,
    params: &mut [*mut std::ffi::c_void],
) -> Result<()> {
    // SAFETY: the callers pass parameter lists that match their kernels' signatures, with
    // device pointers to blocks that stay alive while the stream uses them.
    unsafe { cudarc::driver::result::launch_kernel(f.cu_function(), (blocks, 1, 1), (threads, 1, 1), shared, g.cu_stream(), params) }
        .map_err(|e| cuda_err("launching a kernel", e))
}
