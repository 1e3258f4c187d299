//! bfloat16 decode products `x [m, k] @ Wᵀ` (m ≤ 8, `W [n, k]` row-major, what `Linear` passes)
//! with AVX-512 BF16 dot products, on CPUs that have them (Zen 4 and later, Sapphire Rapids and
//! later).
//!
//! `gemv` widens every weight to f32 before multiplying (three ops per 16 weights and a store and
//! reload through L1); `vdpbf16ps` multiplies 32 bfloat16 pairs straight from the loaded bytes
//! into 16 f32 lanes, the products exact in f32, so one instruction per 64 bytes of weights and
//! row of `x` is left and the product runs at the speed of reading the weights. Weights are
//! prefetched into L2 8 KB ahead (the distance measured best for the 4-bit mat-vec).
//!
//! The instruction treats bfloat16 subnormals (below 1.2e-38) as zero, in inputs and in the
//! accumulators; nothing else differs from f32 arithmetic but the order of the additions.

use super::gemv::FewRows;
use crate::graph::Data;
use half::bf16;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// How far ahead of its reads the kernel prefetches weights into L2.
const AHEAD: usize = 8192;

/// Whether this CPU has the instructions; `OXMX_GEMV_BF16=0` turns the path off (for A/B
/// measurements).
fn usable() -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| {
        super::simd::level() == super::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && std::env::var("OXMX_GEMV_BF16").map_or(true, |v| v != "0")
    })
}

/// `Some(y)` when the CPU, shapes and layout suit this path, `None` to use another kernel.
pub(super) fn few_rows(a: &Data, b: &Data, out_shape: Vec<usize>) -> Option<crate::error::Result<Data>> {
    let FewRows { m, k, n, transposed, row, base } = super::gemv::few_rows_shape(a, b, &out_shape)?;
    if !usable() || !transposed {
        return None;
    }
    let x = a.row_major::<bf16>();
    let w = &b.raw::<bf16>()[base..];
    // Computed transposed ([n, m]) so that tasks own contiguous outputs.
    let mut yt = vec![0f32; n * m];
    let rows_per_task = (65536 / (2 * k)).clamp(1, 256);
    yt.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
        for (i, o) in out.chunks_mut(m).enumerate() {
            let j = t * rows_per_task + i;
            // SAFETY: `usable` checked the CPU; row j of W holds k elements from j * row (the
            // strides and offset were checked against the buffer by the view that made `b`).
            unsafe { dot_rows(&x, m, k, w[j * row..].as_ptr(), o) };
        }
    });
    Some(Data::build::<bf16>(out_shape, |y| {
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = bf16::from_f32(yt[c * m + r]);
            }
        }
    }))
}

/// `out[r] = x[r] · w[..k]` for the `m = out.len()` rows of `x` (`[m, k]`).
///
/// # Safety
/// AVX-512 F/BW and BF16; `w` valid for `k` elements; `m ≤ gemv::MAX_ROWS`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dot_rows(x: &[bf16], m: usize, k: usize, w: *const bf16, out: &mut [f32]) {
    match m {
        1 => dot_m::<1>(x, k, w, out),
        2 => dot_m::<2>(x, k, w, out),
        3 | 4 => dot_m::<4>(x, k, w, out),
        _ => dot_m::<8>(x, k, w, out),
    }
}

#[inline(always)]
unsafe fn dot_m<const M: usize>(x: &[bf16], k: usize, w: *const bf16, out: &mut [f32]) {
    let m = out.len().min(M);
    let xp = x.as_ptr();
    let bh = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
    // Two accumulators per row so that the dot products' latency is hidden with one row.
    let mut acc = [[_mm512_setzero_ps(); M]; 2];
    let mut c = 0;
    while c + 64 <= k {
        _mm_prefetch::<_MM_HINT_T1>((w.add(c) as *const i8).wrapping_add(AHEAD));
        _mm_prefetch::<_MM_HINT_T1>((w.add(c + 32) as *const i8).wrapping_add(AHEAD));
        let (w0, w1) = (bh(_mm512_loadu_si512(w.add(c) as *const __m512i)), bh(_mm512_loadu_si512(w.add(c + 32) as *const __m512i)));
        for r in 0..m {
            let xr = xp.add(r * k + c);
            acc[0][r] = _mm512_dpbf16_ps(acc[0][r], w0, bh(_mm512_loadu_si512(xr as *const __m512i)));
            acc[1][r] = _mm512_dpbf16_ps(acc[1][r], w1, bh(_mm512_loadu_si512(xr.add(32) as *const __m512i)));
        }
        c += 64;
    }
    while c < k {
        // The last (< 64) elements, 32 at a time, masked past the end: the zeros add nothing.
        let mask: __mmask32 = if k - c >= 32 { !0 } else { (1u32 << (k - c)) - 1 };
        let wv = bh(_mm512_maskz_loadu_epi16(mask, w.add(c) as *const i16));
        for r in 0..m {
            let xv = bh(_mm512_maskz_loadu_epi16(mask, xp.add(r * k + c) as *const i16));
            acc[0][r] = _mm512_dpbf16_ps(acc[0][r], wv, xv);
        }
        c += 32;
    }
    for r in 0..m {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][r], acc[1][r]));
    }
}
