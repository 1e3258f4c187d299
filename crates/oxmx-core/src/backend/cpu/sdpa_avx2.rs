//! The AVX2 twin of `sdpa512`: attention of up to four query rows that share a key/value head
//! over an unmasked key range, for hosts without AVX-512 (AMD Zen 2/3, older Intel).
//!
//! The portable loop in `fast::sdpa` widened each tile of f16/bf16 keys and values into a
//! scratch buffer and ran one dot product per (row, key): decode attention with a half-precision
//! cache ran at ~21% of the DRAM floor on a Zen 2 host, f32 at ~50%. Here, as in `sdpa512`,
//! each key and value chunk is loaded (and widened) once for all rows, and the value
//! accumulators stay in registers for a whole tile. With 16 ymm registers and an FMA latency of
//! 4-5 cycles, the score loop also walks several keys at once so every row has enough
//! independent FMA chains (a single chain per row ran at a third of the FMA rate).

use super::sdpa_rows::{online_softmax, Rows, AHEAD, TILE};
use super::simd::{prefetch_l2, Load8};
use std::arch::x86_64::*;

/// Attends `rows` (at most `MAX_ROWS`) to `n` keys and values: key `j` at `k + j * ks`
/// (`d` elements), value `j` at `v + j * vs` (`dv` elements).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `d` and `dv` are multiples of 8; the pointers are valid for
/// the rows described.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend<T: Load8>(rows: Rows, k: *const T, ks: usize, v: *const T, vs: usize, n: usize, d: usize, dv: usize) {
    // KB: keys per score step (KB x NR accumulator chains, at most 8); CG: chunks of 8 values
    // per value step (NR x CG accumulators, at most 8).
    match rows.m.len() {
        1 => attend_n::<T, 1, 8, 8>(rows, k, ks, v, vs, n, d, dv),
        2 => attend_n::<T, 2, 4, 4>(rows, k, ks, v, vs, n, d, dv),
        3 => attend_n::<T, 3, 2, 2>(rows, k, ks, v, vs, n, d, dv),
        _ => attend_n::<T, 4, 2, 2>(rows, k, ks, v, vs, n, d, dv),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn attend_n<T: Load8, const NR: usize, const KB: usize, const CG: usize>(
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
        let kt = k.add(j0 * ks);
        let mut j = 0;
        while j + KB <= nk {
            scores::<T, NR, KB>(q, kt, ks, j, d, &mut s);
            j += KB;
        }
        while j < nk {
            scores::<T, NR, 1>(q, kt, ks, j, d, &mut s);
            j += 1;
        }
        let corr = online_softmax(&mut s, nk, m, l);
        let vt = v.add(j0 * vs);
        let mut c0 = 0;
        while c0 + 8 * CG <= dv {
            values::<T, NR, CG>(vt, vs, nk, c0, dv, &s, &corr, acc);
            c0 += 8 * CG;
        }
        while c0 < dv {
            values::<T, NR, 1>(vt, vs, nk, c0, dv, &s, &corr, acc);
            c0 += 8;
        }
        j0 += nk;
    }
}

/// `s[r][j0 + b] = q[r] · k[j0 + b]` for `b < KB`: each key chunk is loaded once and used by
/// every row, and the `KB x NR` dot products are independent accumulator chains.
#[inline(always)]
unsafe fn scores<T: Load8, const NR: usize, const KB: usize>(
    q: &[f32],
    k: *const T,
    ks: usize,
    j0: usize,
    d: usize,
    s: &mut [[f32; TILE]; NR],
) {
    let qp = q.as_ptr();
    for b in 0..KB {
        prefetch_l2(k.add((j0 + b) * ks).wrapping_add(AHEAD * ks), d * std::mem::size_of::<T>());
    }
    let mut a = [[_mm256_setzero_ps(); NR]; KB];
    let mut c = 0;
    while c < d {
        // The rows' query chunks are loaded once for the KB keys (loads, not FMAs, bounded
        // this loop when each FMA read its query chunk).
        let mut qc = [_mm256_setzero_ps(); NR];
        for (r, x) in qc.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(qp.add(r * d + c));
        }
        for (b, ab) in a.iter_mut().enumerate() {
            let kc = T::load8(k.add((j0 + b) * ks + c));
            for (r, ar) in ab.iter_mut().enumerate() {
                *ar = _mm256_fmadd_ps(qc[r], kc, *ar);
            }
        }
        c += 8;
    }
    for (b, ab) in a.iter().enumerate() {
        for (r, ar) in ab.iter().enumerate() {
            s[r][j0 + b] = hsum8(*ar);
        }
    }
}

/// The sum of a ymm register's eight lanes.
#[inline(always)]
unsafe fn hsum8(x: __m256) -> f32 {
    let h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
}

/// `acc[r][c0..c0 + 8 CG] = acc * corr[r] + Σ_j s[r][j] v[j][c0..]`, the accumulators held in
/// registers across the tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn values<T: Load8, const NR: usize, const CG: usize>(
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
    let mut a = [[_mm256_setzero_ps(); CG]; NR];
    for r in 0..NR {
        let cr = _mm256_set1_ps(corr[r]);
        for (c, x) in a[r].iter_mut().enumerate() {
            *x = _mm256_mul_ps(_mm256_loadu_ps(ap.add(r * dv + c0 + 8 * c)), cr);
        }
    }
    for j in 0..nk {
        let vp = v.add(j * vs + c0);
        if c0 == 0 {
            prefetch_l2(vp.wrapping_add(AHEAD * vs), dv * std::mem::size_of::<T>());
        }
        let mut vv = [_mm256_setzero_ps(); CG];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = T::load8(vp.add(8 * c));
        }
        for r in 0..NR {
            let p = _mm256_set1_ps(s[r][j]);
            for c in 0..CG {
                a[r][c] = _mm256_fmadd_ps(p, vv[c], a[r][c]);
            }
        }
    }
    for r in 0..NR {
        for (c, x) in a[r].iter().enumerate() {
            _mm256_storeu_ps(ap.add(r * dv + c0 + 8 * c), *x);
        }
    }
}
