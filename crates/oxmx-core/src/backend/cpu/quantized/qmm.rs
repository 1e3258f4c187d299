//! Products with packed matrices, accumulated in f32.
//!
//! - Decode (`x @ Wᵀ` with few rows): one pass over the packed bytes, which is the floor
//!   (bytes / DRAM bandwidth). With AVX2 the affine 2/4/8-bit path loads 8 words at a time and
//!   extracts the fields with one mask per 8 lanes (see `permute_x`), no shuffles: lane `i` of extract `j`
//!   holds element `i * (32 / bits) + j`, so `x` is permuted once per call into that order
//!   instead of permuting the weights. Per block, `Σ q·x` is scaled by a per-lane scale vector;
//!   the bias term is `bias · Σ x` over the group, from per-group sums of `x` computed once.
//! - Many rows, and `x @ W`: tiles of W are dequantized to f32 (fits in L2) and multiplied with
//!   the `gemm` crate's register-blocked kernel.

use super::pack::{from_fp8, get_bits, FP4_LUT};
#[cfg(target_arch = "x86_64")]
use super::qmv512::{avx512_row, lane_groups16, permute_x16};
#[cfg(target_arch = "x86_64")]
use super::qmv_bf16;
#[cfg(target_arch = "x86_64")]
use super::qmv_i16;
#[cfg(target_arch = "x86_64")]
use super::qmv_vnni;
use super::{as_bytes, float_dispatch, QF};
#[cfg(target_arch = "x86_64")]
use crate::backend::cpu::simd::Load8;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::{QuantMode, QuantParams};
use gemm::Parallelism;
use half::{bf16, f16};
use rayon::prelude::*;
use std::borrow::Cow;

/// Rows of `x` from which the tiled gemm path is used for `x @ Wᵀ`.
const QMV_MAX_ROWS: usize = 8;

/// Per-group scales (and biases) of one packed matrix, in their stored form.
#[derive(Clone, Copy)]
pub(super) enum Scales<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [f16], &'a [f16]),
    Bf16(&'a [bf16], &'a [bf16]),
    E8m0(&'a [u8]),
    E4m3(&'a [u8]),
}

impl Scales<'_> {
    /// (scale, bias) of flat group index `g`, in f32.
    #[inline(always)]
    fn get(&self, g: usize) -> (f32, f32) {
        match self {
            Scales::F32(s, b) => (s[g], b[g]),
            Scales::F16(s, b) => (s[g].to_f32(), b[g].to_f32()),
            Scales::Bf16(s, b) => (s[g].to_f32(), b[g].to_f32()),
            Scales::E8m0(s) => ((s[g] as f32 - 127.0).exp2(), 0.0),
            Scales::E4m3(s) => (from_fp8(s[g]), 0.0),
        }
    }
}

/// One packed matrix `[rows, k]` (a single batch element).
#[derive(Clone, Copy)]
pub(super) struct Packed<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) sc: Scales<'a>,
    pub(super) k: usize,
    pub(super) gs: usize,
    pub(super) bits: usize,
    mode: QuantMode,
}

impl Packed<'_> {
    pub(super) fn row_bytes(&self) -> usize {
        self.k * self.bits / 8
    }
    pub(super) fn is_affine(&self) -> bool {
        self.mode == QuantMode::Affine
    }
    pub(super) fn groups(&self) -> usize {
        self.k / self.gs
    }

    /// Dequantized values of groups `[g0, g1)` of `row` into `out` (f32).
    fn dequant(&self, row: usize, g0: usize, g1: usize, out: &mut [f32]) {
        let gb = self.gs * self.bits / 8;
        let base = row * self.row_bytes();
        let mut q = [0u32; 128];
        for g in g0..g1 {
            let src = &self.bytes[base + g * gb..base + (g + 1) * gb];
            let (s, b) = self.sc.get(row * self.groups() + g);
            let o = &mut out[(g - g0) * self.gs..(g - g0 + 1) * self.gs];
            match (self.mode, self.bits) {
                (QuantMode::Affine, 4) => {
                    for (i, &c) in src.iter().enumerate() {
                        o[2 * i] = s * (c & 15) as f32 + b;
                        o[2 * i + 1] = s * (c >> 4) as f32 + b;
                    }
                }
                (QuantMode::Affine, 8) => {
                    for (o, &c) in o.iter_mut().zip(src) {
                        *o = s * c as f32 + b;
                    }
                }
                (QuantMode::Affine, _) => {
                    let q = &mut q[..self.gs];
                    get_bits(src, self.bits, q);
                    for (o, &v) in o.iter_mut().zip(q.iter()) {
                        *o = s * v as f32 + b;
                    }
                }
                (QuantMode::Mxfp8, _) => {
                    for (o, &c) in o.iter_mut().zip(src) {
                        *o = s * from_fp8(c);
                    }
                }
                _ => {
                    for (i, &c) in src.iter().enumerate() {
                        o[2 * i] = s * FP4_LUT[(c & 15) as usize];
                        o[2 * i + 1] = s * FP4_LUT[(c >> 4) as usize];
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `y[m, n] (+)= Σ_k x[m, k] · W[n, k]`, W packed, for `m` rows of `x` (f32, dense `[m, k]`);
/// `y` dense `[m, n]`.
fn qmm_t(x: &[f32], xdt: Dtype, m: usize, w: &Packed, n: usize, y: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    if m <= QMV_MAX_ROWS {
        return qmv_t(x, xdt, m, w, n, y);
    }
    // Tiles of `NB` rows of W by `KB` columns, dequantized per task; tasks own column blocks of y.
    const NB: usize = 128;
    const KB: usize = 1024;
    let k = w.k;
    let kb = (KB / w.gs).max(1) * w.gs;
    let yp = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(NB)).into_par_iter().for_each(|t| {
        let yp = yp;
        let (n0, nn) = (t * NB, NB.min(n - t * NB));
        let mut tile = vec![0f32; nn * kb];
        let mut k0 = 0;
        while k0 < k {
            let kk = kb.min(k - k0);
            for r in 0..nn {
                w.dequant(n0 + r, k0 / w.gs, (k0 + kk) / w.gs, &mut tile[r * kk..(r + 1) * kk]);
            }
            // SAFETY: y is dense [m, n]; this task writes only columns [n0, n0 + nn). x is
            // dense [m, k]; the tile is dense [nn, kk] read as its transpose.
            unsafe {
                gemm::gemm(
                    m,
                    nn,
                    kk,
                    yp.0.add(n0),
                    1,
                    n as isize,
                    k0 > 0,
                    x.as_ptr().add(k0),
                    1,
                    k as isize,
                    tile.as_ptr(),
                    kk as isize,
                    1,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            k0 += kk;
        }
    });
}

/// `y = x @ W` with W packed `[k, n]` (groups along n): row tiles of W dequantized, gemm.
fn qmm_n(x: &[f32], m: usize, w: &Packed, kdim: usize, y: &mut [f32]) {
    let n = w.k;
    if m == 0 || n == 0 {
        return;
    }
    if kdim == 0 {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    const KB: usize = 256;
    let mut tile = vec![0f32; KB.min(kdim) * n];
    let mut k0 = 0;
    let threads = rayon::current_num_threads();
    let par = if m * n * KB < 1 << 18 || threads <= 1 { Parallelism::None } else { Parallelism::Rayon(threads) };
    while k0 < kdim {
        let kk = KB.min(kdim - k0);
        tile[..kk * n].par_chunks_mut(n).enumerate().for_each(|(r, o)| w.dequant(k0 + r, 0, w.groups(), o));
        // SAFETY: dense [m, kdim] x, dense [kk, n] tile, dense [m, n] y.
        unsafe {
            gemm::gemm(
                m,
                n,
                kk,
                y.as_mut_ptr(),
                1,
                n as isize,
                k0 > 0,
                x.as_ptr().add(k0),
                1,
                kdim as isize,
                tile.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
        k0 += kk;
    }
}

/// Few-row `x @ Wᵀ`: parallel over output rows of W, one pass over the packed bytes. `xdt`:
/// the dtype of the array the values of `x` came from (exact in it).
fn qmv_t(x: &[f32], xdt: Dtype, m: usize, w: &Packed, n: usize, y: &mut [f32]) {
    let k = w.k;
    let ng = w.groups();
    // Half-precision x and scales: 16-bit integer kernels (qmv_vnni.rs on AVX-512 VNNI hosts,
    // qmv_i16.rs on AVX2 ones); bf16 x elsewhere on AVX-512 BF16 (qmv_bf16.rs).
    let half_out = matches!(xdt, Dtype::Float16 | Dtype::Bfloat16) && matches!(w.sc, Scales::F16(..) | Scales::Bf16(..));
    #[cfg(target_arch = "x86_64")]
    let vnni = half_out && qmv_vnni::usable(w);
    #[cfg(target_arch = "x86_64")]
    let dot_bf16 = !vnni && xdt == Dtype::Bfloat16 && qmv_bf16::usable(w);
    #[cfg(not(target_arch = "x86_64"))]
    let dot_bf16 = false;
    let ngp = xsum_stride(ng);
    #[cfg(target_arch = "x86_64")]
    let (xb, xsum) = if dot_bf16 {
        let (xb, sums) = qmv_bf16::prepare(x, m, k, w.gs);
        (Some(xb), sums)
    } else {
        (None, group_sums(x, m, k, w.gs, ngp))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let xsum = group_sums(x, m, k, w.gs, ngp);
    let fast =
        w.mode == QuantMode::Affine && matches!(w.bits, 2 | 4 | 8) && (k * w.bits) % 256 == 0 && crate::backend::cpu::simd::avx2_fma();
    #[cfg(target_arch = "x86_64")]
    let wide = fast && use_avx512() && !dot_bf16 && !vnni;
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    #[cfg(target_arch = "x86_64")]
    let xi = if vnni {
        // SAFETY: `usable` checked AVX-512 (so AVX2 and FMA); k is a multiple of 512 / bits.
        Some(unsafe { qmv_i16::prepare(x, m, k, w.gs, w.bits, qmv_vnni::WORDS) })
    } else {
        // SAFETY: `fast` checked AVX2 and FMA.
        (fast && !wide && !dot_bf16 && half_out && use_i16()).then(|| unsafe { qmv_i16::prepare(x, m, k, w.gs, w.bits, 16) })
    };
    #[cfg(not(target_arch = "x86_64"))]
    let xi: Option<()> = None;
    let (xbuf, xoff) = match (fast && !dot_bf16 && xi.is_none(), wide) {
        #[cfg(target_arch = "x86_64")]
        (_, true) => permute_x16(x, m, k, w.bits),
        (true, _) => (permute_x(x, m, k, w.bits), 0),
        _ => (Vec::new(), 0),
    };
    let xp = &xbuf[xoff..];
    let idx = lane_groups(w.gs * w.bits / 32);
    #[cfg(target_arch = "x86_64")]
    let idx16 = if wide || dot_bf16 || vnni { lane_groups16(w.gs * w.bits / 32) } else { [[0; 16]; 32] };
    // Output computed transposed ([n, m]) so tasks own contiguous chunks.
    // About 32 KB of packed weights per task: small matrices stay on few threads (waking a
    // thread costs more than the work), large ones split finely enough to balance.
    // The VNNI kernel's pairs of streams want longer runs of rows: ~128 KB a task.
    #[cfg(target_arch = "x86_64")]
    let task_bytes = if vnni && m == 1 { 131072 } else { 32768 };
    #[cfg(not(target_arch = "x86_64"))]
    let task_bytes = 32768;
    let rows_per_task = (task_bytes / w.row_bytes().max(1)).clamp(1, 256);
    // With one row of x, `[n, m]` is `y` itself; otherwise a scratch transposed at the end.
    let mut scratch = Vec::new();
    let yt: &mut [f32] = if m == 1 {
        &mut y[..n]
    } else {
        scratch.resize(n * m, 0f32);
        &mut scratch
    };
    yt.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
        // The dequantized row (generic path), reused across rows.
        let mut buf = vec![0f32; if fast { 0 } else { k }];
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(xi)) = (vnni, &xi) {
            let row0 = t * rows_per_task;
            // SAFETY (all three calls): `usable` checked the CPU and the matrix; `xi` is `[m, k]`
            // of this matrix in the kernel's order; each `out` slice holds what the call writes.
            if m > 1 {
                for (j, o) in out.chunks_mut(m).enumerate() {
                    unsafe { qmv_vnni::rows(xi, &xsum, m, w, row0 + j, None, &idx16, o) };
                }
                return;
            }
            // One row of x: weight rows in pairs half the task apart (two streams of bytes,
            // each running on through consecutive rows).
            let half = out.len() / 2;
            for i in 0..half {
                unsafe { qmv_vnni::rows(xi, &xsum, 1, w, row0 + i, Some(half), &idx16, &mut out[i..]) };
            }
            if out.len() % 2 == 1 {
                let last = out.len() - 1;
                unsafe { qmv_vnni::rows(xi, &xsum, 1, w, row0 + last, None, &idx16, &mut out[last..]) };
            }
            return;
        }
        for (j, o) in out.chunks_mut(m).enumerate() {
            let row = t * rows_per_task + j;
            #[cfg(target_arch = "x86_64")]
            if let Some(xi) = &xi {
                // SAFETY: `fast` checked the CPU and the matrix; `xi` is `[m, k]` of this matrix.
                unsafe { qmv_i16::row(xi, &xsum, w, row, &idx, o) };
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(xb) = &xb {
                // SAFETY: `usable` checked the CPU and the matrix; `xb` is `[m, k]`.
                unsafe { qmv_bf16::row(xb, &xsum, m, w, row, &idx16, o) };
                continue;
            }
            if wide {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `use_avx512()` checked the CPU; slices are sized by the caller's shapes.
                unsafe {
                    avx512_row(xp, &xsum, m, w, row, &idx16, o)
                };
            } else if fast {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `avx2_fma()` checked the CPU; slices are sized by the caller's shapes.
                unsafe {
                    avx2_row(xp, &xsum, m, w, row, &idx, o)
                };
            } else {
                w.dequant(row, 0, ng, &mut buf);
                for (r, ov) in o.iter_mut().enumerate() {
                    let xr = &x[r * k..(r + 1) * k];
                    *ov = dot(&buf, xr);
                }
            }
        }
    });
    if m == 1 {
        return;
    }
    for r in 0..m {
        for c in 0..n {
            y[r * n + c] = scratch[c * m + r];
        }
    }
}

/// Per-group sums of the rows of `x` (the bias term), rows padded with zeros to `ngp` so the
/// kernels read them 8 or 16 at a time.
fn group_sums(x: &[f32], m: usize, k: usize, gs: usize, ngp: usize) -> Vec<f32> {
    let ng = k / gs;
    (0..m)
        .flat_map(|r| (0..ngp).map(move |g| if g < ng { x[r * k + g * gs..r * k + (g + 1) * gs].iter().sum::<f32>() } else { 0.0 }))
        .collect()
}

/// Row stride of the per-group sums of `x` the mat-vec kernels read: zero-padded to 16 groups.
pub(super) fn xsum_stride(groups: usize) -> usize {
    groups.next_multiple_of(16)
}

/// Whether the affine mat-vec takes the AVX-512 kernel: the CPU has it, and
/// `OXMX_QMV_AVX2=1` (for A/B measurements) is not set.
fn use_avx512() -> bool {
    if cfg!(not(target_arch = "x86_64")) {
        return false;
    }
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        crate::backend::cpu::simd::level() == crate::backend::cpu::simd::Level::Avx512
            && crate::backend::cpu::simd::avx2_fma()
            && std::env::var("OXMX_QMV_AVX2").map_or(true, |v| v != "1")
    })
}

/// Whether half-precision x takes the 16-bit integer kernel on AVX2 hosts (`OXMX_QMV_I16=0`:
/// the float kernel, for A/B measurements).
fn use_i16() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| std::env::var("OXMX_QMV_I16").map_or(true, |v| v != "0"))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (u, v) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += u[i] * v[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(u, v)| u * v).sum::<f32>()
}

/// `x` reordered per block of 8 words (`256 / bits` elements): position `j * 8 + i` of a block
/// holds element `i * (32 / bits) + j`, pre-multiplied by `2^(-bits·j)` for every field but the
/// last. The kernel then takes field `j` as `word & (mask << bits·j)` converted to f32 (which is
/// `q · 2^(bits·j)`, exact: at most `bits` significant bits) without shifting it down; the
/// power-of-two factors cancel exactly. The last field is a plain shift (its mask would reach the
/// sign bit).
fn permute_x(x: &[f32], m: usize, k: usize, bits: usize) -> Vec<f32> {
    let per = 32 / bits;
    let e = 8 * per;
    let mut out = vec![0f32; m * k];
    for r in 0..m {
        for b0 in (0..k).step_by(e) {
            for j in 0..per {
                let f = if j + 1 < per { (-((bits * j) as i32) as f32).exp2() } else { 1.0 };
                for i in 0..8 {
                    out[r * k + b0 + j * 8 + i] = x[r * k + b0 + i * per + j] * f;
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_row(xp: &[f32], xsum: &[f32], m: usize, w: &Packed, row: usize, idx: &LaneGroups, out: &mut [f32]) {
    // Monomorphised per (bits, rows, scale type) so the loops and accumulators live in registers.
    macro_rules! rows {
        ($b:literal, $s:expr, $bi:expr) => {
            match m {
                1 => avx2_row_b::<$b, { 32 / $b }, 1, _>(xp, xsum, w, row, $s, $bi, idx, out),
                2 => avx2_row_b::<$b, { 32 / $b }, 2, _>(xp, xsum, w, row, $s, $bi, idx, out),
                3 | 4 => avx2_row_b::<$b, { 32 / $b }, 4, _>(xp, xsum, w, row, $s, $bi, idx, out),
                8 => avx2_row_b::<$b, { 32 / $b }, 8, _>(xp, xsum, w, row, $s, $bi, idx, out),
                _ => avx2_row_b::<$b, { 32 / $b }, 7, _>(xp, xsum, w, row, $s, $bi, idx, out),
            }
        };
    }
    by_bits_and_scales!(w, rows)
}

/// For each block `j` of a chunk of eight groups, the group (0..8) of each of its eight lanes:
/// lane `i` holds word `8j + i`, in group `(8j + i) / words_per_group`. At most 32 blocks
/// (8-bit, groups of 128). Built once per product.
pub(super) type LaneGroups = [[i32; 8]; 32];

fn lane_groups(words_per_group: usize) -> LaneGroups {
    let mut t = [[0i32; 8]; 32];
    for (j, l) in t.iter_mut().enumerate().take(words_per_group.min(32)) {
        for (i, g) in l.iter_mut().enumerate() {
            *g = ((8 * j + i) / words_per_group) as i32;
        }
    }
    t
}

/// One output row `W[row] · x[r]` for every row `r < out.len() ≤ M` of x (affine, `B` bits,
/// `PER = 32 / B`), with the row's scales and biases `s, b` (one per group of all rows).
///
/// Groups are taken eight at a time: their scales are widened once and spread over the lanes of
/// each block with a permutation (lane `i` of block `j` of the chunk holds word `8j + i`, which
/// belongs to group `(8j + i) / words_per_group`), and the bias term `Σ_g b_g · Σ_{k∈g} x_k` is
/// one FMA with the group sums of x. With short rows (576 wide: 9 blocks) a separate pass over
/// scales and biases cost as much as the blocks themselves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_row_b<const B: i32, const PER: usize, const M: usize, T: Load8>(
    xp: &[f32],
    xsum: &[f32],
    w: &Packed,
    row: usize,
    s: &[T],
    b: &[T],
    idx: &LaneGroups,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    // 1, 2 and 8 rows are dispatched exactly: a constant row count lets the row loops unroll
    // without a bound check per row.
    let m = if matches!(M, 1 | 2 | 8) { M } else { out.len().min(M) };
    let k = w.k;
    let ng = w.groups();
    let words = w.bytes.as_ptr().add(row * w.row_bytes()) as *const __m256i;
    let wpg = w.gs * B as usize / 32; // words per group, a power of two
    let (s_all, b_all, row_start) = (s, b, row * ng);
    let (s, b) = (&s[row_start..row_start + ng], &b[row_start..row_start + ng]);
    let mask = _mm256_set1_epi32((1 << B) - 1);
    let mut tot = [_mm256_setzero_ps(); M];
    let pf = prefetch_blocks();
    // One block: 8 words, `8 * PER` elements, scaled per lane by `sv`.
    macro_rules! block {
        ($blk:expr, $sv:expr) => {{
            let blk = $blk;
            if pf > 0 && blk % 2 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(words.add(blk + pf) as *const i8);
            }
            let v = _mm256_loadu_si256(words.add(blk));
            let mut q = [_mm256_setzero_ps(); PER];
            for (j, qj) in q.iter_mut().enumerate() {
                let t = if j + 1 < PER {
                    _mm256_and_si256(v, _mm256_sllv_epi32(mask, _mm256_set1_epi32(j as i32 * B)))
                } else {
                    _mm256_srlv_epi32(v, _mm256_set1_epi32(32 - B))
                };
                *qj = _mm256_cvtepi32_ps(t);
            }
            let base = blk * 8 * PER;
            for r in 0..m {
                let xr = xp.as_ptr().add(r * k + base);
                // Two chains so the FMA latency is hidden.
                let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for j in (0..PER).step_by(2) {
                    a0 = _mm256_fmadd_ps(q[j], _mm256_loadu_ps(xr.add(j * 8)), a0);
                    a1 = _mm256_fmadd_ps(q[j + 1], _mm256_loadu_ps(xr.add(j * 8 + 8)), a1);
                }
                tot[r] = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), $sv, tot[r]);
            }
        }};
    }
    // One chunk of (up to) eight groups starting at group `g`: `wpg` blocks, or fewer at the end.
    macro_rules! chunk {
        ($g:expr, $sv8:expr, $bv8:expr, $xs:expr) => {{
            let (g, sv8, bv8) = ($g, $sv8, $bv8);
            let blocks = ((ng - g).min(8) * wpg).div_ceil(8);
            for j in 0..blocks {
                block!(g * wpg / 8 + j, _mm256_permutevar8x32_ps(sv8, _mm256_loadu_si256(idx[j].as_ptr() as *const __m256i)));
            }
            for r in 0..m {
                tot[r] = _mm256_fmadd_ps(bv8, $xs(r), tot[r]);
            }
        }};
    }
    let ngp = xsum_stride(ng); // xsum's row stride (zero-padded)
    let xs = |r: usize, g: usize| _mm256_loadu_ps(xsum.as_ptr().add(r * ngp + g));
    let full = ng / 8 * 8;
    for g in (0..full).step_by(8) {
        chunk!(g, T::load8(s.as_ptr().add(g)), T::load8(b.as_ptr().add(g)), |r: usize| xs(r, g));
    }
    if full < ng {
        // The last groups. Lanes past the row's end are used by no block and their biases are
        // masked to zero, so the next row's values may be read there; only the matrix's last
        // rows copy them out.
        if row_start + full + 8 <= s_all.len() {
            let (sp, bp) = (s_all.as_ptr().add(row_start + full), b_all.as_ptr().add(row_start + full));
            let live = _mm256_cmpgt_epi32(_mm256_set1_epi32((ng - full) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            chunk!(full, T::load8(sp), _mm256_and_ps(T::load8(bp), _mm256_castsi256_ps(live)), |r: usize| xs(r, full));
        } else {
            let (mut sp, mut bp) = ([T::default(); 8], [T::default(); 8]);
            sp[..ng - full].copy_from_slice(&s[full..]);
            bp[..ng - full].copy_from_slice(&b[full..]);
            chunk!(full, T::load8(sp.as_ptr()), T::load8(bp.as_ptr()), |r: usize| xs(r, full));
        }
    }
    for r in 0..m {
        out[r] = crate::backend::cpu::simd::hsum(std::mem::transmute::<__m256, [f32; 8]>(tot[r]));
    }
}

/// The packed matrix `b` of a batch of `w`/scales/biases inputs (all dense row-major).
fn packed<'a>(p: &QuantParams, w: &'a [u32], sc: &'a ScaleData<'a>, b: usize, rows: usize, k: usize) -> Packed<'a> {
    let row_words = k * p.bits / 32;
    let ng = rows * k / p.group_size;
    let bytes = &as_bytes(w)[b * rows * row_words * 4..(b + 1) * rows * row_words * 4];
    let r = b * ng..(b + 1) * ng;
    let sc = match sc {
        ScaleData::F32(s, bb) => Scales::F32(&s[r.clone()], &bb[r]),
        ScaleData::F16(s, bb) => Scales::F16(&s[r.clone()], &bb[r]),
        ScaleData::Bf16(s, bb) => Scales::Bf16(&s[r.clone()], &bb[r]),
        ScaleData::U8(s) if p.mode == QuantMode::Nvfp4 => Scales::E4m3(&s[r]),
        ScaleData::U8(s) => Scales::E8m0(&s[r]),
    };
    Packed { bytes, sc, k, gs: p.group_size, bits: p.bits, mode: p.mode }
}

/// Dense scales (and biases): borrowed when already row-major (the usual case), else copied.
enum ScaleData<'a> {
    F32(Cow<'a, [f32]>, Cow<'a, [f32]>),
    F16(Cow<'a, [f16]>, Cow<'a, [f16]>),
    Bf16(Cow<'a, [bf16]>, Cow<'a, [bf16]>),
    U8(Cow<'a, [u8]>),
}

fn scale_data<'a>(p: &QuantParams, s: &'a Data, b: Option<&'a Data>) -> Result<ScaleData<'a>> {
    if p.mode != QuantMode::Affine {
        return Ok(ScaleData::U8(s.row_major::<u8>()));
    }
    let b = b.ok_or_else(|| Error::runtime("internal: affine quantized matmul without biases"))?;
    Ok(match s.dtype {
        Dtype::Float32 => ScaleData::F32(s.row_major::<f32>(), b.row_major::<f32>()),
        Dtype::Float16 => ScaleData::F16(s.row_major::<f16>(), b.row_major::<f16>()),
        Dtype::Bfloat16 => ScaleData::Bf16(s.row_major::<bf16>(), b.row_major::<bf16>()),
        d => return Err(Error::invalid(format!("[quantized_matmul] unsupported scales dtype {d}"))),
    })
}

fn x_f32(x: &Data) -> Result<Vec<f32>> {
    float_dispatch!(x.dtype, T => Ok(x.row_major::<T>().iter().map(|v| v.to_f32()).collect::<Vec<f32>>()))
}

fn store(y: Vec<f32>, spec: &Spec) -> Result<Data> {
    float_dispatch!(spec.1, T => Data::build::<T>(spec.0.clone(), |o| o.iter_mut().zip(&y).for_each(|(o, &v)| *o = T::from_f32(v))))
}

/// One product `x_b [m, kx] @ W_b(ᵀ)` into `y_b [m, out]` (`xdt`: see `qmv_t`).
fn one(transpose: bool, x: &[f32], xdt: Dtype, m: usize, w: &Packed, wrows: usize, y: &mut [f32]) {
    if transpose {
        qmm_t(x, xdt, m, w, wrows, y)
    } else {
        qmm_n(x, m, w, wrows, y)
    }
}

pub fn matmul(p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Data> {
    let x = x_f32(&inputs[0])?;
    let xdt = inputs[0].dtype;
    let w = inputs[1].row_major::<u32>();
    let sc = scale_data(p, &inputs[2], inputs.get(3))?;
    let ws = &inputs[1].shape;
    let wrows = ws[ws.len() - 2];
    let kw = ws[ws.len() - 1] * 32 / p.bits;
    let nbatch = inputs[1].size() / (wrows * ws[ws.len() - 1]).max(1);
    let out_cols = spec.0[spec.0.len() - 1];
    let kx = inputs[0].shape[inputs[0].ndim() - 1];
    let compute = |y: &mut [f32]| {
        if kx == 0 || out_cols == 0 || y.is_empty() {
            y.fill(0.0);
            return;
        }
        let m = x.len() / kx / nbatch.max(1);
        for b in 0..nbatch.max(1) {
            let pk = packed(p, &w, &sc, b, wrows, kw);
            one(transpose, &x[b * m * kx..(b + 1) * m * kx], xdt, m, &pk, wrows, &mut y[b * m * out_cols..(b + 1) * m * out_cols]);
        }
    };
    // Every kernel writes each output element once (or its gemm overwrites first), so a float32
    // result is computed in place: no zeroed scratch and no copy of a decode step's logits.
    if spec.1 == Dtype::Float32 {
        return Data::build::<f32>(spec.0.clone(), compute);
    }
    let mut y = vec![0f32; spec.0.iter().product()];
    compute(&mut y);
    store(y, spec)
}

pub fn gather(p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Data> {
    let nb = usize::from(p.mode.has_biases());
    let x = x_f32(&inputs[0])?;
    let xdt = inputs[0].dtype;
    let w = inputs[1].row_major::<u32>();
    let sc = scale_data(p, &inputs[2], if nb == 1 { Some(&inputs[3]) } else { None })?;
    let lhs = inputs[3 + nb].row_major::<u32>();
    let rhs = inputs[4 + nb].row_major::<u32>();
    let (bx, m, kx) = (inputs[0].shape[0], inputs[0].shape[1], inputs[0].shape[2]);
    let ws = &inputs[1].shape;
    let (bw, wrows) = (ws[0], ws[1]);
    let kw = ws[2] * 32 / p.bits;
    let out_cols = spec.0[spec.0.len() - 1];
    let mut y = vec![0f32; spec.0.iter().product()];
    for (i, (&li, &ri)) in lhs.iter().zip(rhs.iter()).enumerate() {
        let (li, ri) = (li as usize, ri as usize);
        if li >= bx || ri >= bw {
            return Err(Error::index(format!("[gather_qmm] index out of range: lhs {li} (of {bx}), rhs {ri} (of {bw})")));
        }
        let pk = packed(p, &w, &sc, ri, wrows, kw);
        one(transpose, &x[li * m * kx..(li + 1) * m * kx], xdt, m, &pk, wrows, &mut y[i * m * out_cols..(i + 1) * m * out_cols]);
    }
    store(y, spec)
}

/// Blocks of 32 bytes to prefetch ahead of the one being read: 64 (2 KB; `OXMX_QMV_PF=N`
/// overrides, 0 turns it off), for the AVX2 mat-vecs. On Zen 2 the integer kernel's 4096x14336
/// 4-bit row went from 1.83-1.86 ms without to 1.54-1.60 ms (1 KB: 1.57, 4 KB: 1.57); the
/// default model's decode (float kernel, rows of 576): six alternating pairs, 84.9 tok/s
/// mean without, 88.0 with (a noisy host; no pair much worse).
pub(super) fn prefetch_blocks() -> usize {
    static PF: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PF.get_or_init(|| std::env::var("OXMX_QMV_PF").ok().and_then(|v| v.parse().ok()).unwrap_or(64))
}
