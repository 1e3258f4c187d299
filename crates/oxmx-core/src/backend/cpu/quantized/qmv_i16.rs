//! The affine mat-vec (decode's `x @ Wᵀ`, 2/4/8-bit) with 16-bit integer dot products
//! (`vpdpwssd`, AVX-512 VNNI), for CPUs that have them (Ice Lake, Sapphire Rapids, Zen 4 and
//! later).
//!
//! Why: on a Sapphire Rapids host `vpdpwssd` retires 2 per cycle (32 products each) while
//! `vdpbf16ps` retires one every 2 cycles and `vcvtdq2ps` one per cycle, so `qmv_bf16` (bf16
//! dot products) and `qmv512` (a convert per 16 codes, then f32 FMAs) were bound by those
//! instructions, not by memory. A code needs no conversion here: a 16-bit word of the packed
//! row holds `16 / bits` codes, and a shift and a mask leave one of them in every 16-bit lane,
//! an integer the dot product takes as it is. Per 128 4-bit codes: 3 shifts and 3 masks shared
//! by all rows of `x`, then per row 4 dot products, a convert, a multiply and a multiply-add.
//! Measured on the loop alone (data in L1): 2.6 ns per 128 codes against 4.1 for `qmv_bf16` and
//! ~6 for `qmv512` with one row; 16 against 23 ns with eight (`hi + lo`: 3.9 and 32 ns).
//!
//! `x` becomes integers in one of two ways, by its dtype (never by its values, so a row gets the
//! same bits alone and in any batch):
//! - a bfloat16 or float16 `x` (its result is rounded to that dtype, 2^-9 or 2^-12 relative) is
//!   rounded to one 16-bit integer per element, with a scale per quantization group of each row
//!   (`max |x| / 32767`). A rounding error `δx` meets the code's `s·q`; the kernel adds back
//!   `s·c·Σδx` per group (`c` the middle code, an extra multiply-add per 16 groups), which leaves
//!   `s·Σ(q − c)·δx`, about 1e-6 of `Σ|x·w|` on random data (the float kernels: ~1e-7).
//! - an f32 `x` is split as `hi + lo / 32768`, both 16-bit, and multiplied twice: about 2^-31
//!   of the group's largest magnitude per element, as exact as f32 arithmetic, at 1.5x the speed
//!   of `qmv512` with one row and the same with eight.
//!
//! `OXMX_QMV_I16=0` turns the kernel off (the f32 / bf16 kernels then run, rounded as MLX's CPU
//! kernels round).
//!
//! Layout: `x` is permuted once per call so that 16-bit lane `t` of field `f` of a 16-word
//! block meets element `(16 / bits)·t + f`; the dot product adds lanes `2t, 2t + 1` into 32-bit
//! lane `t`, which then holds exactly the codes of packed word `t`: `qmv512`'s lane-to-group
//! map. A row whose word count is 8 more than a multiple of 16 ends with one 8-word block.

use super::qmm::{xsum_stride, Packed, Scales};
use super::qmv512::LaneGroups16;
use crate::backend::cpu::simd::Load16;
use std::arch::x86_64::*;

/// Whether this CPU runs the kernel and the matrix fits it: affine 2/4/8-bit, rows a multiple
/// of 256 bits.
pub(super) fn usable(w: &Packed) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        crate::backend::cpu::simd::level() == crate::backend::cpu::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::env::var("OXMX_QMV_I16").map_or(true, |v| v != "0")
    });
    cpu && w.is_affine() && matches!(w.bits, 2 | 4 | 8) && (w.k * w.bits) % 256 == 0
}

/// `x` (`[m, k]`) rounded to 16-bit integers in the kernel's order (64-byte aligned from `off`),
/// and the scale of every 32-bit lane of every 16-word block (`slots` blocks per row).
pub(super) struct XI16 {
    /// `hi` for `[m, k]`, then (`split`) `lo` for `[m, k]`.
    buf: Vec<i16>,
    off: usize,
    split: bool,
    slots: usize,
    scale: Vec<f32>,
    /// Per group (rows `xsum_stride` long): `c·Σδx`, the rounding errors of the group times the
    /// middle code (zero when `split`).
    corr: Vec<f32>,
}

/// Rounds and permutes `x` (`split`: as `hi + lo / 32768`). `xsum` holds the per-group sums
/// of `x` (rows `xsum_stride` long): a group whose sum is not finite holds an infinity or a NaN,
/// and gets a NaN scale so that the result is NaN, as the float kernels' would be.
pub(super) fn prepare(x: &[f32], xsum: &[f32], split: bool, m: usize, k: usize, gs: usize, bits: usize) -> XI16 {
    let per = 16 / bits; // codes per 16-bit lane
    let words = k * bits / 32; // packed words per row
    let wpg = gs * bits / 32;
    let slots = words.div_ceil(16);
    let ng = k / gs;
    let ngp = xsum_stride(ng);
    let mk = m * k;
    let mut buf = vec![0i16; if split { 2 * mk } else { mk } + 32];
    let off = buf.as_ptr().align_offset(64).min(32);
    let mut scale = vec![0f32; m * slots * 16];
    let mut corr = vec![0f32; m * ngp];
    let (mut hi, mut lo) = (vec![0i16; k], vec![0i16; if split { k } else { 0 }]);
    let mut group_scale = vec![0f32; ng];
    let middle = (1u32 << (bits - 1)) as f32;
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        for (g, gsc) in group_scale.iter_mut().enumerate() {
            let span = g * gs..(g + 1) * gs;
            let lo_g = if split { Some(&mut lo[span.clone()]) } else { None };
            // SAFETY: `usable` (the caller's gate) checked AVX-512; gs is a multiple of 16.
            *gsc = unsafe { round_group(&row[span.clone()], xsum[r * ngp + g].is_finite(), &mut hi[span.clone()], lo_g) };
            if !split && gsc.is_finite() {
                let err: f32 = row[span.clone()].iter().zip(&hi[span]).map(|(v, q)| v - *gsc * *q as f32).sum();
                corr[r * ngp + g] = middle * err;
            }
        }
        for (part, src) in [(0, &hi), (mk, &lo)].into_iter().take(if split { 2 } else { 1 }) {
            let dst = &mut buf[off + part + r * k..off + part + (r + 1) * k];
            permute(src, dst, words, bits, per);
        }
        let mut w0 = 0;
        while w0 < words {
            let lanes = if w0 + 16 <= words { 16 } else { 8 };
            for (i, s) in scale[(r * slots + w0 / 16) * 16..][..lanes].iter_mut().enumerate() {
                *s = group_scale[(w0 + i) / wpg];
            }
            w0 += lanes;
        }
    }
    XI16 { buf, off, split, slots, scale, corr }
}

/// One row from natural order into the kernel's: 32 16-bit lanes per full block of 16 words,
/// 16 in a last 8-word block.
fn permute(src: &[i16], dst: &mut [i16], words: usize, bits: usize, per: usize) {
    let mut w0 = 0;
    while w0 < words {
        let lanes = if w0 + 16 <= words { 32 } else { 16 };
        let base = w0 * 32 / bits;
        for f in 0..per {
            for t in 0..lanes {
                dst[base + f * lanes + t] = src[base + per * t + f];
            }
        }
        w0 += lanes / 2;
    }
}

/// One group of `x` as 16-bit integers `round(x · 32767 / max|x|)` into `hi` (and, given `lo`,
/// the rounding remainders times 32768 there); returns the scale that brings them back (0 for an
/// all-zero or vanishingly small group, NaN when `finite` is false).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn round_group(xs: &[f32], finite: bool, hi: &mut [i16], mut lo: Option<&mut [i16]>) -> f32 {
    let zero = |hi: &mut [i16], lo: Option<&mut [i16]>| {
        hi.fill(0);
        if let Some(lo) = lo {
            lo.fill(0);
        }
    };
    if !finite {
        zero(hi, lo);
        return f32::NAN;
    }
    let mut mx = _mm512_setzero_ps();
    for c in (0..xs.len()).step_by(16) {
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(xs.as_ptr().add(c))));
    }
    let mx = _mm512_reduce_max_ps(mx);
    let inv = 32767.0 / mx;
    if mx == 0.0 || !inv.is_finite() {
        zero(hi, lo);
        return 0.0;
    }
    let (iv, lo_scale) = (_mm512_set1_ps(inv), _mm512_set1_ps(32768.0));
    for c in (0..xs.len()).step_by(16) {
        // Rounds to nearest even (MXCSR's default); the narrowing saturates. `t − q` is exact
        // (Sterbenz), and below 1/2 in magnitude, so `lo` stays within ±16384.
        let t = _mm512_mul_ps(_mm512_loadu_ps(xs.as_ptr().add(c)), iv);
        let q = _mm512_cvtps_epi32(t);
        _mm256_storeu_si256(hi.as_mut_ptr().add(c) as *mut __m256i, _mm512_cvtsepi32_epi16(q));
        if let Some(lo) = lo.as_deref_mut() {
            let rest = _mm512_mul_ps(_mm512_sub_ps(t, _mm512_cvtepi32_ps(q)), lo_scale);
            _mm256_storeu_si256(lo.as_mut_ptr().add(c) as *mut __m256i, _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(rest)));
        }
    }
    mx / 32767.0
}

/// One output row `W[row] · x[r]` for every row `r < out.len()` of `x` (`xsum`: per-group sums
/// of `x` with `xsum_stride`, for the bias term).
///
/// # Safety
/// `usable(w)` holds; `out.len() ≤ 8`; `x` is `prepare` of `[out.len(), w.k]`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn row(x: &XI16, xsum: &[f32], m: usize, w: &Packed, row: usize, idx: &LaneGroups16, out: &mut [f32]) {
    macro_rules! rows {
        ($b:literal, $per:literal, $s:expr, $bi:expr) => {
            match (m, x.split) {
                (1, false) => row_b::<$b, $per, 1, false, _>(x, xsum, w, row, $s, $bi, idx, out),
                (2, false) => row_b::<$b, $per, 2, false, _>(x, xsum, w, row, $s, $bi, idx, out),
                (3 | 4, false) => row_b::<$b, $per, 4, false, _>(x, xsum, w, row, $s, $bi, idx, out),
                (_, false) => row_b::<$b, $per, 8, false, _>(x, xsum, w, row, $s, $bi, idx, out),
                (1, true) => row_b::<$b, $per, 1, true, _>(x, xsum, w, row, $s, $bi, idx, out),
                (2, true) => row_b::<$b, $per, 2, true, _>(x, xsum, w, row, $s, $bi, idx, out),
                (3 | 4, true) => row_b::<$b, $per, 4, true, _>(x, xsum, w, row, $s, $bi, idx, out),
                (_, true) => row_b::<$b, $per, 8, true, _>(x, xsum, w, row, $s, $bi, idx, out),
            }
        };
    }
    macro_rules! bits {
        ($s:expr, $bi:expr) => {
            match w.bits {
                2 => rows!(2, 8, $s, $bi),
                4 => rows!(4, 4, $s, $bi),
                _ => rows!(8, 2, $s, $bi),
            }
        };
    }
    match w.sc {
        Scales::F32(s, b) => bits!(s, b),
        Scales::F16(s, b) => bits!(s, b),
        Scales::Bf16(s, b) => bits!(s, b),
        _ => unreachable!("affine scales are f32, f16 or bf16"),
    }
}

/// How far ahead of its reads the kernel prefetches packed bytes into L2, one line per block
/// (`qmv_bf16`'s distance, measured there).
const AHEAD: usize = 8192;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_b<const B: usize, const PER: usize, const M: usize, const SPLIT: bool, T: Load16>(
    x: &XI16,
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
    let wpg = w.gs * B / 32; // words per group, a power of two
    let (s, b) = (&s[row * ng..(row + 1) * ng], &b[row * ng..(row + 1) * ng]);
    let xq = x.buf.as_ptr().add(x.off);
    // `lo` follows `hi` ([m, k] each; the buffer has 32 spare elements).
    let lo_at = (x.buf.len() - 32) / 2;
    let lo_weight = _mm512_set1_ps(1.0 / 32768.0);
    let mut tot = [_mm512_setzero_ps(); M];
    let mut tail = [_mm256_setzero_ps(); M];
    // Field `f` of every 16-bit lane of `v` (the last one needs no mask); the constant shift
    // counts fold into immediates.
    macro_rules! fields {
        ($v:expr, $zero:expr, $and:ident, $srl:ident, $mask:expr) => {{
            let v = $v;
            let mut q = [$zero; PER];
            for (f, qf) in q.iter_mut().enumerate() {
                let shifted = if f == 0 { v } else { $srl(v, _mm_set_epi64x(0, (B * f) as i64)) };
                *qf = if f + 1 == PER { shifted } else { $and(shifted, $mask) };
            }
            q
        }};
    }
    // The 16 words from word `wo` (a multiple of 16), scaled per lane by `sv`.
    macro_rules! block16 {
        ($wo:expr, $sv:expr) => {{
            let (wo, sv) = ($wo, $sv);
            _mm_prefetch::<_MM_HINT_T1>((words.add(wo) as *const i8).wrapping_add(AHEAD));
            let v = _mm512_loadu_si512(words.add(wo) as *const __m512i);
            let q = fields!(v, _mm512_setzero_si512(), _mm512_and_si512, _mm512_srl_epi16, _mm512_set1_epi16((1 << B) - 1));
            for r in 0..m {
                let xr = xq.add(r * k + wo * 32 / B);
                let mut acc = _mm512_setzero_si512();
                for (f, qf) in q.iter().enumerate() {
                    acc = _mm512_dpwssd_epi32(acc, *qf, _mm512_load_si512(xr.add(32 * f) as *const __m512i));
                }
                let mut dot = _mm512_cvtepi32_ps(acc);
                if SPLIT {
                    let mut acc = _mm512_setzero_si512();
                    for (f, qf) in q.iter().enumerate() {
                        acc = _mm512_dpwssd_epi32(acc, *qf, _mm512_load_si512(xr.add(lo_at + 32 * f) as *const __m512i));
                    }
                    dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), lo_weight, dot);
                }
                let xs = _mm512_loadu_ps(x.scale.as_ptr().add((r * x.slots + wo / 16) * 16));
                tot[r] = _mm512_fmadd_ps(_mm512_mul_ps(dot, xs), sv, tot[r]);
            }
        }};
    }
    // A macro, not a closure: a closure is not compiled with this function's target features.
    macro_rules! lanes {
        ($j:expr) => {
            _mm512_loadu_si512(idx[$j].as_ptr() as *const __m512i)
        };
    }
    let full = ng / 16 * 16;
    for g in (0..full).step_by(16) {
        let sv = T::load16(s.as_ptr().add(g));
        for j in 0..wpg {
            block16!(g * wpg + 16 * j, _mm512_permutexvar_ps(lanes!(j), sv));
        }
        let bv = T::load16(b.as_ptr().add(g));
        for r in 0..m {
            tot[r] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xsum.as_ptr().add(r * ngp + g)), tot[r]);
            if !SPLIT {
                tot[r] = _mm512_fmadd_ps(sv, _mm512_loadu_ps(x.corr.as_ptr().add(r * ngp + g)), tot[r]);
            }
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
            // One 8-word block ends the row: 16 lanes of 16 bits.
            let j = words_left / 16;
            let wo = full * wpg + 16 * j;
            let sv8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(lanes!(j), sv));
            let v = _mm256_loadu_si256(words.add(wo) as *const __m256i);
            let q = fields!(v, _mm256_setzero_si256(), _mm256_and_si256, _mm256_srl_epi16, _mm256_set1_epi16((1 << B) - 1));
            for r in 0..m {
                let xr = xq.add(r * k + wo * 32 / B);
                let mut acc = _mm256_setzero_si256();
                for (f, qf) in q.iter().enumerate() {
                    acc = _mm256_dpwssd_epi32(acc, *qf, _mm256_load_si256(xr.add(16 * f) as *const __m256i));
                }
                let mut dot = _mm256_cvtepi32_ps(acc);
                if SPLIT {
                    let mut acc = _mm256_setzero_si256();
                    for (f, qf) in q.iter().enumerate() {
                        acc = _mm256_dpwssd_epi32(acc, *qf, _mm256_load_si256(xr.add(lo_at + 16 * f) as *const __m256i));
                    }
                    dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm512_castps512_ps256(lo_weight), dot);
                }
                let xs = _mm256_loadu_ps(x.scale.as_ptr().add((r * x.slots + wo / 16) * 16));
                tail[r] = _mm256_fmadd_ps(_mm256_mul_ps(dot, xs), sv8, tail[r]);
            }
        }
        let bv = T::load16(bp.as_ptr());
        for r in 0..m {
            tot[r] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xsum.as_ptr().add(r * ngp + full)), tot[r]);
            if !SPLIT {
                tot[r] = _mm512_fmadd_ps(sv, _mm512_loadu_ps(x.corr.as_ptr().add(r * ngp + full)), tot[r]);
            }
        }
    }
    for r in 0..m {
        let t: [f32; 8] = std::mem::transmute(tail[r]);
        out[r] = _mm512_reduce_add_ps(tot[r]) + t.iter().sum::<f32>();
    }
}
