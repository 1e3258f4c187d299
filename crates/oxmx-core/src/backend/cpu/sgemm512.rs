//! The AVX-512 tile of `sgemm`: 12 rows × 32 columns of C in 24 zmm accumulators.
//!
//! Per depth step: two 16-wide loads of the packed B panel, twelve broadcasts of packed A values
//! (folded into the FMAs as embedded broadcasts) and 24 FMAs, which keep both of a Sapphire
//! Rapids core's 512-bit FMA ports busy (12 cycles a step) with 14 loads to spread over its load
//! ports. The two B vectors and a broadcast bring the register count to 27 of 32. A 32-wide B panel
//! 256 deep is 32 KiB, inside the 48 KiB L1d; the A block (240 rows) is 240 KiB of the 2 MiB L2.

use super::sgemm::{microkernel, Tile};
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

microkernel!(
    kernel,
    "avx512f",
    Avx512Tile,
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_load_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps
);
