//! The AVX-512 inner loop of attention over an unmasked key range: up to four query rows that
//! share a key/value head (decode with grouped-query heads: one position, the group's heads)
//! against keys `0..n`, updating each row's online-softmax state.
//!
//! Decode attention reads every key and value once, so it should run at memory bandwidth; the
//! portable loop in `fast::sdpa` spent ~3x that in arithmetic (an AVX2 dot product and a
//! horizontal sum per (row, key), and an accumulator load/store per (row, key, 16 values)).
//! Here each key chunk is loaded once for all rows, the value accumulators stay in registers for
//! a whole key tile, and f16/bf16 keys and values widen in the load.

use super::sdpa_rows::{online_softmax, Rows, AHEAD, TILE};
use super::simd::{prefetch_l2, Load16};
use std::arch::x86_64::*;

/// Attends `rows` (at most `MAX_ROWS`) to `n` keys and values: key `j` at `k + j * ks`
/// (`d` elements), value `j` at `v + j * vs` (`dv` elements).
///
/// # Safety
/// The CPU has AVX-512 F/BW/DQ/VL, FMA and F16C; `d` and `dv` are multiples of 16; the pointers
/// are valid for the rows described.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn attend<T: Load16>(rows: Rows, k: *const T, ks: usize, v: *const T, vs: usize, n: usize, d: usize, dv: usize) {
    match rows.m.len() {
        // CG: chunks of 16 values per accumulator group, NR x CG <= 16 registers.
        1 => attend_n::<T, 1, 8>(rows, k, ks, v, vs, n, d, dv),
        2 => attend_n::<T, 2, 8>(rows, k, ks, v, vs, n, d, dv),
        3 => attend_n::<T, 3, 5>(rows, k, ks, v, vs, n, d, dv),
        _ => attend_n::<T, 4, 4>(rows, k, ks, v, vs, n, d, dv),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn attend_n<T: Load16, const NR: usize, const CG: usize>(
    rows: Rows,
    k: *const T,
    ks: usize,
    v: *const T,
    vs: usize,
    n: usize,
    d: usize,
    dv: usize,
) {
    let Rows { q, m, l, acc } = rows;
    let mut s = [[0f32; TILE]; NR];
    let mut j0 = 0;
    while j0 < n {
        let nk = TILE.min(n - j0);
        scores::<T, NR>(q, k.add(j0 * ks), ks, nk, d, &mut s);
        let corr = online_softmax(&mut s, nk, m, l);
        let vt = v.add(j0 * vs);
        let mut c0 = 0;
        while c0 + 16 * CG <= dv {
            values::<T, NR, CG>(vt, vs, nk, c0, dv, &s, &corr, acc);
            c0 += 16 * CG;
        }
        while c0 < dv {
            values::<T, NR, 1>(vt, vs, nk, c0, dv, &s, &corr, acc);
            c0 += 16;
        }
        j0 += nk;
    }
}

/// `s[r][j] = q[r] · k[j]` for the tile's `nk` keys: each key chunk is loaded once and used by
/// every row.
#[inline(always)]
unsafe fn scores<T: Load16, const NR: usize>(q: &[f32], k: *const T, ks: usize, nk: usize, d: usize, s: &mut [[f32; TILE]; NR]) {
    let qp = q.as_ptr();
    for j in 0..nk {
        let kp = k.add(j * ks);
        prefetch_l2(kp.wrapping_add(AHEAD * ks), d * std::mem::size_of::<T>());
        let mut a = [_mm512_setzero_ps(); NR];
        let mut c = 0;
        while c < d {
            let kc = T::load16(kp.add(c));
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(r * d + c)), kc, *ar);
            }
            c += 16;
        }
        let mut four = [_mm512_setzero_ps(); 4];
        four[..NR].copy_from_slice(&a);
        let sums: [f32; 4] = std::mem::transmute(sum4(four));
        for r in 0..NR {
            s[r][j] = sums[r];
        }
    }
}

/// The lane sums of four vectors at once (10 vector ops, against ~30 for four separate
/// reductions, which were a fifth of the kernel's work at half precision).
#[inline(always)]
unsafe fn sum4([a0, a1, a2, a3]: [__m512; 4]) -> __m128 {
    // Per 128-bit lane: interleave pairs and add, twice, leaving [Σa0, Σa1, Σa2, Σa3] partial
    // sums in each lane; then add the four lanes.
    let t01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    let t23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    let (t01, t23) = (_mm512_castps_pd(t01), _mm512_castps_pd(t23));
    let u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(t01, t23)), _mm512_castpd_ps(_mm512_unpackhi_pd(t01, t23)));
    let v = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps::<1>(u));
    _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v))
}

/// `acc[r][c0..c0 + 16 CG] = acc * corr[r] + Σ_j s[r][j] v[j][c0..]`, the accumulators held in
/// registers across the tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn values<T: Load16, const NR: usize, const CG: usize>(
    v: *const T,
    vs: usize,
    nk: usize,
    c0: usize,
    dv: usize,
    s: &[[f32; TILE]; NR],
    corr: &[f32; NR],
    acc: &mut [f32],
) {
    let ap = acc.as_mut_ptr();
    let mut a = [[_mm512_setzero_ps(); CG]; NR];
    for r in 0..NR {
        let cr = _mm512_set1_ps(corr[r]);
        for (c, x) in a[r].iter_mut().enumerate() {
            *x = _mm512_mul_ps(_mm512_loadu_ps(ap.add(r * dv + c0 + 16 * c)), cr);
        }
    }
    for j in 0..nk {
        let vp = v.add(j * vs + c0);
        if c0 == 0 {
            prefetch_l2(vp.wrapping_add(AHEAD * vs), dv * std::mem::size_of::<T>());
        }
        let mut vv = [_mm512_setzero_ps(); CG];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = T::load16(vp.add(16 * c));
        }
        for r in 0..NR {
            let p = _mm512_set1_ps(s[r][j]);
            for c in 0..CG {
                a[r][c] = _mm512_fmadd_ps(p, vv[c], a[r][c]);
            }
        }
    }
    for r in 0..NR {
        for (c, x) in a[r].iter().enumerate() {
            _mm512_storeu_ps(ap.add(r * dv + c0 + 16 * c), *x);
        }
    }
}
