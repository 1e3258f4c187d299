//! Few-row products `x [m, k] @ B [k, n]` (m ≤ `MAX_ROWS`, one batch) for 16-bit floats: the
//! decode step of a model with float16/bfloat16 weights. A general gemm would first convert (and,
//! for a transposed `B`, transpose) the whole weight matrix to f32, which costs several passes
//! over memory; here `B` is read once, widened in L1-sized chunks and multiplied in f32, so the
//! product runs at the speed of reading the weights.
//!
//! Two layouts: `B` a transposed view of row-major `W [n, k]` (what `Linear` passes: each output
//! is a dot product of contiguous rows), or row-major `[k, n]` (outputs accumulate rows of `B`).

use super::kfloat::KFloat;
use super::simd;
use crate::graph::Data;
use rayon::prelude::*;

/// Rows of `x` up to which this path is used (beyond, a blocked gemm reuses each weight enough).
pub const MAX_ROWS: usize = 8;
/// Elements widened at a time (4 KB of f32, stays in L1).
const CHUNK: usize = 1024;
const LANES: usize = 16;

/// A product `x [m, k] @ B [k, n]` the few-row kernels take: one batch, 1..=`MAX_ROWS` rows of
/// `x`, and `B` read along unit strides from `base` in its buffer: a transposed view of
/// row-major `W [n, k]` (`transposed`, W's rows `row` apart) or row-major `[k, n]` (rows `row`
/// apart).
pub(super) struct FewRows {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub transposed: bool,
    pub row: usize,
    pub base: usize,
}

/// `Some` when `a @ b` (output `out_shape`) has a shape and layout `FewRows` describes.
pub(super) fn few_rows_shape(a: &Data, b: &Data, out_shape: &[usize]) -> Option<FewRows> {
    let nd = a.ndim();
    let (m, k, n) = (a.shape[nd - 2], a.shape[nd - 1], b.shape[nd - 1]);
    let batches: usize = out_shape[..out_shape.len() - 2].iter().product();
    if batches != 1 || m == 0 || m > MAX_ROWS || k == 0 || n == 0 || b.offset < 0 {
        return None;
    }
    let (b_rs, b_cs) = (b.strides[nd - 2], b.strides[nd - 1]);
    let transposed = b_rs == 1 && b_cs >= k as isize;
    if !(transposed || (b_cs == 1 && b_rs >= n as isize)) {
        return None;
    }
    let row = if transposed { b_cs } else { b_rs } as usize;
    Some(FewRows { m, k, n, transposed, row, base: b.offset as usize })
}

simd::multiversion! {
/// `Some(y)` when the shapes and layouts suit this path, `None` to use the general kernel.
pub(super) fn few_rows<T: KFloat>(a: &Data, b: &Data, out_shape: Vec<usize>) -> Option<crate::error::Result<Data>> {
    let FewRows { m, k, n, transposed, row, base } = few_rows_shape(a, b, &out_shape)?;
    // x widened once: [m, k] dense f32.
    let xr = a.row_major::<T>();
    let mut x = vec![0f32; m * k];
    T::load(&xr, &mut x);
    let raw = b.raw::<T>();
    let mut y = vec![0f32; m * n];
    if transposed {
        // Output j is Σ_k x[r, k] W[j, k]; computed transposed ([n, m]) so tasks own rows.
        let rows_per_task = (16384 / k).clamp(1, 64);
        let mut yt = vec![0f32; n * m];
        yt.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
            let mut buf = [0f32; CHUNK];
            simd::vectorized(|| {
                for (i, o) in out.chunks_mut(m).enumerate() {
                    let w = &raw[base + (t * rows_per_task + i) * row..][..k];
                    let mut acc = [[0f32; LANES]; MAX_ROWS];
                    for k0 in (0..k).step_by(CHUNK) {
                        let kk = CHUNK.min(k - k0);
                        T::load(&w[k0..k0 + kk], &mut buf[..kk]);
                        for (r, a) in acc.iter_mut().enumerate().take(m) {
                            dot_into(a, &buf[..kk], &x[r * k + k0..r * k + k0 + kk]);
                        }
                    }
                    for (r, o) in o.iter_mut().enumerate() {
                        *o = simd::hsum(acc[r]);
                    }
                }
            })
        });
        for r in 0..m {
            for j in 0..n {
                y[r * n + j] = yt[j * m + r];
            }
        }
    } else {
        // y[r, cols] = Σ_k x[r, k] B[k, cols]; tasks own column stripes and walk all of k.
        const COLS: usize = 256;
        let mut stripes: Vec<Vec<f32>> = (0..n.div_ceil(COLS)).map(|_| Vec::new()).collect();
        stripes.par_iter_mut().enumerate().for_each(|(s, acc)| {
            let (c0, nc) = (s * COLS, COLS.min(n - s * COLS));
            *acc = vec![0f32; m * nc];
            let mut buf = [0f32; COLS];
            simd::vectorized(|| {
                for kk in 0..k {
                    T::load(&raw[base + kk * row + c0..][..nc], &mut buf[..nc]);
                    for r in 0..m {
                        let xv = x[r * k + kk];
                        for (a, &bv) in acc[r * nc..(r + 1) * nc].iter_mut().zip(&buf[..nc]) {
                            *a = xv.mul_add(bv, *a);
                        }
                    }
                }
            })
        });
        for (s, acc) in stripes.iter().enumerate() {
            let (c0, nc) = (s * COLS, COLS.min(n - s * COLS));
            for r in 0..m {
                y[r * n + c0..r * n + c0 + nc].copy_from_slice(&acc[r * nc..(r + 1) * nc]);
            }
        }
    }
    Some(Data::build::<T>(out_shape, |o| T::store(&y, o)))
}
}

/// `acc += a ⊙ b` lane-wise (summed by the caller), written as independent lanes so it vectorises.
#[inline(always)]
fn dot_into(acc: &mut [f32; LANES], a: &[f32], b: &[f32]) {
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] = x.mul_add(*y, acc[l]);
    }
}
