//! Affine-quantized matmul and dequantization on the GPU (kernels/quantized.cu).
//!
//! `quantized_matmul` with a transposed 2-d weight and at most `QMV_ROWS` rows of x (decoding)
//! runs a fused mat-vec kernel, which reads each packed weight once (`qmv1` for one row of x,
//! holding x in registers; `qmv` for up to eight rows and the shapes `qmv1` does not take); larger products
//! dequantize the weight into the activations' dtype and multiply with cuBLAS (the weight is
//! read once either way and tensor cores do the arithmetic). The float modes (mxfp4, mxfp8,
//! nvfp4), batched weights and `gather_qmm` still run on the CPU.

use super::compiler::{env_pair, template_function, template_function_bounded, Args, Family};
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

/// Rows of x up to which the mat-vec kernel runs.
const QMV_ROWS: usize = 8;

pub(crate) fn eval(g: &Gpu, op: &QuantizedOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let out = match op {
        QuantizedOp::Dequantize { p, .. } if p.mode == QuantMode::Affine => dequantize(g, p, &inputs[0], &inputs[1], &inputs[2])?,
        QuantizedOp::Matmul { p, transpose } if p.mode == QuantMode::Affine => matmul(g, p, *transpose, inputs, &specs[0])?,
        QuantizedOp::NormMatmul { p, eps } if p.mode == QuantMode::Affine => norm_matmul(g, p, *eps, inputs, &specs[0])?,
        QuantizedOp::SwigluMatmul { p } if p.mode == QuantMode::Affine => swiglu_matmul(g, p, inputs, &specs[0])?,
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

/// `(m, k, n)` of a product of `x` (`[..., k]`, flattened to m rows) into `spec` (`[..., n]`).
fn product_dims(x: &Data, spec: &Spec) -> (usize, usize, usize) {
    let k = *x.shape.last().unwrap_or(&0);
    (if k == 0 { 0 } else { x.size() / k }, k, *spec.0.last().unwrap_or(&0))
}

fn matmul(g: &Gpu, p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Option<Data>> {
    let (x, wq, scales) = (&inputs[0], &inputs[1], &inputs[2]);
    let Some(biases) = inputs.get(3) else { return Ok(None) };
    let dt = x.dtype;
    if dt_code(dt).is_none() || scales.dtype != dt || spec.1 != dt || wq.ndim() != 2 {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let (m, k, n) = product_dims(&x, spec);
    if m == 0 || n == 0 || k == 0 {
        return Ok(None); // empty products: the CPU's definition
    }
    if transpose && m == 1 && qmv1_on() {
        if let Some(out) = qmv1(g, p, &x, wq, scales, biases, n, k, Prologue::None, spec)? {
            return Ok(Some(out));
        }
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

/// `rms_norm(x, nw, eps) @ deq(w).T`: one row of x by `qmv1` normalising in its prologue;
/// otherwise the norm kernel, then the product as `matmul` runs it.
fn norm_matmul(g: &Gpu, p: &QuantParams, eps: f32, inputs: &[Data], spec: &Spec) -> Result<Option<Data>> {
    let (x, nw) = (&inputs[0], &inputs[1]);
    let dt = x.dtype;
    let Some(code) = dt_code(dt) else { return Ok(None) };
    if inputs[3].dtype != dt || spec.1 != dt || inputs[2].ndim() != 2 {
        return Ok(None);
    }
    let (m, k, n) = product_dims(x, spec);
    if m == 1 && n > 0 && qmv1_on() {
        if let (Some(xc), Some(nwc)) = (contiguous(g, x)?, contiguous(g, nw)?) {
            if dptr(g, &nwc)? % 16 == 0 {
                if let Some(out) = qmv1(g, p, &xc, &inputs[2], &inputs[3], &inputs[4], n, k, Prologue::Norm(&nwc, eps), spec)? {
                    return Ok(Some(out));
                }
            }
        }
    }
    let Some(normed) = super::fast::norm(g, code, &inputs[..2], eps, false, true, false)? else { return Ok(None) };
    matmul(g, p, true, &[normed, inputs[2].clone(), inputs[3].clone(), inputs[4].clone()], spec)
}

/// `(silu(gate) * up) @ deq(w).T`: one row by `qmv1` computing the activation as it loads the
/// row; otherwise the activation by its own kernel, then the product as `matmul` runs it.
fn swiglu_matmul(g: &Gpu, p: &QuantParams, inputs: &[Data], spec: &Spec) -> Result<Option<Data>> {
    let dt = inputs[0].dtype;
    let Some(code) = dt_code(dt) else { return Ok(None) };
    if inputs[1].dtype != dt || inputs[3].dtype != dt || spec.1 != dt || inputs[2].ndim() != 2 {
        return Ok(None);
    }
    let (Some(gc), Some(uc)) = (contiguous(g, &inputs[0])?, contiguous(g, &inputs[1])?) else { return Ok(None) };
    let (m, k, n) = product_dims(&gc, spec);
    if m == 1 && n > 0 && qmv1_on() && dptr(g, &uc)? % 16 == 0 {
        if let Some(out) = qmv1(g, p, &gc, &inputs[2], &inputs[3], &inputs[4], n, k, Prologue::Swiglu(&uc), spec)? {
            return Ok(Some(out));
        }
    }
    let ty = storage(dt).unwrap_or("float");
    let f = template_function(
        g,
        QUANTIZED,
        &format!("swiglu_flat_{code}"),
        || format!("{ty}* out, const {ty}* g, const {ty}* u, long long n"),
        || format!("swiglu_flat<{code}>(out, g, u, n)"),
    )?;
    let (h, hptr) = output(g, &gc.shape, dt)?;
    let size = h.size();
    if size > 0 {
        let blocks = size.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        Args::new().arg(hptr).arg(dptr(g, &gc)?).arg(dptr(g, &uc)?).arg(size as i64).launch(g, &f, (blocks, 1), 256)?;
    }
    matmul(g, p, true, &[h, inputs[2].clone(), inputs[3].clone(), inputs[4].clone()], spec)
}

/// What `qmv1` does to the row of x before the product (the `PRO` of kernels/quantized.cu).
#[derive(Clone, Copy)]
enum Prologue<'a> {
    None,
    /// RMS normalisation with this weight and epsilon.
    Norm(&'a Data, f32),
    /// x is the gate; silu(x) times this up projection.
    Swiglu(&'a Data),
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
    let Some((_w, s, b, xp, wp)) = mat_vec_operands(g, x, wq, scales, biases)? else { return Ok(None) };
    let dt = x.dtype;
    let code = dt_code(dt).unwrap_or(0);
    // Output columns per warp group (R: more share each x load) and 16-byte chunks of each in flight
    // per lane (U: enough bytes outstanding to cover DRAM latency; a 4-bit row of 4096 is then
    // one round trip).
    let (r, u) = qmv_shape();
    let w = k_split(k / vpc, u);
    let ty = storage(dt).unwrap_or("float");
    let memonly = memory_only() as i32;
    let f = template_function(
        g,
        QUANTIZED,
        &format!("qmv_{code}_{bits}_{gs}_{m}_{r}_{u}_{w}_{memonly}"),
        || format!("{ty}* out, const {ty}* x, const unsigned int* w, const {ty}* scales, const {ty}* biases, long long n, long long k"),
        || format!("qmv<{code}, {bits}, {gs}, {m}, {r}, {u}, {w}, {memonly}>(out, x, w, scales, biases, n, k)"),
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

/// Codes of a row that one warp of `qmv1` holds x for (32 lanes of 32 codes).
const QMV1_SLICE: usize = 1024;

/// One row of x against the quantized weight by `qmv1` (x held in registers, kernels/
/// quantized.cu): k split into slices of 1024 codes, one warp per slice, blocks streaming
/// contiguous ranges of rows. `None` when the shape does not fit it (the caller tries `qmv`).
#[allow(clippy::too_many_arguments)]
fn qmv1(
    g: &Gpu,
    p: &QuantParams,
    x: &Data,
    wq: &Data,
    scales: &Data,
    biases: &Data,
    n: usize,
    k: usize,
    pro: Prologue,
    spec: &Spec,
) -> Result<Option<Data>> {
    let (bits, gs) = (p.bits, p.group_size);
    // A lane's 32 codes are one aligned load inside one group; a block holds every slice of k.
    let slices = k.div_ceil(QMV1_SLICE);
    if ![2, 4, 8].contains(&bits) || gs % 32 != 0 || k % gs != 0 || slices > 32 {
        return Ok(None);
    }
    let Some((_w, s, b, xp, wp)) = mat_vec_operands(g, x, wq, scales, biases)? else { return Ok(None) };
    let dt = x.dtype;
    let code = dt_code(dt).unwrap_or(0);
    // Warps per slice (G): small k still gives a block of ~8 warps. Blocks per SM from the
    // target of resident warps (`__launch_bounds__` holds the registers to it).
    let per_slice = (8 / slices).max(1);
    let warps = slices * per_slice;
    let (u, eighths) = qmv1_shape();
    // 8-bit codes (twice the registers a row) and float32 x (codes converted with a subtraction):
    // half the rows in flight, so nothing spills at the default occupancy.
    let u = if bits == 8 || code == 0 { u.div_ceil(2) } else { u };
    let per_sm = (8 * eighths / warps).max(1);
    let threads = 32 * warps;
    // Rows per block: the whole grid resident at once, each warp with at least one row, the
    // warp sums within 48 KB of shared memory.
    let slots = g.sm_count as usize * per_sm;
    let rows = n.div_ceil(slots).max(per_slice).min(12 * 1024 / slices);
    let blocks = n.div_ceil(rows);
    let ty = storage(dt).unwrap_or("float");
    let pro_code = match pro {
        Prologue::None => 0,
        Prologue::Norm(..) => 1,
        Prologue::Swiglu(_) => 2,
    };
    // 4-bit codes against half-precision x: the dp4a products of x as int8 pairs (`lane_x8`).
    let x8 = usize::from(bits == 4 && code != 0 && qmv1_x8());
    let f = template_function_bounded(
        g,
        QUANTIZED,
        &format!("qmv1_{code}_{bits}_{gs}_{slices}_{per_slice}_{u}_{per_sm}_{pro_code}_{x8}"),
        Some((threads as u32, per_sm as u32)),
        || {
            format!("{ty}* out, const {ty}* x, const unsigned int* w, const {ty}* scales, const {ty}* biases, long long n, long long k, int rows_per_block, const {ty}* aux, float eps")
        },
        || {
            format!(
                "qmv1<{code}, {bits}, {gs}, {slices}, {per_slice}, {u}, {pro_code}, {x8}>(out, x, w, scales, biases, n, k, rows_per_block, aux, eps)"
            )
        },
    )?;
    let (out, optr) = output(g, &spec.0, dt)?;
    let (auxp, eps) = match pro {
        Prologue::None => (0, 0.0),
        Prologue::Norm(nw, eps) => (dptr(g, nw)?, eps),
        Prologue::Swiglu(up) => (dptr(g, up)?, 0.0),
    };
    Args::new()
        .arg(optr)
        .arg(xp)
        .arg(wp)
        .arg(dptr(g, &s)?)
        .arg(dptr(g, &b)?)
        .arg(n as i64)
        .arg(k as i64)
        .arg(rows as i32)
        .arg(auxp)
        .arg(eps)
        .launch_shared(g, &f, (blocks as u32, 1), threads as u32, (rows * slices * 4) as u32)?;
    Ok(Some(out))
}

/// `qmv1` for one row of x; `OXMX_QMV1=0` runs `qmv` instead (comparisons on a device).
fn qmv1_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_QMV1").map(|v| v != "0").unwrap_or(true))
}

/// Whether `qmv1` multiplies 4-bit codes by half-precision x as int8 pairs with dp4a
/// (kernels/quantized.cu, `lane_x8`); `OXMX_QMV1_X8=0` keeps the float products.
fn qmv1_x8() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_QMV1_X8").map(|v| v != "0").unwrap_or(true))
}

/// (U, E) of `qmv1`: rows in flight per warp, and E * 8 the resident warps per SM its registers
/// are held to. `OXMX_QMV1_SHAPE=U,E` overrides it (tuning on a device).
fn qmv1_shape() -> (usize, usize) {
    static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| env_pair("OXMX_QMV1_SHAPE")).unwrap_or((4, 3))
}

/// The mat-vec kernels' operands: the packed weight, scales and biases dense on the device, and
/// the device addresses of x and the weight, or `None` when they are not 16-byte aligned. The
/// caller keeps the weight (`_w`) alive until its kernel is launched.
#[allow(clippy::type_complexity)]
fn mat_vec_operands(g: &Gpu, x: &Data, wq: &Data, scales: &Data, biases: &Data) -> Result<Option<(Data, Data, Data, u64, u64)>> {
    let (Some(w), Some(s), Some(b)) = (contiguous(g, wq)?, contiguous(g, scales)?, contiguous(g, biases)?) else { return Ok(None) };
    let (xp, wp) = (dptr(g, x)?, dptr(g, &w)?);
    Ok((xp % 16 == 0 && wp % 16 == 0).then_some((w, s, b, xp, wp)))
}

/// (R, U) of the mat-vec kernel. `OXMX_QMV_SHAPE=R,U` overrides it (kernel tuning on a device).
fn qmv_shape() -> (usize, usize) {
    static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| env_pair("OXMX_QMV_SHAPE")).unwrap_or((2, 4))
}

/// Experiment (issue 6): `OXMX_QMV_MEMONLY=1` keeps the float kernel's loads and drops its
/// arithmetic (wrong results), to time the memory side alone under Nsight Compute. Read once: a
/// decoding step runs ~130 of these products.
fn memory_only() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_QMV_MEMONLY").map(|v| v == "1").unwrap_or(false))
}
