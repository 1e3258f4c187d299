//! Matmul on the GPU through cuBLAS (`cublasGemmStridedBatchedEx`).
//!
//! Row-major `C = A·B` is column-major `Cᵀ = Bᵀ·Aᵀ`, so cuBLAS gets B first. Each operand's
//! matrices may be row-major or transposed views (cuBLAS's op flags absorb that), and its batch
//! must be one uniform stride (dense batches, or stride 0 for a broadcast operand); anything
//! else is first copied to a dense layout on the GPU. float32 computes in float32 (no TF32, so
//! results match the CPU to float32 rounding); float16 and bfloat16 accumulate in float32,
//! split-K partial sums included. Products of at most a few rows with a weight (decoding's
//! mat-vecs) run matvec.rs's kernel instead.

use super::device::{cuda_err, Gpu};
use super::elementwise::contiguous;
use super::memory::alloc;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::shape::size_of;
use cudarc::cublas::{result as blas, sys as bsys};
use std::ffi::c_void;

/// A cuBLAS handle bound to the device's stream.
pub(crate) struct BlasHandle(bsys::cublasHandle_t);

/// cuBLAS's workspace (its recommendation for Hopper is 32 MiB).
const BLAS_WORKSPACE: usize = 32 << 20;

// Used only under the Gpu's mutex.
unsafe impl Send for BlasHandle {}

/// How one operand's matrices sit in memory.
pub(crate) struct Layout {
    /// Element stride between consecutive matrices (0: broadcast).
    pub batch_stride: i64,
    /// True when each matrix is stored transposed (column-major) relative to its logical shape.
    pub transposed: bool,
    /// The leading dimension cuBLAS needs.
    pub ld: i64,
}

/// The layout of `d` ([..., r, c]) or `None` when it needs a copy first.
fn layout(d: &Data) -> Option<Layout> {
    let nd = d.ndim();
    let (r, c) = (d.shape[nd - 2], d.shape[nd - 1]);
    let (sr, sc) = (d.strides[nd - 2], d.strides[nd - 1]);
    let (transposed, ld) = if (sc == 1 || c == 1) && sr >= c.max(1) as isize {
        (false, sr.max(c.max(1) as isize))
    } else if (sr == 1 || r == 1) && sc >= r.max(1) as isize {
        (true, sc.max(r.max(1) as isize))
    } else {
        return None;
    };
    // The batch dims must reduce to one stride (or all be broadcast).
    let batch: Vec<(usize, isize)> = (0..nd - 2).filter(|&i| d.shape[i] > 1).map(|i| (d.shape[i], d.strides[i])).collect();
    let mut batch_stride = None;
    for w in (0..batch.len()).rev() {
        let (_, s) = batch[w];
        match batch_stride {
            None => batch_stride = Some(s),
            Some(inner) => {
                // An outer dim must step over the inner dims exactly (or everything is 0).
                let inner_count: usize = batch[w + 1..].iter().map(|b| b.0).product();
                if !(s == inner * inner_count as isize) {
                    return None;
                }
            }
        }
    }
    Some(Layout { batch_stride: batch_stride.unwrap_or(0) as i64, transposed, ld: ld as i64 })
}

fn types(d: Dtype) -> Option<(bsys::cudaDataType, bsys::cublasComputeType_t)> {
    use bsys::cublasComputeType_t::*;
    use bsys::cudaDataType::*;
    Some(match d {
        Dtype::Float32 => (CUDA_R_32F, CUBLAS_COMPUTE_32F),
        Dtype::Float64 => (CUDA_R_64F, CUBLAS_COMPUTE_64F),
        Dtype::Float16 => (CUDA_R_16F, CUBLAS_COMPUTE_32F),
        Dtype::Bfloat16 => (CUDA_R_16BF, CUBLAS_COMPUTE_32F),
        _ => return None,
    })
}

pub(crate) fn matmul(g: &Gpu, a: &Data, b: &Data, out: &Spec) -> Result<Option<Data>> {
    gemm(g, a, b, &out.0, out.1, 1.0)
}

/// `alpha · a @ b` of `shape` as `odt`: the operands' dtype, or float32 for half-precision
/// operands (attention scores). `None` for dtypes cuBLAS does not take.
pub(crate) fn gemm(g: &Gpu, a: &Data, b: &Data, shape: &[usize], odt: Dtype, alpha: f32) -> Result<Option<Data>> {
    let Some((dtype, compute)) = types(a.dtype) else { return Ok(None) };
    let Some((otype, _)) = types(odt) else { return Ok(None) };
    if b.dtype != a.dtype || !(odt == a.dtype || (odt == Dtype::Float32 && a.dtype != Dtype::Float64)) {
        return Ok(None);
    }
    let nd = shape.len();
    let (m, n, k) = (shape[nd - 2], shape[nd - 1], a.shape[nd - 1]);
    let batch: usize = shape[..nd - 2].iter().product();
    // Operands whose layout cuBLAS cannot take become dense copies first.
    let a_dense;
    let (a, la) = match layout(a) {
        Some(l) => (a, l),
        None => {
            let Some(c) = contiguous(g, a)? else { return Ok(None) };
            a_dense = c;
            (&a_dense, layout(&a_dense).expect("dense layout"))
        }
    };
    let b_dense;
    let (b, lb) = match layout(b) {
        Some(l) => (b, l),
        None => {
            let Some(c) = contiguous(g, b)? else { return Ok(None) };
            b_dense = c;
            (&b_dense, layout(&b_dense).expect("dense layout"))
        }
    };
    // Decoding's mat-vecs: one launch of our kernel instead of cuBLAS's host overhead.
    if let Some(out) = super::matvec::gemv(g, a, &la, b, &lb, shape, odt, alpha)? {
        return Ok(Some(out));
    }
    let (esize, isize_) = (odt.size(), a.dtype.size());
    let total = size_of(shape);
    let block = alloc(g.ordinal, total * esize)?;
    if total > 0 {
        let ap = a.buffer.device_block(g.ordinal)?.ptr() + (a.offset as u64) * isize_ as u64;
        let bp = b.buffer.device_block(g.ordinal)?.ptr() + (b.offset as u64) * isize_ as u64;
        let mut handle = g.blas.lock().unwrap_or_else(|p| p.into_inner());
        if handle.is_none() {
            // Made outside any graph capture (handle creation allocates and synchronises).
            let h = super::graph::outside_capture(g, "~graph flush: cuBLAS set-up", || {
                blas::create_handle().map_err(|e| cuda_err("creating the cuBLAS handle", e))
            })?;
            // SAFETY: a fresh handle and this device's live stream.
            unsafe { blas::set_stream(h, g.cu_stream() as _) }.map_err(|e| cuda_err("binding cuBLAS to the stream", e))?;
            // Split-K partial sums stay in float32 for half-precision outputs: by default
            // cuBLAS may round them to the output type, 8 bf16 ulps off on a [8,2100]x[2100,33]
            // product (seen on an H200), where the CPU accumulates in float32.
            // SAFETY: a valid handle.
            unsafe { bsys::cublasSetMathMode(h, bsys::cublasMath_t::CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION) }
                .result()
                .map_err(|e| cuda_err("setting cuBLAS's math mode", e))?;
            // A workspace set once: cuBLAS then allocates nothing while a CUDA graph captures
            // its kernels (graph.rs). Like cuBLAS's own default one, it lives as long as the
            // handle (the process) and is not counted as arrays' memory.
            // SAFETY: plain allocation on the bound context; a valid handle and a block of
            // that size that is never freed.
            let ws =
                unsafe { cudarc::driver::result::malloc_sync(BLAS_WORKSPACE) }.map_err(|e| cuda_err("allocating cuBLAS's workspace", e))?;
            unsafe { bsys::cublasSetWorkspace_v2(h, ws as *mut c_void, BLAS_WORKSPACE) }
                .result()
                .map_err(|e| cuda_err("setting cuBLAS's workspace", e))?;
            *handle = Some(BlasHandle(h));
        }
        let h = handle.as_ref().expect("handle was just made").0;
        let op = |t: bool| if t { bsys::cublasOperation_t::CUBLAS_OP_T } else { bsys::cublasOperation_t::CUBLAS_OP_N };
        let (alpha_f, beta_f) = (alpha, 0.0f32);
        let (alpha_d, beta_d) = (alpha as f64, 0.0f64);
        let (alpha, beta): (*const c_void, *const c_void) = if odt == Dtype::Float64 {
            (&alpha_d as *const f64 as _, &beta_d as *const f64 as _)
        } else {
            (&alpha_f as *const f32 as _, &beta_f as *const f32 as _)
        };
        // Column-major: C' (n x m) = B' (n x k) · A' (k x m).
        // cuBLAS picks its kernels from the problem: the graph cache key is the problem
        // (a different problem may capture different kernels or node counts).
        let key = [
            0xb1a5,
            ((lb.transposed as u64) << 1) | la.transposed as u64,
            (n as u64) << 32 | m as u64,
            (k as u64) << 32 | batch as u64,
            (lb.ld as u64) << 32 | la.ld as u64,
            (dtype as u64) << 32 | otype as u64,
        ];
        // SAFETY: pointers and strides describe live device blocks of the sizes checked by
        // the op's output specs; alpha/beta live until the call returns.
        super::graph::launch(g, &key, || unsafe {
            blas::gemm_strided_batched_ex(
                h,
                op(lb.transposed),
                op(la.transposed),
                n as i32,
                m as i32,
                k as i32,
                alpha,
                bp as *const c_void,
                dtype,
                lb.ld as i32,
                lb.batch_stride,
                ap as *const c_void,
                dtype,
                la.ld as i32,
                la.batch_stride,
                beta,
                block.ptr() as *mut c_void,
                otype,
                n as i32,
                (m * n) as i64,
                batch as i32,
                compute,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .map_err(|e| cuda_err("cuBLAS gemm", e))
        })?;
    }
    Ok(Some(Data::dense(Buffer::on_device(block, total * esize), shape.to_vec(), odt)))
}
