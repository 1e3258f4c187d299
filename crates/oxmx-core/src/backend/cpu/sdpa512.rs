//! The AVX-512 inner loop of attention over an unmasked key range: up to four query rows that
//! share a key/value head (decode with grouped-query heads: one position, the group's heads)
//! against keys `0..n`, updating each row's online-softmax state.
//!
//! Decode attention reads every key and value once, so it should run at memory bandwidth; the
//! portable loop in `fast::sdpa` spent ~3x that in arithmetic (an AVX2 dot product and a
//! horizontal sum per (row, key), and an accumulator load/store per (row, key, 16 values)).
//! Here each key chunk is loaded once for all rows, the value accumulators stay in registers for
//! a whole key tile, and f16/bf16 keys and values widen in the load.

use super::fastmath::{self, EXPM1_C, EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC};
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
        let corr = if nk == TILE { online_softmax_tile(&mut s, m, l) } else { online_softmax(&mut s, nk, m, l) };
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

/// `sdpa_rows::online_softmax` for a whole tile, 16 lanes at a time. The portable loop's
/// ordered max fold stayed scalar and its exponentials ran 8 lanes wide: a third of the
/// kernel's time with the keys in cache (f16, 4 rows: 88 -> 56 cycles per key and KV head in a
/// stand-alone copy). The weights are the same bits (`exp16` is `fastmath::exp`); only the
/// running sum adds its 16 lanes in another order.
#[inline(always)]
unsafe fn online_softmax_tile<const NR: usize>(s: &mut [[f32; TILE]; NR], m: &mut [f32], l: &mut [f32]) -> [f32; NR] {
    const { assert!(TILE == 32) };
    let mut corr = [1f32; NR];
    for r in 0..NR {
        let sp = s[r].as_mut_ptr();
        let (a, b) = (_mm512_loadu_ps(sp), _mm512_loadu_ps(sp.add(16)));
        // NaN scores (only from NaN inputs) may or may not win the max; they reach the output
        // through their own weights either way.
        let mt = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
        let m_new = if mt > m[r] { mt } else { m[r] };
        if m_new == f32::NEG_INFINITY {
            _mm512_storeu_ps(sp, _mm512_setzero_ps());
            _mm512_storeu_ps(sp.add(16), _mm512_setzero_ps());
            continue;
        }
        corr[r] = fastmath::exp(m[r] - m_new);
        let mv = _mm512_set1_ps(m_new);
        let (pa, pb) = (exp16(_mm512_sub_ps(a, mv)), exp16(_mm512_sub_ps(b, mv)));
        _mm512_storeu_ps(sp, pa);
        _mm512_storeu_ps(sp.add(16), pb);
        l[r] = l[r] * corr[r] + _mm512_reduce_add_ps(_mm512_add_ps(pa, pb));
        m[r] = m_new;
    }
    corr
}

/// `fastmath::exp` on 16 lanes, operation for operation (the same bits, NaN and the clamps
/// included).
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    let xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
    let xc = _mm512_mask_mov_ps(xc, nan, _mm512_setzero_ps());
    let magic = _mm512_set1_ps(ROUND_MAGIC);
    let n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)), magic), magic);
    let neg_n = _mm512_sub_ps(_mm512_setzero_ps(), n);
    let r = _mm512_fmadd_ps(neg_n, _mm512_set1_ps(LN2_LO), _mm512_fmadd_ps(neg_n, _mm512_set1_ps(LN2_HI), xc));
    let mut p = _mm512_set1_ps(EXPM1_C[0]);
    for &c in &EXPM1_C[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
    let ni = _mm512_cvttps_epi32(n);
    let n1 = _mm512_srai_epi32::<1>(ni);
    let pow2 = |e: __m512i| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(e, _mm512_set1_epi32(127))));
    let y = _mm512_mul_ps(_mm512_mul_ps(p, pow2(n1)), pow2(_mm512_sub_epi32(ni, n1)));
    _mm512_mask_mov_ps(y, nan, x)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp16` gives `fastmath::exp`'s bits on a dense sweep and on the special values.
    #[test]
    fn exp16_is_fastmath_exp() {
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")) {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let mut xs: Vec<f32> = (0..200_000).map(|i| -110.0 + i as f32 * 1e-3).collect();
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 88.7, 89.5, -87.3, -103.9, -104.5, 1e-30, -1e-30]);
        xs.resize(xs.len().div_ceil(16) * 16, 0.5);
        #[target_feature(enable = "avx512f,avx512dq")]
        unsafe fn run(xs: &[f32]) -> Vec<f32> {
            let mut out = vec![0f32; xs.len()];
            for (o, x) in out.chunks_exact_mut(16).zip(xs.chunks_exact(16)) {
                _mm512_storeu_ps(o.as_mut_ptr(), exp16(_mm512_loadu_ps(x.as_ptr())));
            }
            out
        }
        // SAFETY: the CPU has AVX-512 F and DQ (checked above).
        let got = unsafe { run(&xs) };
        for (x, g) in xs.iter().zip(&got) {
            let want = fastmath::exp(*x);
            assert!(want.to_bits() == g.to_bits() || (want.is_nan() && g.is_nan()), "exp({x}): {g} against {want}");
        }
    }
}
