//! Dense mat-vec on the GPU (kernels/matvec.cu): decoding's products of a few rows of
//! activations with a Linear layer's weight seen through its transpose.
//!
//! Why not cuBLAS: it runs these at full bandwidth on the GPU, but each call costs ~17 µs of
//! host time (measured on an H100 host, BENCHMARKS.md eleventh session) — 225 calls per bf16
//! Llama-3-8B decoding step, ~3.8 ms of host time for a step whose weights the GPU reads in
//! ~3.5 ms. This kernel is one plain launch (~3 µs) and reads the weight at full width.

use super::compiler::{env_pair, template_function, Args, Family};
use super::device::Gpu;
use super::elementwise::storage;
use super::fast::{dptr, dt_code, output};
use super::matmul::Layout;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Data;

/// Warps per block (BLOCK_WARPS in the kernels).
pub(crate) const WARPS: usize = 8;

/// Warps that split each row of `chunks` 16-byte chunks (a power of two up to `WARPS`): enough
/// that every lane has about `u` chunks, so short rows are not spread thin and long ones keep
/// every SM busy when there are few rows.
pub(crate) fn k_split(chunks: usize, u: usize) -> usize {
    let per_warp = (chunks / (32 * u)).max(1);
    (1usize << per_warp.ilog2()).min(WARPS)
}

const MATVEC: Family = Family { file: "matvec.cu", text: include_str!("kernels/matvec.cu") };

/// Rows of activations up to which the mat-vec kernel runs (above it cuBLAS's tensor-core
/// kernels win).
pub(crate) const GEMV_ROWS: usize = 8;

/// `alpha · a @ b` of `shape` when it is a mat-vec this kernel takes: `a` holds at most
/// `GEMV_ROWS` evenly spaced rows (all batches together), `b` is one weight (broadcast over the
/// batch) stored with contiguous columns, everything 16-byte aligned, the output in the
/// operands' float dtype. `None`: the caller uses cuBLAS.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv(g: &Gpu, a: &Data, la: &Layout, b: &Data, lb: &Layout, shape: &[usize], odt: Dtype, alpha: f32) -> Result<Option<Data>> {
    let dt = a.dtype;
    let Some(code) = dt_code(dt) else { return Ok(None) };
    let nd = shape.len();
    let (m, n, k) = (shape[nd - 2], shape[nd - 1], a.shape[a.ndim() - 1]);
    let batch: usize = shape[..nd - 2].iter().product();
    let rows = batch * m;
    // Rows of x evenly spaced across the batch; one weight for every batch.
    let x_even = batch == 1 || la.batch_stride == (m as i64) * la.ld;
    let w_shared = batch == 1 || lb.batch_stride == 0;
    if odt != dt || b.dtype != dt || la.transposed || !lb.transposed || !x_even || !w_shared {
        return Ok(None);
    }
    if rows == 0 || rows > GEMV_ROWS || n == 0 || k == 0 || k % 8 != 0 || la.ld % 8 != 0 || lb.ld % 8 != 0 {
        return Ok(None);
    }
    let (xp, wp) = (dptr(g, a)?, dptr(g, b)?);
    if xp % 16 != 0 || wp % 16 != 0 {
        return Ok(None);
    }
    // Rows of w per warp group (R: more share each x load) and 16-byte chunks of each in flight
    // per lane (U); long rows are split over up to 8 warps (k_split), so even 2 x 2 keeps
    // enough bytes outstanding. `OXMX_GEMV_SHAPE=R,U` overrides it (tuning on a device).
    static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    let (r, u) = SHAPE.get_or_init(|| env_pair("OXMX_GEMV_SHAPE")).unwrap_or_else(|| {
        // Measured on an H200 (BENCHMARKS.md, twelfth session): 2 rows, 2 chunks in flight.
        (2, if dt == Dtype::Float32 { 1 } else { 2 })
    });
    let w = k_split(k / 8, u);
    let ty = storage(dt).unwrap_or("float");
    let f = template_function(
        g,
        MATVEC,
        &format!("gemv_t_{code}_{rows}_{r}_{u}_{w}"),
        || format!("{ty}* out, const {ty}* x, const {ty}* w, long long n, long long k, long long ldx, long long ldw, float alpha"),
        || format!("gemv_t<{code}, {rows}, {r}, {u}, {w}>(out, x, w, n, k, ldx, ldw, alpha)"),
    )?;
    let (out, optr) = output(g, shape, dt)?;
    let blocks = n.div_ceil(r * (WARPS / w)) as u32;
    Args::new().arg(optr).arg(xp).arg(wp).arg(n as i64).arg(k as i64).arg(la.ld).arg(lb.ld).arg(alpha).launch(
        g,
        &f,
        (blocks, 1),
        32 * WARPS as u32,
    )?;
    Ok(Some(out))
}
