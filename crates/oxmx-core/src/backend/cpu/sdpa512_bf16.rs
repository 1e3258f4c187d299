//! Decode attention over bfloat16 keys and values with AVX-512 BF16 dot products (`vdpbf16ps`):
//! the same online-softmax walk as `sdpa512`, with about half its vector work per key.
//!
//! `sdpa512` widens every key and value to f32 (two instructions per 16) and runs one FMA per
//! row per 16; on a Sapphire Rapids core that left the bfloat16 kernel bound by its own
//! arithmetic, slower per byte than the f32 one (one thread: 9.0 against 11.3 GB/s). Here
//! - a score is `vdpbf16ps` of the query (rounded to bfloat16 once per call, as MLX's op-built
//!   attention rounds `q * scale` to the input dtype) with 32 key values in place, no widening;
//! - values go in key pairs: one `vpunpck{l,h}wd` interleaves rows j and j+1, and `vdpbf16ps`
//!   adds `p[j] v[j] + p[j+1] v[j+1]` for 16 lanes. The softmax weights are rounded to
//!   bfloat16 for this (relative error 2^-9, below the output's own rounding; PyTorch's CPU
//!   flash attention does the same), while the running sums stay f32.
//!
//! Measured on a 2-core Sapphire Rapids guest (`oxmx-bench fast_sdpa_decode`: 1 query, 32k
//! keys, GQA 32/8, head 128; alternating with `OXMX_SDPA_BF16DP=0`, which keeps `sdpa512`):
//! one thread 14.8-15.1 ms against 16.0-16.5, two threads 6.4-6.8 ms against 7.7-8.4.
//! `vdpbf16ps` issues only about once per three cycles there, so this is not the 2x the
//! instruction count promises: the kernel is then mostly waiting on memory.
//!
//! The pair products land in an interleaved lane order (lane `4L + i` of the "low" vector holds
//! value `8L + i` of a 32-value chunk, the "high" vector `8L + 4 + i`); accumulators are
//! permuted into that order at a tile's start and back at its end.

use super::sdpa512::sum4;
use super::sdpa_rows::{online_softmax, Rows, AHEAD, TILE};
use super::simd::prefetch_l2;
use half::bf16;
use std::arch::x86_64::*;

/// Whether this CPU has the instructions and the head sizes fit (multiples of 32 values).
pub(super) fn usable(d: usize, dv: usize) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        super::simd::level() == super::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && std::env::var("OXMX_SDPA_BF16DP").map_or(true, |v| v != "0")
    });
    cpu && d % 32 == 0 && dv % 32 == 0
}

/// As `sdpa512::attend` for bfloat16 keys and values.
///
/// # Safety
/// `usable(d, dv)` held; the pointers are valid for the rows described.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")]
pub(super) unsafe fn attend(rows: Rows, k: *const bf16, ks: usize, v: *const bf16, vs: usize, n: usize, d: usize, dv: usize) {
    match rows.m.len() {
        1 => attend_n::<1>(rows, k, ks, v, vs, n, d, dv),
        2 => attend_n::<2>(rows, k, ks, v, vs, n, d, dv),
        3 => attend_n::<3>(rows, k, ks, v, vs, n, d, dv),
        _ => attend_n::<4>(rows, k, ks, v, vs, n, d, dv),
    }
}

/// 32-value chunks of the value accumulators held in registers per pass over a tile
/// (2 x NR x CG accumulators).
const CG: usize = 2;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn attend_n<const NR: usize>(rows: Rows, k: *const bf16, ks: usize, v: *const bf16, vs: usize, n: usize, d: usize, dv: usize) {
    let Rows { q, m, l, acc } = rows;
    // The query rows as bfloat16, rounded to nearest even.
    let mut qb = vec![0u16; NR * d];
    for (o, x) in qb.iter_mut().zip(q.iter()) {
        *o = bf16::from_f32(*x).to_bits();
    }
    let mut s = [[0f32; TILE]; NR];
    let mut pairs = [[0u32; TILE / 2]; NR];
    let mut j0 = 0;
    while j0 < n {
        let nk = TILE.min(n - j0);
        scores::<NR>(&qb, k.add(j0 * ks), ks, nk, d, &mut s);
        let corr = online_softmax(&mut s, nk, m, l);
        for r in 0..NR {
            // An odd last key pairs with itself at weight 0.
            if nk % 2 == 1 {
                s[r][nk] = 0.0;
            }
            let lo = _mm512_loadu_ps(s[r].as_ptr());
            let hi = _mm512_loadu_ps(s[r].as_ptr().add(16));
            _mm512_storeu_si512(
                pairs[r].as_mut_ptr() as *mut __m512i,
                std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)),
            );
        }
        let vt = v.add(j0 * vs);
        let mut c0 = 0;
        while c0 + 32 * CG <= dv {
            values::<NR, CG>(vt, vs, nk, c0, dv, &pairs, &corr, acc);
            c0 += 32 * CG;
        }
        while c0 < dv {
            values::<NR, 1>(vt, vs, nk, c0, dv, &pairs, &corr, acc);
            c0 += 32;
        }
        j0 += nk;
    }
}

/// `s[r][j] = q[r] · k[j]` for the tile's `nk` keys, 32 products per instruction.
#[inline(always)]
unsafe fn scores<const NR: usize>(qb: &[u16], k: *const bf16, ks: usize, nk: usize, d: usize, s: &mut [[f32; TILE]; NR]) {
    let qp = qb.as_ptr();
    for j in 0..nk {
        let kp = k.add(j * ks);
        prefetch_l2(kp.wrapping_add(AHEAD * ks), d * 2);
        let mut a = [_mm512_setzero_ps(); NR];
        let mut c = 0;
        while c < d {
            let kc = bh(kp.add(c) as *const u16);
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = _mm512_dpbf16_ps(*ar, bh(qp.add(r * d + c)), kc);
            }
            c += 32;
        }
        let mut four = [_mm512_setzero_ps(); 4];
        four[..NR].copy_from_slice(&a);
        let sums: [f32; 4] = std::mem::transmute(sum4(four));
        for r in 0..NR {
            s[r][j] = sums[r];
        }
    }
}

/// 32 bfloat16 values from `p`.
#[inline(always)]
unsafe fn bh(p: *const u16) -> __m512bh {
    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const __m512i))
}

/// `acc[r][c0..c0 + 32 G] = acc * corr[r] + Σ_j p[r][j] v[j][c0..]` over the tile's keys in
/// pairs, the accumulators in registers (in the pair lane order) across the tile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn values<const NR: usize, const G: usize>(
    v: *const bf16,
    vs: usize,
    nk: usize,
    c0: usize,
    dv: usize,
    pairs: &[[u32; TILE / 2]; NR],
    corr: &[f32; NR],
    acc: &mut [f32],
) {
    let ap = acc.as_mut_ptr();
    // a[r][g] = (low, high) lanes of chunk g.
    let mut a = [[[_mm512_setzero_ps(); 2]; G]; NR];
    for r in 0..NR {
        let cr = _mm512_set1_ps(corr[r]);
        for (g, x) in a[r].iter_mut().enumerate() {
            let p = ap.add(r * dv + c0 + 32 * g);
            let (n0, n1) = (_mm512_mul_ps(_mm512_loadu_ps(p), cr), _mm512_mul_ps(_mm512_loadu_ps(p.add(16)), cr));
            // lo = 128-bit lanes (n0.0, n0.2, n1.0, n1.2); hi = (n0.1, n0.3, n1.1, n1.3).
            x[0] = _mm512_shuffle_f32x4::<0b10_00_10_00>(n0, n1);
            x[1] = _mm512_shuffle_f32x4::<0b11_01_11_01>(n0, n1);
        }
    }
    let mut j = 0;
    while j < nk {
        let v0 = v.add(j * vs + c0);
        // The pair's second row; an odd last key pairs with itself (its weight is 0).
        let v1 = if j + 1 < nk { v0.add(vs) } else { v0 };
        if c0 == 0 {
            prefetch_l2(v0.wrapping_add(AHEAD * vs), dv * 2);
            prefetch_l2(v1.wrapping_add(AHEAD * vs), dv * 2);
        }
        let mut lo = [_mm512_setzero_si512(); G];
        let mut hi = [_mm512_setzero_si512(); G];
        for g in 0..G {
            let x0 = _mm512_loadu_si512(v0.add(32 * g) as *const __m512i);
            let x1 = _mm512_loadu_si512(v1.add(32 * g) as *const __m512i);
            lo[g] = _mm512_unpacklo_epi16(x0, x1);
            hi[g] = _mm512_unpackhi_epi16(x0, x1);
        }
        for r in 0..NR {
            let p = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pairs[r][j / 2] as i32));
            for g in 0..G {
                a[r][g][0] = _mm512_dpbf16_ps(a[r][g][0], p, std::mem::transmute::<__m512i, __m512bh>(lo[g]));
                a[r][g][1] = _mm512_dpbf16_ps(a[r][g][1], p, std::mem::transmute::<__m512i, __m512bh>(hi[g]));
            }
        }
        j += 2;
    }
    for r in 0..NR {
        for (g, [lo, hi]) in a[r].iter().enumerate() {
            // Back to natural order: n0 = (lo.0, hi.0, lo.1, hi.1), n1 = (lo.2, hi.2, lo.3, hi.3).
            let t0 = _mm512_shuffle_f32x4::<0b01_00_01_00>(*lo, *hi); // (lo.0, lo.1, hi.0, hi.1)
            let t1 = _mm512_shuffle_f32x4::<0b11_10_11_10>(*lo, *hi); // (lo.2, lo.3, hi.2, hi.3)
            let p = ap.add(r * dv + c0 + 32 * g);
            _mm512_storeu_ps(p, _mm512_shuffle_f32x4::<0b11_01_10_00>(t0, t0));
            _mm512_storeu_ps(p.add(16), _mm512_shuffle_f32x4::<0b11_01_10_00>(t1, t1));
        }
    }
}
