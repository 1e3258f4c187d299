//! Affine-quantized matmul and dequantization on the GPU (kernels/quantized.cu).
//!
//! `quantized_matmul` with a transposed 2-d weight and at most `QMV_ROWS` rows of x (decoding)
//! runs the fused mat-vec kernel, which reads each packed weight once; larger products
//! dequantize the weight into the activations' dtype and multiply with cuBLAS (the weight is
//! read once either way and tensor cores do the arithmetic). The float modes (mxfp4, mxfp8,
//! nvfp4), batched weights and `gather_qmm` still run on the CPU.

use super::compiler::{bounded_function, env_pair, template_function, Args, Family};
use super::device::Gpu;
use super::elementwise::{contiguous, storage};
use super::fast::{dptr, dt_code, output};
use super::matmul::gemm;
use super::matvec::{k_split, WARPS};
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::{QuantMode, QuantParams, QuantizedOp};
use crate::shape::row_major_strides;

const QUANTIZED: Family = Family { file: "quantized.cu", text: include_str!("kernels/quantized.cu") };
const QMV4: Family = Family { file: "qmv4.cu", text: include_str!("kernels/qmv4.cu") };

/// Rows of x up to which the mat-vec kernel runs.
const QMV_ROWS: usize = 8;

pub(crate) fn eval(g: &Gpu, op: &QuantizedOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let out = match op {
        QuantizedOp::Dequantize { p, .. } if p.mode == QuantMode::Affine => dequantize(g, p, &inputs[0], &inputs[1], &inputs[2])?,
        QuantizedOp::Matmul { p, transpose } if p.mode == QuantMode::Affine => matmul(g, p, *transpose, inputs, &specs[0])?,
        _ => None,
    };
    Ok(out.map(|d| vec![d]))
}

/// The float matrix of affine codes, in the scales' dtype.
fn dequantize(g: &Gpu, p: &QuantParams, wq: &Data, scales: &Data, biases: &Data) -> Result<Option<Data>> {
    let dt = scales.dtype;
    let Some(code) = dt_code(dt) else { return Ok(None) };
    if biases.dtype != dt || !(2..=8).contains(&p.bits) {
        return Ok(None);
    }
    let (Some(w), Some(s), Some(b)) = (contiguous(g, wq)?, contiguous(g, scales)?, contiguous(g, biases)?) else { return Ok(None) };
    let mut shape = w.shape.clone();
    let last = shape.len() - 1;
    shape[last] = shape[last] * 32 / p.bits;
    let ty = storage(dt).unwrap_or("float");
    let f = template_function(
        g,
        QUANTIZED,
        &format!("dequantize_affine_{code}"),
        || format!("{ty}* out, const unsigned char* w, const {ty}* scales, const {ty}* biases, long long n, int bits, int gs"),
        || format!("dequantize_affine<{code}>(out, w, scales, biases, n, bits, gs)"),
    )?;
    let (out, optr) = output(g, &shape, dt)?;
    let n = out.size();
    if n > 0 {
        let blocks = n.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        Args::new()
            .arg(optr)
            .arg(dptr(g, &w)?)
            .arg(dptr(g, &s)?)
            .arg(dptr(g, &b)?)
            .arg(n as i64)
            .arg(p.bits as i32)
            .arg(p.group_size as i32)
            .launch(g, &f, (blocks, 1), 256)?;
    }
    Ok(Some(out))
}

fn matmul(g: &Gpu, p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Option<Data>> {
    let (x, wq, scales) = (&inputs[0], &inputs[1], &inputs[2]);
    let Some(biases) = inputs.get(3) else { return Ok(None) };
    let dt = x.dtype;
    if dt_code(dt).is_none() || scales.dtype != dt || spec.1 != dt || wq.ndim() != 2 {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let k = *x.shape.last().unwrap_or(&0);
    let m = if k == 0 { 0 } else { x.size() / k };
    let n = *spec.0.last().unwrap_or(&0);
    if m == 0 || n == 0 || k == 0 {
        return Ok(None); // empty products: the CPU's definition
    }
    if transpose && m <= QMV_ROWS {
        if let Some(out) = qmv(g, p, &x, wq, scales, biases, m, n, k, spec)? {
            return Ok(Some(out));
        }
    }
    let Some(w) = dequantize(g, p, wq, scales, biases)? else { return Ok(None) };
    let xm = x.view(vec![m, k], vec![k as isize, 1], x.offset);
    // transpose: x @ Wᵀ with W [n, k]; otherwise x @ W with W [k, n].
    let wv = if transpose { w.view(vec![k, n], vec![1, k as isize], 0) } else { w };
    let Some(out) = gemm(g, &xm, &wv, &[m, n], dt, 1.0)? else { return Ok(None) };
    Ok(Some(out.view(spec.0.clone(), row_major_strides(&spec.0), 0)))
}

#[allow(clippy::too_many_arguments)]
fn qmv(
    g: &Gpu,
    p: &QuantParams,
    x: &Data,
    wq: &Data,
    scales: &Data,
    biases: &Data,
    m: usize,
    n: usize,
    k: usize,
    spec: &Spec,
) -> Result<Option<Data>> {
    let (bits, gs) = (p.bits, p.group_size);
    if ![2, 4, 8].contains(&bits) {
        return Ok(None);
    }
    // Codes per 16-byte chunk: a chunk must sit inside one group and rows must hold whole chunks.
    let vpc = 128 / bits;
    if gs % vpc != 0 || k % gs != 0 {
        return Ok(None);
    }
    let (Some(w), Some(s), Some(b)) = (contiguous(g, wq)?, contiguous(g, scales)?, contiguous(g, biases)?) else { return Ok(None) };
    let (xp, wp) = (dptr(g, x)?, dptr(g, &w)?);
    if xp % 16 != 0 || wp % 16 != 0 {
        return Ok(None);
    }
    let dt = x.dtype;
    let code = dt_code(dt).unwrap_or(0);
    if bits == 4 {
        if let Some(out) = qmv4(g, gs, x, &w, &s, &b, m, n, k, spec)? {
            return Ok(Some(out));
        }
    }
    // Output columns per warp group (R: more share each x load) and 16-byte chunks of each in flight
    // per lane (U: enough bytes outstanding to cover DRAM latency; a 4-bit row of 4096 is then
    // one round trip).
    let (r, u) = qmv_shape();
    let w = k_split(k / vpc, u);
    let ty = storage(dt).unwrap_or("float");
    let f = template_function(
        g,
        QUANTIZED,
        &format!("qmv_{code}_{bits}_{gs}_{m}_{r}_{u}_{w}"),
        || format!("{ty}* out, const {ty}* x, const unsigned int* w, const {ty}* scales, const {ty}* biases, long long n, long long k"),
        || format!("qmv<{code}, {bits}, {gs}, {m}, {r}, {u}, {w}>(out, x, w, scales, biases, n, k)"),
    )?;
    let (out, optr) = output(g, &spec.0, dt)?;
    let blocks = n.div_ceil(r * (WARPS / w)) as u32;
    Args::new().arg(optr).arg(xp).arg(wp).arg(dptr(g, &s)?).arg(dptr(g, &b)?).arg(n as i64).arg(k as i64).launch(
        g,
        &f,
        (blocks, 1),
        32 * WARPS as u32,
    )?;
    Ok(Some(out))
}

/// The 4-bit mat-vec of 16-bit x on the tensor cores with a streaming register ring
/// (kernels/qmv4.cu), when it applies: 4 bits, bfloat16 or float16 x, groups of 32, 64 or 128,
/// rows of whole stages, aligned operands. `OXMX_QMV4=0` turns it off (the float kernel, for
/// comparison); `OXMX_QMV4_SHAPE=U,T` sets the ring depth and tiles per warp and `OXMX_QMV4_W`
/// the warps that split each row (tuning on a device).
#[allow(clippy::too_many_arguments)]
fn qmv4(g: &Gpu, gs: usize, x: &Data, w: &Data, s: &Data, b: &Data, m: usize, n: usize, k: usize, spec: &Spec) -> Result<Option<Data>> {
    // Codes of each row per stage: 64 bytes, so that a ring of three stages fits the register
    // budget of two 8-warp blocks per SM (124 registers, ptxas on sm_90).
    const SC: usize = 128;
    let dt = x.dtype;
    let Some(code @ (1 | 2)) = dt_code(dt) else { return Ok(None) };
    let staged = qmv4_staged();
    // Codes of each row per stage (the staged kernel's stages are 128-byte runs).
    let sc = if staged { 256 } else { SC };
    if !qmv4_enabled() || ![32, 64, 128].contains(&gs) || k % sc != 0 || s.dtype != dt || b.dtype != dt {
        return Ok(None);
    }
    let (xp, wp, sp, bp) = (dptr(g, x)?, dptr(g, w)?, dptr(g, s)?, dptr(g, b)?);
    // Scales and biases are read as vectors of a stage's SC / gs values.
    let sv = (2 * sc / gs) as u64;
    if xp % 16 != 0 || wp % 16 != 0 || sp % sv != 0 || bp % sv != 0 {
        return Ok(None);
    }
    let (u, t) = qmv4_shape();
    // Warps per block: the staged kernel's rings (S stages of 2.8-3.2 KB per warp) must fit the
    // 48 KB of static shared memory a block may have.
    let (bw, stages) = if staged {
        // OXMX_QMV4_RING=BW,S overrides (tuning on a device) within the 48 KB.
        static RING: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
        let stage_bytes = if gs == 128 { 3200 } else { 2816 };
        match *RING.get_or_init(|| env_pair("OXMX_QMV4_RING")) {
            Some((bw, s)) if [4, 8].contains(&bw) && s >= 2 && bw * (s * stage_bytes + 512) <= 49152 => (bw, s),
            _ => (4, if gs == 128 { 3 } else { 4 }),
        }
    } else {
        (WARPS, u)
    };
    let t = if staged { 1 } else { t };
    let tiles = n.div_ceil(16).div_ceil(t);
    // Split rows over W warps only as far as needed to give every SM about two blocks of work:
    // a warp streams its slice through the ring, and longer slices keep it streaming.
    let target = 12 * g.sm_count as usize;
    let wsplit = qmv4_warps().unwrap_or_else(|| {
        let mut w = 1;
        while w < bw && tiles * w < target {
            w *= 2;
        }
        w
    });
    // Scales through L1 (`OXMX_QMV4_SL=0`: past it, as the weights go; for comparison).
    static KEEP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let keep = *KEEP.get_or_init(|| std::env::var("OXMX_QMV4_SL").map_or(true, |v| v != "0"));
    let ty = storage(dt).unwrap_or("float");
    let params = || format!("{ty}* out, const {ty}* x, const unsigned int* w, const {ty}* scales, const {ty}* biases, long long n, long long k, int m");
    let f = if staged {
        template_function(
            g,
            QMV4,
            &format!("qmv4s_{code}_{gs}_{bw}_{stages}_{wsplit}"),
            params,
            || format!("qmv4s<{code}, {gs}, {bw}, {stages}, {wsplit}>(out, x, w, scales, biases, n, k, m)"),
        )?
    } else {
        bounded_function(
            g,
            QMV4,
            &format!("qmv4_{code}_{gs}_{SC}_{t}_{u}_{wsplit}_{keep}"),
            (32 * WARPS as u32, 2),
            params,
            || format!("qmv4<{code}, {gs}, {SC}, {t}, {u}, {wsplit}, {keep}>(out, x, w, scales, biases, n, k, m)"),
        )?
    };
    let (out, optr) = output(g, &spec.0, dt)?;
    let blocks = tiles.div_ceil(bw / wsplit) as u32;
    Args::new().arg(optr).arg(xp).arg(wp).arg(sp).arg(bp).arg(n as i64).arg(k as i64).arg(m as i32).launch(
        g,
        &f,
        (blocks, 1),
        32 * bw as u32,
    )?;
    Ok(Some(out))
}

fn qmv4_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_QMV4").map_or(true, |v| v != "0"))
}

/// (U, T): stages in each warp's ring and 16-row tiles per warp.
fn qmv4_shape() -> (usize, usize) {
    static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| env_pair("OXMX_QMV4_SHAPE")).unwrap_or((3, 1))
}

/// Whether the weights go through shared memory (`qmv4s`; `OXMX_QMV4_STAGED=0`: the register
/// ring, `qmv4`).
fn qmv4_staged() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_QMV4_STAGED").map_or(true, |v| v != "0"))
}

fn qmv4_warps() -> Option<usize> {
    static W: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *W.get_or_init(|| std::env::var("OXMX_QMV4_W").ok()?.parse().ok().filter(|w: &usize| [1, 2, 4, 8].contains(w)))
}

/// (R, U) of the mat-vec kernel. `OXMX_QMV_SHAPE=R,U` overrides it (kernel tuning on a device).
fn qmv_shape() -> (usize, usize) {
    static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| env_pair("OXMX_QMV_SHAPE")).unwrap_or((2, 4))
}
