//! The AVX-512 twin of `qmm`'s AVX2 affine mat-vec (decode's `x @ Wᵀ`): 16 packed words per
//! load instead of 8, so the unpack-convert-FMA work per weight is halved. On a 2-core Zen 5 the
//! AVX2 kernel ran at ~2/3 of DRAM bandwidth (it was compute-bound); this one nears the floor.
//!
//! Same scheme as the AVX2 kernel (see `permute_x`): lane `i` of extract `j` of a 16-word block
//! holds element `i * (32 / bits) + j`, `x` is permuted once per call into that order and
//! pre-multiplied so that masked-but-unshifted fields need no shift. A row whose word count is
//! 8 more than a multiple of 16 ends with one 8-word block in the AVX2 layout.

use super::qmm::{xsum_stride, Packed, Scales};
use crate::backend::cpu::simd::{hsum, prefetch_l2, Load16};
use std::arch::x86_64::*;

/// For block `j` of a chunk of 16 groups, the group (0..16) of each of its 16 lanes: lane `i`
/// holds word `16j + i`, in group `(16j + i) / words_per_group`. At most 32 blocks (8-bit,
/// groups of 128).
pub(super) type LaneGroups16 = [[i32; 16]; 32];

pub(super) fn lane_groups16(words_per_group: usize) -> LaneGroups16 {
    let mut t = [[0i32; 16]; 32];
    for (j, l) in t.iter_mut().enumerate().take(words_per_group.min(32)) {
        for (i, g) in l.iter_mut().enumerate() {
            *g = ((16 * j + i) / words_per_group) as i32;
        }
    }
    t
}

/// `x` in the kernel's order: blocks of 16 words (`512 / bits` elements), position `16j + i`
/// holding element `i * (32 / bits) + j` times `2^(-bits·j)` (1 for the last field); a last
/// 8-word block in the 8-lane order of `qmm::permute_x`. The result starts 64-byte aligned in
/// the returned buffer (at the returned offset): with the allocator's 16-byte alignment every
/// other 64-byte load of `x` split across two cache lines, and the kernel ran at half speed in
/// the runs where that happened.
pub(super) fn permute_x16(x: &[f32], m: usize, k: usize, bits: usize) -> (Vec<f32>, usize) {
    let per = 32 / bits;
    let mut buf = vec![0f32; m * k + 16];
    let off = buf.as_ptr().align_offset(64).min(16);
    let out = &mut buf[off..off + m * k];
    let factor = |j: usize| if j + 1 < per { (-((bits * j) as i32) as f32).exp2() } else { 1.0 };
    for r in 0..m {
        let (src, dst) = (&x[r * k..(r + 1) * k], &mut out[r * k..(r + 1) * k]);
        let mut b0 = 0;
        while b0 < k {
            let lanes = if b0 + 16 * per <= k { 16 } else { 8 };
            for j in 0..per {
                for i in 0..lanes {
                    dst[b0 + j * lanes + i] = src[b0 + i * per + j] * factor(j);
                }
            }
            b0 += lanes * per;
        }
    }
    (buf, off)
}

/// One output row `W[row] · x[r]` for every row `r < out.len()` of `x` (`xp` from
/// `permute_x16`, `xsum` per-group sums with `xsum_stride`). Affine 2/4/8-bit, `k · bits` a
/// multiple of 256.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C; `out.len() ≤ 8`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn avx512_row(xp: &[f32], xsum: &[f32], m: usize, w: &Packed, row: usize, idx: &LaneGroups16, out: &mut [f32]) {
    macro_rules! rows {
        ($b:literal, $s:expr, $bi:expr) => {
            match m {
                1 => row_b::<$b, { 32 / $b }, 1, _>(xp, xsum, w, row, $s, $bi, idx, out),
                2 => row_b::<$b, { 32 / $b }, 2, _>(xp, xsum, w, row, $s, $bi, idx, out),
                3 | 4 => row_b::<$b, { 32 / $b }, 4, _>(xp, xsum, w, row, $s, $bi, idx, out),
                _ => row_b::<$b, { 32 / $b }, 8, _>(xp, xsum, w, row, $s, $bi, idx, out),
            }
        };
    }
    by_bits_and_scales!(w, rows)
}

/// How far ahead of its reads the kernel prefetches packed words (see `simd::prefetch_l2`).
const QMV_AHEAD: usize = 4096;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_b<const B: i32, const PER: usize, const M: usize, T: Load16>(
    xp: &[f32],
    xsum: &[f32],
    w: &Packed,
    row: usize,
    s: &[T],
    b: &[T],
    idx: &LaneGroups16,
    out: &mut [f32],
) {
    let m = out.len().min(M);
    let k = w.k;
    let ng = w.groups();
    let ngp = xsum_stride(ng);
    let words = w.bytes.as_ptr().add(row * w.row_bytes()) as *const u32;
    let wpg = w.gs * B as usize / 32; // words per group, a power of two
    let (s, b) = (&s[row * ng..(row + 1) * ng], &b[row * ng..(row + 1) * ng]);
    let mask = _mm512_set1_epi32((1 << B) - 1);
    let mut tot = [_mm512_setzero_ps(); M];
    let mut tail = [_mm256_setzero_ps(); M];
    // The 16 words from word `wo` (a multiple of 16), scaled per lane by `sv`.
    macro_rules! block16 {
        ($wo:expr, $sv:expr) => {{
            let (wo, sv) = ($wo, $sv);
            let v = _mm512_loadu_si512(words.add(wo) as *const __m512i);
            let mut q = [_mm512_setzero_ps(); PER];
            for (j, qj) in q.iter_mut().enumerate() {
                let t = if j + 1 < PER {
                    _mm512_and_si512(v, _mm512_sllv_epi32(mask, _mm512_set1_epi32(j as i32 * B)))
                } else {
                    _mm512_srlv_epi32(v, _mm512_set1_epi32(32 - B))
                };
                *qj = _mm512_cvtepi32_ps(t);
            }
            for r in 0..m {
                let xr = xp.as_ptr().add(r * k + wo * PER);
                // Two chains so the FMA latency is hidden.
                let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for j in (0..PER).step_by(2) {
                    a0 = _mm512_fmadd_ps(q[j], _mm512_loadu_ps(xr.add(j * 16)), a0);
                    a1 = _mm512_fmadd_ps(q[j + 1], _mm512_loadu_ps(xr.add(j * 16 + 16)), a1);
                }
                tot[r] = _mm512_fmadd_ps(_mm512_add_ps(a0, a1), sv, tot[r]);
            }
        }};
    }
    // A macro, not a closure: a closure is not compiled with this function's target features,
    // and a non-inlined call passing 512-bit vectors halved the kernel's speed.
    macro_rules! lanes {
        ($j:expr) => {
            _mm512_loadu_si512(idx[$j].as_ptr() as *const __m512i)
        };
    }
    let full = ng / 16 * 16;
    for g in (0..full).step_by(16) {
        // The words of these 16 groups, QMV_AHEAD bytes on (into the next row at the end: a
        // thread's rows are consecutive).
        prefetch_l2((words.add(g * wpg) as *const u8).wrapping_add(QMV_AHEAD), 64 * wpg);
        let sv = T::load16(s.as_ptr().add(g));
        for j in 0..wpg {
            block16!(g * wpg + 16 * j, _mm512_permutexvar_ps(lanes!(j), sv));
        }
        let bv = T::load16(b.as_ptr().add(g));
        for r in 0..m {
            tot[r] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xsum.as_ptr().add(r * ngp + g)), tot[r]);
        }
    }
    if full < ng {
        // The last (< 16) groups: scales and biases copied out zero-padded, so lanes past the
        // row's end add nothing (their x sums are zero-padded too).
        let (mut sp, mut bp) = ([T::default(); 16], [T::default(); 16]);
        sp[..ng - full].copy_from_slice(&s[full..]);
        bp[..ng - full].copy_from_slice(&b[full..]);
        let sv = T::load16(sp.as_ptr());
        let words_left = (ng - full) * wpg;
        for j in 0..words_left / 16 {
            block16!(full * wpg + 16 * j, _mm512_permutexvar_ps(lanes!(j), sv));
        }
        if words_left % 16 == 8 {
            // One 8-word block ends the row, in the 8-lane order.
            let j = words_left / 16;
            let wo = full * wpg + 16 * j;
            let sv8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(lanes!(j), sv));
            let v = _mm256_loadu_si256(words.add(wo) as *const __m256i);
            let mask8 = _mm256_set1_epi32((1 << B) - 1);
            let mut q = [_mm256_setzero_ps(); PER];
            for (jj, qj) in q.iter_mut().enumerate() {
                let t = if jj + 1 < PER {
                    _mm256_and_si256(v, _mm256_sllv_epi32(mask8, _mm256_set1_epi32(jj as i32 * B)))
                } else {
                    _mm256_srlv_epi32(v, _mm256_set1_epi32(32 - B))
                };
                *qj = _mm256_cvtepi32_ps(t);
            }
            for r in 0..m {
                let xr = xp.as_ptr().add(r * k + wo * PER);
                let mut a = _mm256_setzero_ps();
                for (jj, qj) in q.iter().enumerate() {
                    a = _mm256_fmadd_ps(*qj, _mm256_loadu_ps(xr.add(jj * 8)), a);
                }
                tail[r] = _mm256_fmadd_ps(a, sv8, tail[r]);
            }
        }
        let bv = T::load16(bp.as_ptr());
        for r in 0..m {
            tot[r] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xsum.as_ptr().add(r * ngp + full)), tot[r]);
        }
    }
    for r in 0..m {
        out[r] = _mm512_reduce_add_ps(tot[r]) + hsum(std::mem::transmute::<__m256, [f32; 8]>(tail[r]));
    }
}
