//! float16/bfloat16 decode products `x [m, k] @ Wᵀ` (m ≤ 8, `W [n, k]` row-major, what `Linear`
//! passes) on AVX2 hosts, which have neither AVX-512 nor its BF16 dot products (`gemv_bf16`).
//!
//! The portable `gemv` widens each 1024-element chunk of a weight row into a buffer and reads it
//! back, with two accumulator chains per row of `x` (16 lanes): on a Zen 2 host the
//! 4096 x 14336 bfloat16 mat-vec read its weights at ~7 GB/s of ~24. Here weights widen in the
//! register they are loaded into, each row of `x` has four chains, and weights are prefetched
//! into L2 ahead of the reads.
//!
//! Every row of `x` is summed in the same order whatever `m` is (rows are taken up to three at a
//! time, each with its own four chains), so a row gets the bits it gets alone: a batched decode
//! gives each sequence its own greedy tokens.

use super::gemv::FewRows;
use super::kfloat::KFloat;
use super::simd::{self, prefetch_l2, Load8};
use crate::graph::Data;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// How far ahead of its reads the kernel prefetches weights into L2, in bytes.
const AHEAD: usize = 8192;

/// Rows of `x` multiplied in one pass over a weight row: 3 x 4 accumulators, a weight and an
/// `x` register fit the 16 ymm registers.
const GROUP: usize = 3;

/// `Some(y)` when the CPU, shapes and layout suit this path, `None` to use another kernel.
pub(super) fn few_rows<T: KFloat + Load8>(a: &Data, b: &Data, out_shape: Vec<usize>) -> Option<crate::error::Result<Data>> {
    let FewRows { m, k, n, transposed, row, base } = super::gemv::few_rows_shape(a, b, &out_shape)?;
    if !transposed || simd::level() != simd::Level::Avx2 || !simd::avx2_fma() {
        return None;
    }
    let xr = a.row_major::<T>();
    let mut x = vec![0f32; m * k];
    T::load(&xr, &mut x);
    let w = &b.raw::<T>()[base..];
    // Computed transposed ([n, m]) so that tasks own contiguous outputs.
    let mut yt = vec![0f32; n * m];
    let rows_per_task = (65536 / (2 * k)).clamp(1, 256);
    yt.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
        for (i, o) in out.chunks_mut(m).enumerate() {
            let j = t * rows_per_task + i;
            // SAFETY: `few_rows` checked the CPU; row j of W holds k elements from j * row (the
            // strides and offset were checked against the buffer by the view that made `b`).
            unsafe { dot_rows(&x, k, w[j * row..].as_ptr(), o) };
        }
    });
    Some(Data::build::<T>(out_shape, |y| {
        let mut yr = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                yr[r * n + c] = yt[c * m + r];
            }
        }
        T::store(&yr, y)
    }))
}

/// `out[r] = x[r] · w` for every row `r < out.len()` of `x` (`[.., k]` dense f32).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` is valid for `k` elements.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_rows<T: KFloat + Load8>(x: &[f32], k: usize, w: *const T, out: &mut [f32]) {
    let (mut r0, m) = (0, out.len());
    while r0 < m {
        let o = &mut out[r0..(r0 + GROUP).min(m)];
        let xg = x.as_ptr().add(r0 * k);
        match o.len() {
            1 => dot_group::<T, 1>(xg, k, w, o),
            2 => dot_group::<T, 2>(xg, k, w, o),
            _ => dot_group::<T, GROUP>(xg, k, w, o),
        }
        r0 += GROUP;
    }
}

/// `M` rows of `x` (from `x`, `k` apart) against one weight row; four chains per row: chunk `i`
/// of 8 elements goes to chain `i % 4`, then the tail one element at a time.
#[inline(always)]
unsafe fn dot_group<T: KFloat + Load8, const M: usize>(x: *const f32, k: usize, w: *const T, out: &mut [f32]) {
    let mut acc = [[_mm256_setzero_ps(); 4]; M];
    let mut c = 0;
    while c + 32 <= k {
        prefetch_l2(w.add(c).wrapping_byte_add(AHEAD), 32 * std::mem::size_of::<T>());
        for u in 0..4 {
            let wv = T::load8(w.add(c + 8 * u));
            for (r, a) in acc.iter_mut().enumerate() {
                a[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(r * k + c + 8 * u)), a[u]);
            }
        }
        c += 32;
    }
    let mut u = 0;
    while c + 8 <= k {
        let wv = T::load8(w.add(c));
        for (r, a) in acc.iter_mut().enumerate() {
            a[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(r * k + c)), a[u]);
        }
        c += 8;
        u += 1;
    }
    for (r, a) in acc.iter().enumerate() {
        let v = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
        let mut s = simd::hsum(std::mem::transmute::<__m256, [f32; 8]>(v));
        let mut t = [0f32; 8];
        T::load(std::slice::from_raw_parts(w.add(c), k - c), &mut t[..k - c]);
        for (i, tv) in t.iter().enumerate().take(k - c) {
            s += tv * *x.add(r * k + c + i);
        }
        out[r] = s;
    }
}
