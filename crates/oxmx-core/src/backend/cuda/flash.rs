//! Flash attention (prefill) for half-precision heads of 64 or 128 without an array mask: the
//! scores never leave the chip. On compute capability 9.0 (H100, H200) the kernel of
//! kernels/flash_sm90.cu runs its products as warpgroup tensor-core instructions (wgmma)
//! straight from shared memory, its K and V tiles copied by TMA (cp.async where TMA cannot
//! describe K or V, or with `OXMX_FLASH_TMA=0`); elsewhere, or with `OXMX_FLASH_SM90=0`, the
//! mma.sync kernel of kernels/fast.cu does (its fragments pass through registers).

use super::compiler::{template_function_bounded, template_function_for, Args, Family};
use super::device::Gpu;
use super::elementwise::storage;
use super::fast::{dptr, output, Rows4, FAST};
use crate::error::Result;
use crate::graph::{Data, Spec};
use cudarc::driver::sys;

const FLASH_SM90: Family = Family { file: "flash_sm90.cu", text: include_str!("kernels/flash_sm90.cu") };

/// Query rows a block, in both kernels (FA_WARPS * FA_WROWS in fast.cu, FH_BR in flash_sm90.cu).
const ROWS: usize = 128;
/// Warps of the mma.sync kernel (FA_WARPS) and threads of the wgmma one (two consumer
/// warpgroups and a producer warpgroup).
const FA_WARPS: u32 = 4;
const FH_THREADS: u32 = 384;
/// Keys a tile of the wgmma kernel (FH_BC) and its stages of K and V tiles (FH_STAGES).
const FH_BC: usize = 128;
const FH_STAGES: usize = 3;

/// Attention's sizes: batch, query and key/value heads, query and key lengths, head size.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub hq: usize,
    pub hkv: usize,
    pub ql: usize,
    pub kl: usize,
    pub d: usize,
}

/// Whether the wgmma kernel may run (`OXMX_FLASH_SM90=0` keeps the mma.sync one, for comparing).
fn sm90_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_FLASH_SM90").map_or(true, |v| v != "0"))
}

/// Whether the wgmma kernel takes K and V by TMA (`OXMX_FLASH_TMA=0` copies them with cp.async,
/// for comparing).
fn tma_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_FLASH_TMA").map_or(true, |v| v != "0"))
}

/// The TMA descriptor of K or V (`x`, [B, Hkv, Lk, D] with dense rows, read in place from the
/// buffer at device address `ptr`) for flash_sm90_tma: the 4-D tensor (D, Lk, Hkv, B), innermost
/// first, copied in boxes of 64 elements x FH_BC rows with 128-byte swizzling (one swizzle atom
/// of a tile; rows past Lk come as zeros). `None` where TMA cannot read it (a start or a stride
/// that is not a multiple of 16 bytes) or the driver refuses the description.
fn tma_map(x: &Data, ptr: u64, dt: u32, n: Dims) -> Option<sys::CUtensorMap> {
    use sys::{CUtensorMapDataType as Ty, CUtensorMapFloatOOBfill as Oob, CUtensorMapInterleave as Il};
    use sys::{CUtensorMapL2promotion as L2, CUtensorMapSwizzle as Sw};
    let ty = match dt {
        1 => Ty::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        2 => Ty::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        _ => return None,
    };
    // The start and the byte strides of rows, heads and batches: multiples of 16 (strides below
    // 2^40), as TMA requires.
    let strides = [x.strides[2], x.strides[1], x.strides[0]].map(|s| s as i64 * 2);
    if x.offset < 0 || strides.iter().any(|&s| s < 0 || s % 16 != 0 || s >= 1 << 40) {
        return None;
    }
    let base = ptr.wrapping_add(x.offset as u64 * 2);
    if !base.is_multiple_of(16) {
        return None;
    }
    let strides = strides.map(|s| s as u64);
    let dims = [n.d as u64, n.kl as u64, n.hkv as u64, n.b as u64];
    let boxes = [64, FH_BC as u32, 1, 1];
    let steps = [1u32; 4];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::uninit();
    // SAFETY: the arrays hold the four dimensions (three strides) the rank names, and `map` is
    // the aligned CUtensorMap the driver writes; encoding reads no device memory.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            ty,
            4,
            base as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            Il::CU_TENSOR_MAP_INTERLEAVE_NONE,
            Sw::CU_TENSOR_MAP_SWIZZLE_128B,
            L2::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            Oob::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    // SAFETY: the driver filled the map when it reports success.
    (r == sys::CUresult::CUDA_SUCCESS).then(|| unsafe { map.assume_init() })
}

/// softmax(scale · Q Kᵀ (+ causal mask)) V for q [B, Hq, Lq, D] dense and k, v [B, Hkv, Lk, D]
/// read in place; `None` where the kernels do not apply (the caller falls back).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    g: &Gpu,
    dt: u32,
    q: &Data,
    k: &Data,
    v: &Data,
    sinks: u64,
    n: Dims,
    causal: bool,
    has_sinks: bool,
    scale: f32,
    spec: &Spec,
) -> Result<Option<Data>> {
    // K and V rows are copied 16 bytes at a time, so they must start on 8-element boundaries.
    let rows16 = |d: &Data| d.offset % 8 == 0 && d.strides[..3].iter().all(|s| s % 8 == 0);
    if !(rows16(k) && rows16(v)) || n.kl >= i32::MAX as usize || n.ql.div_ceil(ROWS) > 65535 {
        return Ok(None);
    }
    let ty = storage(q.dtype).unwrap_or("float");
    let d = n.d;
    let params = || {
        format!(
            "{ty}* out, const {ty}* q, const {ty}* k, const {ty}* v, const float* sinks, Rows4 ks, Rows4 vs, int hq, int hkv, \
             int ql, long long kl, float scale_log2"
        )
    };
    let call = |kernel: &str, maps: &str| {
        format!("{kernel}<{dt}, {d}, {causal}, {has_sinks}>(out, q, k, v, sinks, ks, vs, hq, hkv, ql, kl, scale_log2{maps})")
    };
    let (out, optr) = output(g, &spec.0, q.dtype)?;
    let (kptr, vptr) = (k.buffer.device_block(g.ordinal)?.ptr(), v.buffer.device_block(g.ordinal)?.ptr());
    let args = Args::new()
        .arg(optr)
        .arg(dptr(g, q)?)
        .arg(kptr)
        .arg(vptr)
        .arg(sinks)
        .arg(Rows4::of(k))
        .arg(Rows4::of(v))
        .arg(n.hq as i32)
        .arg(n.hkv as i32)
        .arg(n.ql as i32)
        .arg(n.kl as i64)
        .arg(scale * std::f32::consts::LOG2_E);
    let grid = ((n.b * n.hq) as u32, n.ql.div_ceil(ROWS) as u32);
    let tag = format!("{dt}_{d}_{}_{}", causal as u8, has_sinks as u8);
    if g.sm90a && sm90_enabled() {
        // Queries, then a K and a V tile a stage, unpadded; three mbarriers a stage (the
        // cp.async kernel uses two).
        let shared = (ROWS + 2 * FH_STAGES * FH_BC) * d * 2 + 24 * FH_STAGES;
        let maps = if tma_enabled() { tma_map(k, kptr, dt, n).zip(tma_map(v, vptr, dt, n)) } else { None };
        if let Some((km, vm)) = maps {
            let name = format!("flash_sm90_tma_{tag}");
            let params = || params() + ", const __grid_constant__ TmaMap km, const __grid_constant__ TmaMap vm";
            let call = || call("flash_sm90_tma", ", km, vm");
            let f = template_function_for(g, FLASH_SM90, &name, "sm_90a", Some((FH_THREADS, 1)), params, call)?;
            args.arg(km).arg(vm).launch_shared(g, &f, grid, FH_THREADS, shared as u32)?;
        } else {
            let name = format!("flash_sm90_{tag}");
            let f = template_function_for(g, FLASH_SM90, &name, "sm_90a", Some((FH_THREADS, 1)), params, || call("flash_sm90", ""))?;
            args.launch_shared(g, &f, grid, FH_THREADS, shared as u32)?;
        }
    } else {
        let name = format!("flash_attention_{tag}");
        let f = template_function_bounded(g, FAST, &name, Some((32 * FA_WARPS, 2)), params, || call("flash_attention", ""))?;
        // Queries, one key tile and one value tile, rows padded by 8 (FA_PAD in fast.cu).
        let shared = (ROWS + 2 * 64) * (d + 8) * 2;
        args.launch_shared(g, &f, grid, 32 * FA_WARPS, shared as u32)?;
    }
    Ok(Some(out))
}
