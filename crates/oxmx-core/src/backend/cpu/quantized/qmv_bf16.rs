//! The 4-bit affine mat-vec with AVX-512 BF16 dot products (`vdpbf16ps`), for CPUs that have
//! them (Zen 4 and later, Sapphire Rapids and later).
//!
//! `qmv512` turns every code into an f32 (a mask and a convert per 16 codes) and then multiplies;
//! on DRAM-sized matrices it ran at about half the bandwidth because that work, not the memory,
//! was the limit. Here a code becomes a bfloat16 with no conversion at all: a 16-bit word of the
//! packed row holds four codes, and the code shifted into the top four mantissa bits under the
//! exponent of 1.0 (`0x3F80 | q << 3`) is the bfloat16 `1 + q/16` exactly. One `vdpbf16ps`
//! then multiplies 32 codes by 32 bfloat16 `x` values and adds pairs into 16 f32 lanes, products
//! exact in f32. Per 128 codes: 8 integer ops to expand, 4 dot products, 1 scale multiply-add.
//!
//! The offset comes back through the bias term: a group contributes
//! `16s·Σ(1 + q/16)·x + (b − 16s)·Σx`. The offset is 16 code steps (the code in the low
//! mantissa bits would make it 128): the sums are taken at 17x the magnitude of `Σq·x`, and
//! with the offset at 128 the f32 results drifted to 1e-5 of `Σ|x·w|`, MLX's tolerance.
//!
//! `x` is permuted once per call so that lane `i` of extract `j` of a 128-code block meets element
//! `4i + j`; after the dot product f32 lane `m` holds elements `8m..8m + 8`, i.e. packed word `m`,
//! the lane-to-group map of `qmv512`.
//!
//! Only for a bfloat16 `x` (bf16 models). An f32 or f16 `x` would have to be split as `hi + lo`
//! and multiplied twice; measured that way the kernel was no faster than `qmv512` with one row
//! and slower with eight (SmolLM2's f32 decode shapes), so those keep `qmv512`. The choice
//! depends on the dtype only, never on the values, so a row gets the same bits in any batch.

use super::qmm::{xsum_stride, Packed, Scales};
use super::qmv512::LaneGroups16;
use crate::backend::cpu::simd::Load16;
use half::bf16;
use std::arch::x86_64::*;

/// `x` in the kernel's order as bfloat16, 64-byte aligned from `off`.
pub(super) struct XBf16 {
    buf: Vec<bf16>,
    off: usize,
}

/// Whether this CPU runs the kernel and the matrix fits it: 4-bit affine, rows a multiple of
/// 64 codes. `OXMX_QMV_BF16=0` turns it off (for A/B measurements).
pub(super) fn usable(w: &Packed) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        crate::backend::cpu::simd::level() == crate::backend::cpu::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && std::env::var("OXMX_QMV_BF16").map_or(true, |v| v != "0")
    });
    cpu && w.is_affine() && w.bits == 4 && w.k % 64 == 0
}

/// `x` (`[m, k]`, values exactly bfloat16, widened to f32) as the kernel reads it, and its
/// per-group sums (rows `xsum_stride` long, zero-padded): position `32j + i` of a block of 128
/// codes (`16j + i` of a last block of 64) holds element `4i + j`.
pub(super) fn prepare(x: &[f32], m: usize, k: usize, gs: usize) -> (XBf16, Vec<f32>) {
    let ngp = xsum_stride(k / gs);
    let mut buf = vec![bf16::ZERO; m * k + 32];
    let off = buf.as_ptr().align_offset(64).min(32);
    let mut sums = vec![0f32; m * ngp];
    // SAFETY: `usable` (the caller's gate) checked the CPU features; k is a multiple of 64 and
    // of gs (32, 64 or 128), the buffers are sized above.
    unsafe { prepare_avx512(x, m, k, gs, ngp, &mut buf[off..off + m * k], &mut sums) };
    (XBf16 { buf, off }, sums)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn prepare_avx512(x: &[f32], m: usize, k: usize, gs: usize, ngp: usize, xb: &mut [bf16], sums: &mut [f32]) {
    // Natural order first, 16 values at a time (exact: the values are bfloat16), with the
    // group sums.
    for r in 0..m {
        for c in (0..k).step_by(16) {
            let v = _mm512_loadu_ps(x.as_ptr().add(r * k + c));
            let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(xb.as_mut_ptr().add(r * k + c) as *mut __m256i, h);
            sums[r * ngp + c / gs] += _mm512_reduce_add_ps(v);
        }
    }
    // Then each block of 128 in place: output j takes every fourth value from j, picked from
    // the first 64 for lanes < 16 and from the last 64 for the others.
    let mut idx = [[0u16; 32]; 4];
    for (j, t) in idx.iter_mut().enumerate() {
        for (i, v) in t.iter_mut().enumerate() {
            *v = ((4 * i + j) % 64) as u16;
        }
    }
    for r in 0..m {
        let row = &mut xb[r * k..(r + 1) * k];
        let full = k / 128 * 128;
        for b0 in (0..full).step_by(128) {
            let p = row.as_mut_ptr().add(b0) as *mut __m512i;
            let a = [_mm512_loadu_si512(p), _mm512_loadu_si512(p.add(1)), _mm512_loadu_si512(p.add(2)), _mm512_loadu_si512(p.add(3))];
            for (j, t) in idx.iter().enumerate() {
                let ix = _mm512_loadu_si512(t.as_ptr() as *const __m512i);
                let first = _mm512_permutex2var_epi16(a[0], ix, a[1]);
                let last = _mm512_permutex2var_epi16(a[2], ix, a[3]);
                _mm512_storeu_si512(p.add(j), _mm512_mask_blend_epi16(0xFFFF_0000, first, last));
            }
        }
        if full < k {
            // A last half block of 64.
            let mut t = [bf16::ZERO; 64];
            t.copy_from_slice(&row[full..]);
            for j in 0..4 {
                for i in 0..16 {
                    row[full + 16 * j + i] = t[4 * i + j];
                }
            }
        }
    }
}

/// One output row `W[row] · x[r]` for every row `r < out.len()` of `x` (`xsum`: per-group sums
/// with `xsum_stride`, of the same `x`).
///
/// # Safety
/// `usable(w)` holds; `out.len() ≤ 8`; `x` is `permute_x_bf16` of `[out.len(), w.k]`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma,f16c")]
pub(super) unsafe fn row(x: &XBf16, xsum: &[f32], m: usize, w: &Packed, row: usize, idx: &LaneGroups16, out: &mut [f32]) {
    macro_rules! rows {
        ($s:expr, $b:expr) => {
            match m {
                1 => row_m::<1, _>(x, xsum, w, row, $s, $b, idx, out),
                2 => row_m::<2, _>(x, xsum, w, row, $s, $b, idx, out),
                3 | 4 => row_m::<4, _>(x, xsum, w, row, $s, $b, idx, out),
                _ => row_m::<8, _>(x, xsum, w, row, $s, $b, idx, out),
            }
        };
    }
    match w.sc {
        Scales::F32(s, b) => rows!(s, b),
        Scales::F16(s, b) => rows!(s, b),
        Scales::Bf16(s, b) => rows!(s, b),
        _ => unreachable!("affine scales are f32, f16 or bf16"),
    }
}

/// How far ahead of its reads the kernel prefetches packed bytes into L2, one line per block.
/// Measured on Zen 4 (2 cores, the kernel's loop alone over 29 MB): 4 KB ahead 23 GB/s, 8 KB
/// 26 GB/s, 16 KB 26 GB/s; into L1 at most 19; hardware prefetchers alone 13.
const AHEAD: usize = 8192;

/// The bfloat16 `1 + q/16` of the four codes of every 16-bit word of `v`.
#[inline(always)]
unsafe fn expand(v: __m512i) -> [__m512bh; 4] {
    let (field, one) = (_mm512_set1_epi16(0x78), _mm512_set1_epi16(0x3F80));
    // 0xEA: (a & b) | c.
    let e0 = _mm512_ternarylogic_epi32::<0xEA>(_mm512_slli_epi16::<3>(v), field, one);
    let e1 = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<1>(v), field, one);
    let e2 = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<5>(v), field, one);
    let e3 = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<9>(v), field, one);
    std::mem::transmute::<[__m512i; 4], [__m512bh; 4]>([e0, e1, e2, e3])
}

/// `expand` for a half block (64 codes).
#[inline(always)]
unsafe fn expand_half(v: __m256i) -> [__m256bh; 4] {
    let (field, one) = (_mm256_set1_epi16(0x78), _mm256_set1_epi16(0x3F80));
    let e0 = _mm256_ternarylogic_epi32::<0xEA>(_mm256_slli_epi16::<3>(v), field, one);
    let e1 = _mm256_ternarylogic_epi32::<0xEA>(_mm256_srli_epi16::<1>(v), field, one);
    let e2 = _mm256_ternarylogic_epi32::<0xEA>(_mm256_srli_epi16::<5>(v), field, one);
    let e3 = _mm256_ternarylogic_epi32::<0xEA>(_mm256_srli_epi16::<9>(v), field, one);
    std::mem::transmute::<[__m256i; 4], [__m256bh; 4]>([e0, e1, e2, e3])
}

#[inline(always)]
unsafe fn xbh(p: *const bf16) -> __m512bh {
    std::mem::transmute::<__m512i, __m512bh>(_mm512_load_si512(p as *const __m512i))
}

#[inline(always)]
unsafe fn xbh_half(p: *const bf16) -> __m256bh {
    std::mem::transmute::<__m256i, __m256bh>(_mm256_load_si256(p as *const __m256i))
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_m<const M: usize, T: Load16>(
    x: &XBf16,
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
    let bytes = w.bytes.as_ptr().add(row * w.row_bytes());
    let (s, b) = (&s[row * ng..(row + 1) * ng], &b[row * ng..(row + 1) * ng]);
    let xp = x.buf.as_ptr().add(x.off);
    let mut tot = [_mm512_setzero_ps(); M];
    let mut tail = [_mm256_setzero_ps(); M];
    // The 128 codes from code `c0` (a multiple of 128), scaled per lane by `sv`.
    macro_rules! block {
        ($c0:expr, $sv:expr) => {{
            let (c0, sv) = ($c0, $sv);
            _mm_prefetch::<_MM_HINT_T1>(bytes.add(c0 / 2).wrapping_add(AHEAD) as *const i8);
            let e = expand(_mm512_loadu_si512(bytes.add(c0 / 2) as *const __m512i));
            for r in 0..m {
                let xr = xp.add(r * k + c0);
                let mut a0 = _mm512_dpbf16_ps(_mm512_setzero_ps(), e[0], xbh(xr));
                let mut a1 = _mm512_dpbf16_ps(_mm512_setzero_ps(), e[1], xbh(xr.add(32)));
                a0 = _mm512_dpbf16_ps(a0, e[2], xbh(xr.add(64)));
                a1 = _mm512_dpbf16_ps(a1, e[3], xbh(xr.add(96)));
                tot[r] = _mm512_fmadd_ps(_mm512_add_ps(a0, a1), sv, tot[r]);
            }
        }};
    }
    // A macro, not a closure: a closure is not compiled with this function's target features.
    macro_rules! lanes {
        ($j:expr) => {
            _mm512_loadu_si512(idx[$j].as_ptr() as *const __m512i)
        };
    }
    // Bias term of groups `g..g + 16` (`sv` holds 16s): (b − 16s)·Σx.
    macro_rules! bias {
        ($g:expr, $sv:expr, $bv:expr) => {{
            let bias = _mm512_sub_ps($bv, $sv);
            for r in 0..m {
                tot[r] = _mm512_fmadd_ps(bias, _mm512_loadu_ps(xsum.as_ptr().add(r * ngp + $g)), tot[r]);
            }
        }};
    }
    let sixteen = _mm512_set1_ps(16.0);
    let full = ng / 16 * 16;
    let blocks = 16 * w.gs / 128; // 128-code blocks per 16 groups
    for g in (0..full).step_by(16) {
        // Scales and biases as far ahead as the packed bytes (into the next rows at the end:
        // a thread's rows are consecutive).
        let ahead_g = AHEAD * 2 / w.gs;
        _mm_prefetch::<_MM_HINT_T1>(s.as_ptr().wrapping_add(g + ahead_g) as *const i8);
        _mm_prefetch::<_MM_HINT_T1>(b.as_ptr().wrapping_add(g + ahead_g) as *const i8);
        let sv = _mm512_mul_ps(T::load16(s.as_ptr().add(g)), sixteen);
        for j in 0..blocks {
            block!(g * w.gs + 128 * j, _mm512_permutexvar_ps(lanes!(j), sv));
        }
        bias!(g, sv, T::load16(b.as_ptr().add(g)));
    }
    if full < ng {
        // The last (< 16) groups: scales and biases copied out zero-padded, so lanes past the
        // row's end add nothing (their x sums are zero-padded too).
        let (mut sp, mut bp) = ([T::default(); 16], [T::default(); 16]);
        sp[..ng - full].copy_from_slice(&s[full..]);
        bp[..ng - full].copy_from_slice(&b[full..]);
        let sv = _mm512_mul_ps(T::load16(sp.as_ptr()), sixteen);
        let codes_left = (ng - full) * w.gs;
        for j in 0..codes_left / 128 {
            block!(full * w.gs + 128 * j, _mm512_permutexvar_ps(lanes!(j), sv));
        }
        if codes_left % 128 == 64 {
            // A half block (64 codes, 8 words) ends the row.
            let j = codes_left / 128;
            let c0 = full * w.gs + 128 * j;
            let sv8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(lanes!(j), sv));
            let e = expand_half(_mm256_loadu_si256(bytes.add(c0 / 2) as *const __m256i));
            for r in 0..m {
                let xr = xp.add(r * k + c0);
                let mut a = _mm256_dpbf16_ps(_mm256_setzero_ps(), e[0], xbh_half(xr));
                a = _mm256_dpbf16_ps(a, e[1], xbh_half(xr.add(16)));
                a = _mm256_dpbf16_ps(a, e[2], xbh_half(xr.add(32)));
                a = _mm256_dpbf16_ps(a, e[3], xbh_half(xr.add(48)));
                tail[r] = _mm256_fmadd_ps(a, sv8, tail[r]);
            }
        }
        bias!(full, sv, T::load16(bp.as_ptr()));
    }
    for r in 0..m {
        let t: [f32; 8] = std::mem::transmute(tail[r]);
        out[r] = _mm512_reduce_add_ps(tot[r]) + t.iter().sum::<f32>();
    }
}
