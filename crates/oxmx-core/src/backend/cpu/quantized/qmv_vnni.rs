//! The affine 2/4/8-bit mat-vec on AVX-512 VNNI: `qmv_i16`'s method (`x` rounded per group to
//! 16-bit integers, codes used as the 16-bit fields they already are) at twice the width, with
//! `vpdpwssd` multiplying 32 pairs and adding them into 16 lanes in one instruction.
//!
//! Why it replaces the bfloat16 kernel (`qmv_bf16`) for half-precision `x` and scales on hosts
//! that have both: on a Sapphire Rapids core `vdpbf16ps` issues about one per three cycles, so
//! its four products per 128 4-bit codes took ~14 of the ~17 cycles a block cost in L2; the same
//! block here is ~12 cycles (mask and shift per field, four `vpdpwssd`, one convert and one
//! FMA). One thread in L2: 0.146-0.155 ms against 0.227-0.231 (1024 x 4096); two threads,
//! DRAM-cold, 4096 x 14336: 1.45-1.56 ms against 1.56-1.74 (BENCHMARKS.md, thirty-sixth session).
//!
//! Numerics are `qmv_i16`'s: each group of `x` gets its own step, the rounding error's share
//! `s·c·Σδx` is added back per group, the bias term uses `x`'s exact float sums; integer sums are
//! exact, so the order of the products does not matter and a row of `x` gets the same bits in
//! any batch. Only for half-precision `x` and scales (as `qmv_i16`; mixed bf16/f16 gives an f32
//! result, held to the same 5e-5 of `Σ|x·w|`).
//!
//! Layout: a load is a block of 16 packed words (32 16-bit words). Field `f` of 16-bit word `t`
//! is code `t·F + f` (`F = 16 / bits`); `prepare(.., 32)` puts the values for field `f` at
//! `32f + t`, so `vpdpwssd` of field `f` leaves in 32-bit lane `i` the products of packed word
//! `i`: `qmv512`'s lane-to-group map (`LaneGroups16`).

use super::qmm::{xsum_stride, Packed, Scales};
use super::qmv512::LaneGroups16;
use super::qmv_i16::XI16;
use crate::backend::cpu::simd::Load16;
use std::arch::x86_64::*;

/// 16-bit words a block (one 64-byte load).
pub(super) const WORDS: usize = 32;

/// Whether this CPU runs the kernel and the matrix fits it: affine 2/4/8-bit, rows of whole
/// 64-byte blocks. `OXMX_QMV_VNNI=0` turns it off (for A/B measurements).
pub(super) fn usable(w: &Packed) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        crate::backend::cpu::simd::level() == crate::backend::cpu::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && crate::backend::cpu::simd::avx2_fma()
            && std::env::var("OXMX_QMV_VNNI").map_or(true, |v| v != "0")
    });
    cpu && w.is_affine() && matches!(w.bits, 2 | 4 | 8) && (w.k * w.bits).is_multiple_of(512)
}

/// How far ahead of its reads the kernel prefetches packed bytes into L2 (as `qmv_bf16`).
const AHEAD: usize = 8192;

/// Outputs `W[row] · x[r]` into `out[r]` for every row `r < m ≤ 8` of `x` (`xi` from
/// `qmv_i16::prepare(.., WORDS)` of those rows, `xsum` their group sums with `xsum_stride`), and
/// with `apart = Some(a)` (one row of x only) also `W[row + a] · x[0]` into `out[a]`: two weight
/// rows at once read two streams of packed bytes, which DRAM serves faster than one (a 4096 x
/// 14336 4-bit matrix, two cores, a stand-alone loop: 1.27 against 1.38 ms), and rows `a` apart
/// keep each stream running on into its next row, which the prefetches have already asked for.
///
/// # Safety
/// `usable(w)` holds; `xi` and `xsum` were built for `m` rows of this `w`'s `k` and group size;
/// `out` holds `m` outputs, or `a + 1` with `apart = Some(a)` and `m = 1`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn rows(
    xi: &XI16,
    xsum: &[f32],
    m: usize,
    w: &Packed,
    row: usize,
    apart: Option<usize>,
    idx: &LaneGroups16,
    out: &mut [f32],
) {
    macro_rules! rows {
        ($b:literal, $s:expr, $bi:expr) => {
            match (m, apart) {
                (1, Some(a)) => row_b::<$b, { 16 / $b }, 1, 2, _>(xi, xsum, w, [row, row + a], $s, $bi, idx, out),
                (1, None) => row_b::<$b, { 16 / $b }, 1, 1, _>(xi, xsum, w, [row], $s, $bi, idx, out),
                (2, _) => row_b::<$b, { 16 / $b }, 2, 1, _>(xi, xsum, w, [row], $s, $bi, idx, out),
                (3 | 4, _) => row_b::<$b, { 16 / $b }, 4, 1, _>(xi, xsum, w, [row], $s, $bi, idx, out),
                _ => row_b::<$b, { 16 / $b }, 8, 1, _>(xi, xsum, w, [row], $s, $bi, idx, out),
            }
        };
    }
    by_bits_and_scales!(w, rows)
}

/// The `B`-bit fields of the 16-bit words of `v` as 16-bit integers: the first `16 / B` entries
/// are used.
#[inline(always)]
unsafe fn fields<const B: u32>(v: __m512i) -> [__m512i; 8] {
    // No closure for the mask: a closure is not compiled with the caller's target features.
    let mask = _mm512_set1_epi16((1 << B) - 1);
    let z = _mm512_setzero_si512();
    match B {
        8 => [_mm512_and_si512(v, mask), _mm512_srli_epi16::<8>(v), z, z, z, z, z, z],
        4 => [
            _mm512_and_si512(v, mask),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<8>(v), mask),
            _mm512_srli_epi16::<12>(v),
            z,
            z,
            z,
            z,
        ],
        _ => [
            _mm512_and_si512(v, mask),
            _mm512_and_si512(_mm512_srli_epi16::<2>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<6>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<8>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<10>(v), mask),
            _mm512_and_si512(_mm512_srli_epi16::<12>(v), mask),
            _mm512_srli_epi16::<14>(v),
        ],
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_b<const B: u32, const F: usize, const M: usize, const NW: usize, T: Load16>(
    xi: &XI16,
    xsum: &[f32],
    w: &Packed,
    wrows: [usize; NW],
    s: &[T],
    b: &[T],
    idx: &LaneGroups16,
    out: &mut [f32],
) {
    let m = if NW == 1 { out.len().min(M) } else { 1 };
    let k = w.k;
    let ng = w.groups();
    let ngp = xsum_stride(ng);
    let bytes: [*const u8; NW] = std::array::from_fn(|j| w.bytes.as_ptr().add(wrows[j] * w.row_bytes()));
    let sr: [&[T]; NW] = std::array::from_fn(|j| &s[wrows[j] * ng..(wrows[j] + 1) * ng]);
    let br: [&[T]; NW] = std::array::from_fn(|j| &b[wrows[j] * ng..(wrows[j] + 1) * ng]);
    let wpg = w.gs * B as usize / 32; // packed words a group, a power of two
    let xr: [*const i16; M] = std::array::from_fn(|r| xi.row(r.min(m - 1), k));
    let mut tot = [[_mm512_setzero_ps(); M]; NW];
    // The rounding error meets s·q, not w = s·q + b: its share s·c·Σδx with c the middle code
    // is added back per group (this halves it), leaving s·Σδx·(q - c).
    let mid = _mm512_set1_ps(((1 << B) - 1) as f32 / 2.0);
    // Block `blk` of each weight row (16 packed words), its lanes scaled per row of x by `svr`
    // permuted.
    macro_rules! block {
        ($blk:expr, $perm:expr, $svr:ident) => {{
            let (blk, perm) = ($blk, $perm);
            for j in 0..NW {
                _mm_prefetch::<_MM_HINT_T1>(bytes[j].add(64 * blk).wrapping_add(AHEAD) as *const i8);
                let q = fields::<B>(_mm512_loadu_si512(bytes[j].add(64 * blk) as *const __m512i));
                for r in 0..m {
                    let xb = xr[r].add(blk * WORDS * F) as *const __m512i;
                    // One chain: the integer sums are exact, and the blocks' chains overlap.
                    let mut a = _mm512_dpwssd_epi32(_mm512_setzero_si512(), q[0], _mm512_load_si512(xb));
                    for f in 1..F {
                        a = _mm512_dpwssd_epi32(a, q[f], _mm512_load_si512(xb.add(f)));
                    }
                    tot[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_permutexvar_ps(perm, $svr[j][r]), tot[j][r]);
                }
            }
        }};
    }
    // Sixteen groups from `g`: per weight row and row of x, the groups' scales times x's steps;
    // the bias term with x's exact group sums, and the correction; then the groups' blocks.
    macro_rules! chunk {
        ($g:expr, $sp:expr, $bp:expr, $blocks:expr) => {{
            let (g, sp, bp): (usize, [*const T; NW], [*const T; NW]) = ($g, $sp, $bp);
            let mut svr = [[_mm512_setzero_ps(); M]; NW];
            for j in 0..NW {
                let (sv, bv) = (T::load16(sp[j]), T::load16(bp[j]));
                let sc = _mm512_mul_ps(sv, mid);
                for r in 0..m {
                    let at = r * ngp + g;
                    svr[j][r] = _mm512_mul_ps(sv, _mm512_loadu_ps(xi.dx.as_ptr().add(at)));
                    tot[j][r] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xsum.as_ptr().add(at)), tot[j][r]);
                    tot[j][r] = _mm512_fmadd_ps(sc, _mm512_loadu_ps(xi.lost.as_ptr().add(at)), tot[j][r]);
                }
            }
            let blk0 = g * wpg / 16;
            for i in 0..$blocks {
                block!(blk0 + i, _mm512_loadu_si512(idx[i].as_ptr() as *const __m512i), svr);
            }
        }};
    }
    let full = ng / 16 * 16;
    let ahead_g = AHEAD * 8 / (w.gs * B as usize);
    for g in (0..full).step_by(16) {
        // Scales and biases as far ahead as the packed bytes (into the next rows at the end:
        // a thread's rows are consecutive).
        for j in 0..NW {
            _mm_prefetch::<_MM_HINT_T1>(sr[j].as_ptr().wrapping_add(g + ahead_g) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(br[j].as_ptr().wrapping_add(g + ahead_g) as *const i8);
        }
        chunk!(g, std::array::from_fn(|j| sr[j].as_ptr().add(g)), std::array::from_fn(|j| br[j].as_ptr().add(g)), wpg);
    }
    if full < ng {
        // The last (< 16) groups, their scales and biases copied out zero-padded: lanes past the
        // row's end feed no block, and x's padded sums are zero. Whole blocks remain (`usable`).
        let (mut sp, mut bp) = ([[T::default(); 16]; NW], [[T::default(); 16]; NW]);
        for j in 0..NW {
            sp[j][..ng - full].copy_from_slice(&sr[j][full..]);
            bp[j][..ng - full].copy_from_slice(&br[j][full..]);
        }
        chunk!(full, std::array::from_fn(|j| sp[j].as_ptr()), std::array::from_fn(|j| bp[j].as_ptr()), (ng - full) * wpg / 16);
    }
    for j in 0..NW {
        for r in 0..m {
            // The second weight row's output sits as far along `out` as its row is from the first.
            out[(wrows[j] - wrows[0]) * m + r] = _mm512_reduce_add_ps(tot[j][r]);
        }
    }
}
