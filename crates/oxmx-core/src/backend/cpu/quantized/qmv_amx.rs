//! The few-row 4-bit affine `x @ Wᵀ` on AMX tiles, for an f32 or f16 `x` (up to 8 rows): the
//! batched decode of a 4-bit model (one row per sequence) on Sapphire Rapids and later.
//!
//! With AVX-512 every row of `x` costs its own multiply-adds per code, so eight rows cost ~4x one
//! row even when the weights stay in cache (issue 8's batched decode measured 2x the tokens/s
//! of one stream). On AMX the codes are expanded once and one `tdpbf16ps` multiplies 16 weight
//! rows by 32 codes against every row of `x` at once, so the work per code hardly depends on `m`.
//!
//! - A tile: 16 weight rows x 32 codes, each code the bfloat16 `1 + q/16` (`0x3F80 | q << 3`,
//!   exact; the trick of `qmv_bf16`): 16 packed bytes broadcast to the four 128-bit lanes,
//!   `vpmultishiftqb` moves each lane's nibble under the exponent, `vpternlogd` sets the rest.
//!   Codes land in the permuted order `PERM`; `x` is permuted the same way once per call.
//! - B tile: per 32 codes, `x` as pairs of bfloat16 in the layout the instruction expects, each
//!   row of `x` split as `hi + lo` (two bfloat16 carry 16 of f32's 24 mantissa bits, f16 values
//!   exactly) in two columns. The 16 columns hold `G` groups side by side (`G = 8` for one row of
//!   `x`, 1 for eight), so a round of `G` groups accumulates into one f32 tile, stored once.
//! - Folding a stored tile: `16s · C + (b − 16s) · Σx` per group (the offset of `1 + q/16`
//!   returns through the bias term), scales permuted to the lanes of their groups.
//!
//! Batch invariance: every output sums its groups into 8 partial sums (group `g` into partial
//! `g mod 8`, whatever `G` is), each `hi` and `lo` column apart, and adds them in one fixed order
//! at the end, so a row of `x` gets the same bits alone and in any batch. The kernel is chosen by
//! the CPU, the matrix and the dtype of `x`, never by `m`.

use super::qmm::{Packed, Scales};
use crate::backend::cpu::simd::Load16;
use std::arch::asm;
use std::arch::x86_64::*;

/// Weight rows per tile (the tile's row count).
const ROWS: usize = 16;

/// The most 32-code chunks a round holds.
const ROUND: usize = 8;

/// Bytes ahead (per weight row) that the packed codes are prefetched into L2.
const AHEAD: usize = 1024;

/// Whether this CPU runs the kernel and the matrix fits it: AMX granted, 4-bit affine, groups of
/// 32 codes or more. `OXMX_QMV_AMX=0` turns it off (for A/B measurements).
pub(super) fn usable(w: &Packed) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let cpu = *CPU.get_or_init(|| {
        crate::backend::cpu::simd::level() == crate::backend::cpu::simd::Level::Avx512
            && std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && crate::backend::cpu::amx::amx_available()
            && std::env::var("OXMX_QMV_AMX").map_or(true, |v| v != "0")
    });
    cpu && w.is_affine() && w.bits == 4 && w.gs % 32 == 0 && w.k % w.gs == 0
}

/// Position `t` of a tile row holds code `PERM[t]` of its 32 (see `expand`).
const PERM: [usize; 32] = {
    let mut p = [0usize; 32];
    let mut t = 0;
    while t < 32 {
        let (q, u) = (t / 4, t % 4);
        p[t] = 16 * (q % 2) + 4 * (q / 2) + u;
        t += 1;
    }
    p
};

/// `x` prepared for the tiles: per 32 codes a B tile (16 pair rows x 16 columns of bfloat16
/// pairs), per round the group sums of `x` in the lanes of their `hi` columns.
pub(super) struct XTiles {
    tiles: Vec<u32>,
    off: usize,
    sums: Vec<f32>,
    m: usize,
    /// Groups per round (per accumulator tile).
    g: usize,
}

/// Groups side by side in a tile for `m` rows of `x` (2m columns each) and groups of `gs`:
/// a power of two, at most 8 chunks of 32 codes a round.
fn groups_per_round(m: usize, gs: usize) -> usize {
    let fit = 16 / (2 * m);
    let fit = if fit >= 8 {
        8
    } else if fit >= 4 {
        4
    } else if fit >= 2 {
        2
    } else {
        1
    };
    fit.min(8 / (gs / 32)).max(1)
}

/// Builds `XTiles` of `x` (`[m, k]`, m ≤ 8).
pub(super) fn prepare(x: &[f32], m: usize, k: usize, gs: usize) -> XTiles {
    let g = groups_per_round(m, gs);
    let chunks = k / 32;
    let rounds = (k / gs).div_ceil(g);
    let mut tiles = vec![0u32; chunks * 256 + 16];
    let off = tiles.as_ptr().align_offset(64).min(16);
    let mut sums = vec![0f32; rounds * 16];
    // SAFETY: `usable` (the caller's gate) checked the CPU; buffers are sized above.
    unsafe { prepare_avx512(x, m, k, gs, g, &mut tiles[off..off + chunks * 256], &mut sums) };
    XTiles { tiles, off, sums, m, g }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn prepare_avx512(x: &[f32], m: usize, k: usize, gs: usize, gr: usize, tiles: &mut [u32], sums: &mut [f32]) {
    let perm: [u16; 32] = std::array::from_fn(|t| PERM[t] as u16);
    let perm = _mm512_loadu_si512(perm.as_ptr() as *const __m512i);
    // Tile row p of column j is dword 16p + j.
    let rows = _mm512_slli_epi32::<4>(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    for r in 0..m {
        for c in 0..k / 32 {
            let g = 32 * c / gs;
            let col = (g % gr) * 2 * m + r;
            let p = x.as_ptr().add(r * k + 32 * c);
            let (a, b) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            sums[(g / gr) * 16 + col] += _mm512_reduce_add_ps(_mm512_add_ps(a, b));
            // hi: nearest bfloat16; lo: the nearest bfloat16 of what is left.
            let hi = _mm512_cvtne2ps_pbh(b, a);
            let hi_i: __m512i = std::mem::transmute(hi);
            // A macro, not a closure: a closure is not compiled with this function's features.
            macro_rules! widen {
                ($v:expr) => {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32($v)))
                };
            }
            let ha = widen!(_mm512_castsi512_si256(hi_i));
            let hb = widen!(_mm512_extracti64x4_epi64::<1>(hi_i));
            let lo: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hb), _mm512_sub_ps(a, ha)));
            let base = tiles.as_mut_ptr().add(c * 256) as *mut u8;
            let (hp, lp) = (_mm512_permutexvar_epi16(perm, hi_i), _mm512_permutexvar_epi16(perm, lo));
            _mm512_i32scatter_epi32::<4>(base.add(4 * col) as *mut _, rows, hp);
            _mm512_i32scatter_epi32::<4>(base.add(4 * (col + m)) as *mut _, rows, lp);
        }
    }
}

/// The tile configuration: every tile 16 rows x 64 bytes (tmm0-1 f32 accumulators, tmm4-5 A,
/// tmm6-7 B).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = ROWS as u8;
    }
    TileConfig(c)
}

/// `out[i * m + j] = W[row0 + i] · x[j]` for `i < out.len() / m`.
///
/// # Safety
/// `usable(w)` holds; `x` is `prepare` of `[m, w.k]`; rows `row0..row0 + out.len() / m` exist.
pub(super) unsafe fn rows(x: &XTiles, w: &Packed, row0: usize, out: &mut [f32]) {
    SCRATCH.with(|sc| {
        let sc = &mut *sc.borrow_mut();
        match w.sc {
            Scales::F32(s, b) => rows_t(x, w, s, b, row0, out, sc),
            Scales::F16(s, b) => rows_t(x, w, s, b, row0, out, sc),
            Scales::Bf16(s, b) => rows_t(x, w, s, b, row0, out, sc),
            _ => unreachable!("affine scales are f32, f16 or bf16"),
        }
    })
}

/// 16 rows of 16 f32 (a tile's rows), cache-line aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Buf([[f32; 16]; ROWS]);

impl Buf {
    const ZERO: Buf = Buf([[0f32; 16]; ROWS]);
}

/// A thread's buffers for the kernel, kept between calls: allocating and zeroing them per call
/// cost as much as the tiles' work on SmolLM2's short rows.
struct Scratch {
    sc: Vec<f32>,
    bi: Vec<f32>,
    /// 2 rounds of expanded codes, 2 stored accumulator tiles, 8 vectors of partial sums.
    bufs: Vec<Buf>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch { sc: Vec::new(), bi: Vec::new(), bufs: vec![Buf::ZERO; 2 * ROUND + 2 + 8] });
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512bf16,avx2,fma,f16c")]
unsafe fn rows_t<T: Load16>(x: &XTiles, w: &Packed, s: &[T], b: &[T], row0: usize, out: &mut [f32], scratch: &mut Scratch) {
    let (m, gr) = (x.m, x.g);
    let n = out.len() / m;
    let ng = w.groups();
    // Room for a window of 16 groups from any round's first.
    let ngp = ng + 16;
    let cfg = config();
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    // 16s and b − 16s of the block's rows, [row][group], zero-padded.
    // 16s and b − 16s of the block's rows, [row][group] (the padding stays zero or finite).
    if scratch.sc.len() < ROWS * ngp {
        scratch.sc.resize(ROWS * ngp, 0.0);
        scratch.bi.resize(ROWS * ngp, 0.0);
    }
    let Scratch { sc, bi, bufs } = scratch;
    // Two rounds of expanded codes, two of stored sums (see the pipeline below), and the 8
    // partial sums of each row: `8 / gr` vectors of `gr` groups x 2m columns.
    let (abuf, rest) = bufs.split_at_mut(2 * ROUND);
    let (cbuf, acc) = rest.split_at_mut(2);
    let zs = 8 / gr;
    let acc = &mut acc[..zs];
    let mut ctrl = [0u8; 64];
    for (q, byte) in ctrl.iter_mut().enumerate() {
        // Byte q of qword q / 8: the low byte of lane t = q / 2 takes bits 4·(code mod 16) − 3.
        if q % 2 == 0 {
            let code = PERM[q / 2];
            *byte = ((4 * (code % 16) + 61) % 64) as u8;
        }
    }
    let ctrl = _mm512_loadu_si512(ctrl.as_ptr() as *const __m512i);
    let (field, one) = (_mm512_set1_epi16(0x78), _mm512_set1_epi16(0x3F80));
    let sixteen = _mm512_set1_ps(16.0);
    // Lane l of a round's tile belongs to its group l / 2m.
    let lane_group: [i32; 16] = std::array::from_fn(|l| (l / (2 * m)).min(gr - 1) as i32);
    let lane_group = _mm512_loadu_si512(lane_group.as_ptr() as *const __m512i);
    // Lane shifts of the final sums: by 2m, 4m, .. within a vector of `gr` partials, and by m.
    let shift = |by: usize| _mm512_loadu_si512(std::array::from_fn::<i32, 16, _>(|l| ((l + by) % 16) as i32).as_ptr() as *const __m512i);
    let shifts: Vec<__m512i> = (0..gr.trailing_zeros()).map(|lv| shift((2 * m) << lv)).collect();
    let shift_m = shift(m);
    let rb = w.row_bytes();
    let cpg = w.gs / 32; // 32-code chunks per group
    let rounds = ng.div_ceil(gr);
    let tiles = x.tiles.as_ptr().add(x.off) as *const u32;
    for blk in (0..n).step_by(ROWS) {
        let nr = ROWS.min(n - blk);
        // Scales and biases of the block: 16 groups at a time, the last window overlapping the
        // one before (rows shorter than 16 groups copied out zero-padded).
        for i in 0..nr {
            let g0 = (row0 + blk + i) * ng;
            let (sr, br) = (&s[g0..g0 + ng], &b[g0..g0 + ng]);
            let (scr, bir) = (sc.as_mut_ptr().add(i * ngp), bi.as_mut_ptr().add(i * ngp));
            // A macro, not a closure: a closure is not compiled with this function's features.
            macro_rules! put {
                ($g:expr, $sv:expr, $bv:expr) => {{
                    let s16 = _mm512_mul_ps($sv, sixteen);
                    _mm512_storeu_ps(scr.add($g), s16);
                    _mm512_storeu_ps(bir.add($g), _mm512_sub_ps($bv, s16));
                }};
            }
            if ng < 16 {
                let (mut sp, mut bp) = ([T::default(); 16], [T::default(); 16]);
                sp[..ng].copy_from_slice(sr);
                bp[..ng].copy_from_slice(br);
                put!(0, T::load16(sp.as_ptr()), T::load16(bp.as_ptr()));
                continue;
            }
            let mut g = 0;
            while g < ng {
                let g1 = g.min(ng - 16);
                put!(g1, T::load16(sr.as_ptr().add(g1)), T::load16(br.as_ptr().add(g1)));
                g += 16;
            }
        }
        for a in acc.iter_mut() {
            *a = Buf::ZERO;
        }
        let wrow = w.bytes.as_ptr().add((row0 + blk) * rb);
        // Rounds of `gr` groups, software-pipelined: while the tiles of round r multiply, round
        // r + 1 is expanded and round r − 1's stored sums are folded, so no store → tile load
        // → multiply → tile store → load chain is waited for in line (in order, one chunk at a
        // time, it ran at ~100 cycles a chunk).
        let chunks_of = |r: usize| (gr.min(ng - r * gr)) * cpg;
        macro_rules! expand {
            ($r:expr) => {{
                let r = $r;
                for j in 0..chunks_of(r) {
                    let c = r * gr * cpg + j;
                    let a = &mut abuf[(r % 2) * ROUND + j];
                    for i in 0..nr {
                        let src = wrow.add(i * rb + 16 * c);
                        if c % 4 == 0 {
                            _mm_prefetch::<_MM_HINT_T1>(src.wrapping_add(AHEAD) as *const i8);
                        }
                        let v = _mm512_broadcast_i32x4(_mm_loadu_si128(src as *const __m128i));
                        let e = _mm512_ternarylogic_epi32::<0xEA>(_mm512_multishift_epi64_epi8(ctrl, v), field, one);
                        _mm512_store_si512(a.0[i].as_mut_ptr() as *mut __m512i, e);
                    }
                }
            }};
        }
        // A and B tiles alternate between two registers; the accumulator is the round's.
        macro_rules! mul {
            ($a:literal, $b:literal, $c:literal, $ap:expr, $bp:expr) => {
                asm!(
                    concat!("tileloadd ", $a, ", [{a} + {sa} * 1]"),
                    concat!("tileloadd ", $b, ", [{b} + {sa} * 1]"),
                    concat!("tdpbf16ps ", $c, ", ", $a, ", ", $b),
                    a = in(reg) $ap, sa = in(reg) 64usize, b = in(reg) $bp,
                    options(nostack, readonly)
                )
            };
        }
        macro_rules! store {
            ($c:literal, $p:expr) => {
                asm!(concat!("tilestored [{c} + {s} * 1], ", $c), concat!("tilezero ", $c), c = in(reg) $p, s = in(reg) 64usize, options(nostack))
            };
        }
        macro_rules! fold {
            ($r:expr) => {{
                let r = $r;
                let cb = &cbuf[r % 2];
                let xs = _mm512_loadu_ps(x.sums.as_ptr().add(r * 16));
                let z = &mut acc[r % zs];
                let g = r * gr;
                for i in 0..ROWS {
                    let c = _mm512_load_ps(cb.0[i].as_ptr());
                    let (sv, bv) = if gr == 1 {
                        (_mm512_set1_ps(*sc.get_unchecked(i * ngp + g)), _mm512_set1_ps(*bi.get_unchecked(i * ngp + g)))
                    } else {
                        (
                            _mm512_permutexvar_ps(lane_group, _mm512_loadu_ps(sc.as_ptr().add(i * ngp + g))),
                            _mm512_permutexvar_ps(lane_group, _mm512_loadu_ps(bi.as_ptr().add(i * ngp + g))),
                        )
                    };
                    let mut a = _mm512_load_ps(z.0[i].as_ptr());
                    a = _mm512_fmadd_ps(sv, c, a);
                    a = _mm512_fmadd_ps(bv, xs, a);
                    _mm512_store_ps(z.0[i].as_mut_ptr(), a);
                }
            }};
        }
        expand!(0);
        for r in 0..rounds {
            for j in 0..chunks_of(r) {
                let (ap, bp) = (abuf[(r % 2) * ROUND + j].0.as_ptr(), tiles.add((r * gr * cpg + j) * 256));
                match (j % 2, r % 2) {
                    (0, 0) => mul!("tmm4", "tmm6", "tmm0", ap, bp),
                    (1, 0) => mul!("tmm5", "tmm7", "tmm0", ap, bp),
                    (0, _) => mul!("tmm4", "tmm6", "tmm1", ap, bp),
                    _ => mul!("tmm5", "tmm7", "tmm1", ap, bp),
                }
            }
            if r + 1 < rounds {
                expand!(r + 1);
            }
            if r > 0 {
                fold!(r - 1);
            }
            let p = cbuf[r % 2].0.as_mut_ptr();
            if r % 2 == 0 {
                store!("tmm0", p);
            } else {
                store!("tmm1", p);
            }
        }
        fold!(rounds - 1);
        // The 8 partial sums added as one tree for every `m`: pairs (p, p + 1), then pairs of
        // pairs, then the two halves; `hi + lo` last. Partials side by side in a vector are
        // paired by shifting lanes, partials in different vectors by adding the vectors.
        for i in 0..nr {
            let mut v = [_mm512_setzero_ps(); 8];
            for (z, a) in acc.iter().enumerate() {
                v[z] = _mm512_load_ps(a.0[i].as_ptr());
            }
            for sh in &shifts {
                for vz in v.iter_mut().take(zs) {
                    *vz = _mm512_add_ps(*vz, _mm512_permutexvar_ps(*sh, *vz));
                }
            }
            let mut st = 1;
            while st < zs {
                for z in (0..zs).step_by(2 * st) {
                    v[z] = _mm512_add_ps(v[z], v[z + st]);
                }
                st *= 2;
            }
            let y = _mm512_add_ps(v[0], _mm512_permutexvar_ps(shift_m, v[0]));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add((blk + i) * m), (1u16 << m) - 1, y);
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}
