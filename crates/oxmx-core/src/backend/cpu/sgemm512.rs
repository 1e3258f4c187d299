//! The AVX-512 tile of `sgemm`: 12 rows × 32 columns of C in 24 zmm accumulators.
//!
//! Per depth step: two 16-wide loads of the packed B panel, twelve broadcasts of packed A values
//! (folded into the FMAs as embedded broadcasts) and 24 FMAs, which keep both of a Sapphire
//! Rapids core's 512-bit FMA ports busy (12 cycles a step) with 14 loads to spread over its load
//! ports. The two B vectors and a broadcast bring the register count to 27 of 32. A 32-wide B panel
//! 256 deep is 32 KiB, inside the 48 KiB L1d; the A block (240 rows) is 240 KiB of the 2 MiB L2.

use super::sgemm::Tile;
use core::arch::x86_64::*;

pub(super) struct Avx512Tile;

/// Whether this CPU runs the tile.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

impl Tile for Avx512Tile {
    const MR: usize = 12;
    const NR: usize = 32;
    const KC: usize = 256;
    const MC: usize = 240;
    const NC: usize = 4096;
    unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, first: bool) {
        kernel(kc, a, b, c, ldc, first)
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn kernel(kc: usize, mut a: *const f32, mut b: *const f32, c: *mut f32, ldc: usize, first: bool) {
    const MR: usize = Avx512Tile::MR;
    const NR: usize = Avx512Tile::NR;
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1) as *const i8);
    }
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    #[inline(always)]
    unsafe fn step(acc: &mut [__m512; 2 * MR], a: *const f32, b: *const f32) {
        let (b0, b1) = (_mm512_load_ps(b), _mm512_load_ps(b.add(16)));
        for i in 0..MR {
            let ai = _mm512_set1_ps(*a.add(i));
            acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
        }
    }
    // Unrolled by 4 so the loop overhead stays off the FMA ports.
    for _ in 0..kc / 4 {
        for u in 0..4 {
            step(&mut acc, a.add(u * MR), b.add(u * NR));
        }
        a = a.add(4 * MR);
        b = b.add(4 * NR);
    }
    for _ in 0..kc % 4 {
        step(&mut acc, a, b);
        a = a.add(MR);
        b = b.add(NR);
    }
    for i in 0..MR {
        let row = c.add(i * ldc);
        let (mut lo, mut hi) = (acc[2 * i], acc[2 * i + 1]);
        if !first {
            lo = _mm512_add_ps(lo, _mm512_loadu_ps(row));
            hi = _mm512_add_ps(hi, _mm512_loadu_ps(row.add(16)));
        }
        _mm512_storeu_ps(row, lo);
        _mm512_storeu_ps(row.add(16), hi);
    }
}
