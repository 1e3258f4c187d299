//! The affine 2/4/8-bit mat-vec on AVX2 with `x` rounded to 16-bit integers: codes are used as
//! the 16-bit fields they already are (a shift and a mask, no conversion to float) and
//! `vpmaddwd` takes 16 products per instruction, so a block of 64 4-bit codes costs ~20
//! instructions against ~35 for the float path (`qmm::avx2_row_b`, whose integer-to-float
//! conversions all go to one port on Zen 2).
//!
//! Only for half-precision `x` (f16/bf16 arrays): each group of `x` gets its own scale
//! `d = max|x| / 32767`, so `|x - d·xq| ≤ max|x| / 65534`: ~1e-5 of `Σ|x·w|` (twenty-fifth
//! session's measurement), ~5e-6 with the correction below; an f32 `x` keeps the
//! float path, and so does a result in f32 (f32 scales): only a half-precision output, itself
//! rounded far more coarsely, takes this kernel. A row's result does not depend on the other rows of `x` (each row is rounded on
//! its own), so batch invariance holds. The bias term uses the exact float sums of `x`.
//!
//! Layout: int16 word `t` of a block of 8 packed words holds fields `f < F = 16 / bits`, field
//! `f` being code `t·F + f`. `x` is permuted once per call so that the 16 values for field `f`
//! of a block are contiguous; `vpmaddwd` of field `f` with them leaves in 32-bit lane `i` the
//! products of packed word `i`, which is the lane-to-group map of the float path (`LaneGroups`).

use super::qmm::{prefetch_blocks, xsum_stride, LaneGroups, Packed, Scales};
use crate::backend::cpu::simd::Load8;
use std::arch::x86_64::*;

/// `x` rounded per group to 16-bit integers in the kernel's order, each group's step `d` and
/// what the rounding lost, `Σ(x - d·xq)`.
pub(super) struct XI16 {
    /// The rounded values from `off` (64-byte aligned: a load split across two cache lines
    /// costs twice).
    xq: Vec<i16>,
    off: usize,
    /// `[m, xsum_stride(groups)]`, zero-padded (as are `lost`'s rows).
    pub(super) dx: Vec<f32>,
    pub(super) lost: Vec<f32>,
}

const ROUND: f32 = 12582912.0;

/// Rounds the `m` rows of `x` (`[m, k]`) per group of `gs`, for `bits`-bit codes, in the order
/// of a kernel whose loads hold `words` 16-bit words (16 here, 32 for `qmv_vnni`).
///
/// # Safety
/// The CPU has AVX2 and FMA (the loops are compiled for them: the rounding is one instruction);
/// `k` is a multiple of `words · 16 / bits`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn prepare(x: &[f32], m: usize, k: usize, gs: usize, bits: usize, words: usize) -> XI16 {
    let f = 16 / bits;
    let e = words * f; // elements per block of `words / 2` packed words
    let ngp = xsum_stride(k / gs);
    let mut xq = vec![0i16; m * k + 32];
    let off = xq.as_ptr().align_offset(64).min(32);
    let mut dx = vec![0f32; m * ngp];
    let mut lost = vec![0f32; m * ngp];
    let mut lin = vec![0i16; k];
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for (g, (xs, qs)) in xr.chunks_exact(gs).zip(lin.chunks_exact_mut(gs)).enumerate() {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
            let d = amax / 32767.0;
            let mut l = 0f32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                // Rounded to nearest even by adding and taking off 1.5·2^23 (|v·inv| ≤ 32767, so
                // the sum's last place is 1): vectorised, where `round_ties_even` calls libm.
                // `as` saturates (and maps NaN to 0).
                *q = ((v * inv + ROUND) - ROUND) as i16;
                l += v - d * *q as f32;
            }
            dx[r * ngp + g] = d;
            lost[r * ngp + g] = l;
        }
        // Within each block, field `fi` of word `t` (element `t·f + fi`) goes to `fi·words + t`.
        for (src, dst) in lin.chunks_exact(e).zip(xq[off + r * k..off + (r + 1) * k].chunks_exact_mut(e)) {
            for t in 0..words {
                for fi in 0..f {
                    dst[fi * words + t] = src[t * f + fi];
                }
            }
        }
    }
    XI16 { xq, off, dx, lost }
}

impl XI16 {
    /// Row `r` of the rounded `x` (`k` values).
    pub(super) fn row(&self, r: usize, k: usize) -> *const i16 {
        self.xq[self.off + r * k..].as_ptr()
    }
}

/// `W[row] · x[r]` for every row `r < out.len() ≤ 8` (`prepare` of the same rows; `xsum` their
/// group sums as for the float path).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` is affine with 2, 4 or 8 bits and `k · bits` a multiple
/// of 256; `xi`/`xsum` were built for `out.len()` rows of this `w`'s `k` and group size.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn row(xi: &XI16, xsum: &[f32], w: &Packed, row: usize, idx: &LaneGroups, out: &mut [f32]) {
    macro_rules! rows {
        ($b:literal, $s:expr, $bi:expr) => {
            match out.len() {
                1 => row_b::<$b, { 16 / $b }, 1, _>(xi, xsum, w, row, $s, $bi, idx, out),
                2 => row_b::<$b, { 16 / $b }, 2, _>(xi, xsum, w, row, $s, $bi, idx, out),
                3 | 4 => row_b::<$b, { 16 / $b }, 4, _>(xi, xsum, w, row, $s, $bi, idx, out),
                8 => row_b::<$b, { 16 / $b }, 8, _>(xi, xsum, w, row, $s, $bi, idx, out),
                _ => row_b::<$b, { 16 / $b }, 7, _>(xi, xsum, w, row, $s, $bi, idx, out),
            }
        };
    }
    by_bits_and_scales!(w, rows)
}

/// The fields of the 16-bit words of `v` (`B` bits each), as 16-bit integers: the first
/// `16 / B` entries are used.
#[inline(always)]
unsafe fn fields<const B: i32>(v: __m256i) -> [__m256i; 8] {
    let mask = _mm256_set1_epi16((1 << B) - 1);
    let and = |t: __m256i| _mm256_and_si256(t, mask);
    let z = _mm256_setzero_si256();
    match B {
        8 => [and(v), _mm256_srli_epi16::<8>(v), z, z, z, z, z, z],
        4 => [and(v), and(_mm256_srli_epi16::<4>(v)), and(_mm256_srli_epi16::<8>(v)), _mm256_srli_epi16::<12>(v), z, z, z, z],
        _ => [
            and(v),
            and(_mm256_srli_epi16::<2>(v)),
            and(_mm256_srli_epi16::<4>(v)),
            and(_mm256_srli_epi16::<6>(v)),
            and(_mm256_srli_epi16::<8>(v)),
            and(_mm256_srli_epi16::<10>(v)),
            and(_mm256_srli_epi16::<12>(v)),
            _mm256_srli_epi16::<14>(v),
        ],
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_b<const B: i32, const F: usize, const M: usize, T: Load8>(
    xi: &XI16,
    xsum: &[f32],
    w: &Packed,
    row: usize,
    s: &[T],
    b: &[T],
    idx: &LaneGroups,
    out: &mut [f32],
) {
    let m = if matches!(M, 1 | 2 | 8) { M } else { out.len().min(M) };
    let k = w.k;
    let ng = w.groups();
    let ngp = xsum_stride(ng);
    let words = w.bytes.as_ptr().add(row * w.row_bytes()) as *const __m256i;
    let wpg = w.gs * B as usize / 32; // words per group, a power of two
    let (s_all, b_all, row_start) = (s, b, row * ng);
    let (s, b) = (&s[row_start..row_start + ng], &b[row_start..row_start + ng]);
    // Blocks are taken in pairs, (p_j + p_j+1) added to the total: a block is ~6 cycles of
    // work, less than the FMA latency one chain through every block would wait on. The order
    // is the same for every row count (batch invariance).
    let mut tot = [_mm256_setzero_ps(); M];
    let pf = prefetch_blocks();
    // The rounding error meets s·q, not w = s·q + b: its share s·c·Σδx with c the middle code
    // is added back per group (this halves it), leaving s·Σδx·(q - c).
    let mid = _mm256_set1_ps(((1 << B) - 1) as f32 / 2.0);
    // Block `j` of the chunk at group `g`: its products per row into `$p` (`$first`: set, else
    // added).
    macro_rules! block {
        ($g:expr, $j:expr, $p:ident, $svr:ident, $first:expr) => {{
            let (g, j) = ($g, $j);
            let blk = g * wpg / 8 + j;
            if pf > 0 && j % 2 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(words.add(blk + pf) as *const i8);
            }
            let q = fields::<B>(_mm256_loadu_si256(words.add(blk)));
            let perm = _mm256_loadu_si256(idx[j].as_ptr() as *const __m256i);
            for r in 0..m {
                let xr = xi.row(r, k).add(blk * 16 * F) as *const __m256i;
                // Two chains so the multiply-add latency is hidden.
                let mut a0 = _mm256_madd_epi16(q[0], _mm256_loadu_si256(xr));
                let mut a1 = _mm256_madd_epi16(q[1], _mm256_loadu_si256(xr.add(1)));
                for f in (2..F).step_by(2) {
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(q[f], _mm256_loadu_si256(xr.add(f))));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(q[f + 1], _mm256_loadu_si256(xr.add(f + 1))));
                }
                let (a, sv) = (_mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)), _mm256_permutevar8x32_ps($svr[r], perm));
                $p[r] = if $first { _mm256_mul_ps(a, sv) } else { _mm256_fmadd_ps(a, sv, $p[r]) };
            }
        }};
    }
    // Eight groups from `g`: per row, the groups' scales times x's steps, spread over each
    // block's lanes; the bias term with x's exact group sums, and the correction.
    macro_rules! chunk {
        ($g:expr, $sv8:expr, $bv8:expr) => {{
            let (g, sv8, bv8) = ($g, $sv8, $bv8);
            let sc8 = _mm256_mul_ps(sv8, mid);
            let mut svr = [_mm256_setzero_ps(); M];
            for r in 0..m {
                let at = r * ngp + g;
                svr[r] = _mm256_mul_ps(sv8, _mm256_loadu_ps(xi.dx.as_ptr().add(at)));
                tot[r] = _mm256_fmadd_ps(bv8, _mm256_loadu_ps(xsum.as_ptr().add(at)), tot[r]);
                tot[r] = _mm256_fmadd_ps(sc8, _mm256_loadu_ps(xi.lost.as_ptr().add(at)), tot[r]);
            }
            let blocks = ((ng - g).min(8) * wpg).div_ceil(8);
            let mut p = [_mm256_setzero_ps(); M];
            for j in (0..blocks).step_by(2) {
                block!(g, j, p, svr, true);
                if j + 1 < blocks {
                    block!(g, j + 1, p, svr, false);
                }
                for r in 0..m {
                    tot[r] = _mm256_add_ps(tot[r], p[r]);
                }
            }
        }};
    }
    let full = ng / 8 * 8;
    for g in (0..full).step_by(8) {
        chunk!(g, T::load8(s.as_ptr().add(g)), T::load8(b.as_ptr().add(g)));
    }
    if full < ng {
        // The last groups, as in the float path: lanes past the row's end feed no block and
        // their biases (and x's padded sums) are zero.
        if row_start + full + 8 <= s_all.len() {
            let (sp, bp) = (s_all.as_ptr().add(row_start + full), b_all.as_ptr().add(row_start + full));
            let live = _mm256_cmpgt_epi32(_mm256_set1_epi32((ng - full) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            chunk!(full, T::load8(sp), _mm256_and_ps(T::load8(bp), _mm256_castsi256_ps(live)));
        } else {
            let (mut sp, mut bp) = ([T::default(); 8], [T::default(); 8]);
            sp[..ng - full].copy_from_slice(&s[full..]);
            bp[..ng - full].copy_from_slice(&b[full..]);
            chunk!(full, T::load8(sp.as_ptr()), T::load8(bp.as_ptr()));
        }
    }
    for r in 0..m {
        out[r] = crate::backend::cpu::simd::hsum(std::mem::transmute::<__m256, [f32; 8]>(tot[r]));
    }
}
