//! Small f32 products on the AVX2 tile without packing A.
//!
//! Packing pays for itself when each packed value is reused many times; in a small product it
//! is reused only n (A) or m (B) times, and the copy is a large share of the work. Attention's
//! batched products in a training step (128 products of 64×64×32) spent ~40% of their time
//! outside the microkernel, at 82 GFLOP/s against ~150 for large products. Here the 6×16
//! microkernel broadcasts A's values straight from the operand (any strides: six row pointers
//! and a depth step), and reads B's rows in place when they are contiguous and whole 16-column
//! panels; otherwise B alone is packed, once, over the whole depth. The summation order per
//! element is the packed kernel's (one FMA per depth step, in depth order), so results match
//! `sgemm`'s to the bit when its depth fits one block.

use super::sgemm::{pack_b, with_b_scratch, Avx2Tile, Tile, View};
use core::arch::x86_64::*;

/// Products up to this many multiply-adds (128³) take the unpacked path.
const MAX_WORK: usize = 1 << 21;

/// Whether `small` takes an m×n×k product (`OXMX_SGEMM_SMALL=0` keeps every product packed,
/// for A/B measurements).
pub(super) fn takes(m: usize, n: usize, k: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    m * n * k <= MAX_WORK && *ON.get_or_init(|| std::env::var("OXMX_SGEMM_SMALL").map_or(true, |v| v != "0"))
}

const MR: usize = Avx2Tile::MR;
const NR: usize = Avx2Tile::NR;

/// `C = A·B` (m×k by k×n, f32) into the m×n block at `c`, rows `ldc` apart, on one thread.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `a`, `b` describe readable m×k and k×n views; `c` is a
/// writable m×n block overlapping neither; k > 0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn small(m: usize, n: usize, k: usize, a: View<f32>, b: View<f32>, c: *mut f32, ldc: usize) {
    if b.cs == 1 && n.is_multiple_of(NR) {
        panels(m, n, k, a, |jr| (b.at(0, jr), b.rs), c, ldc);
    } else {
        let np = n.next_multiple_of(NR);
        with_b_scratch(np * k, |pb| {
            pack_b::<f32, Avx2Tile>(k, n, b, pb);
            panels(m, n, k, a, |jr| (pb.add(jr * k) as *const f32, NR as isize), c, ldc);
        });
    }
}

/// Every 6×16 tile of C; `panel(jr)` gives the B panel of columns jr.. and its depth step.
#[inline(always)]
unsafe fn panels(m: usize, n: usize, k: usize, a: View<f32>, panel: impl Fn(usize) -> (*const f32, isize), c: *mut f32, ldc: usize) {
    for jr in (0..n).step_by(NR) {
        let nr = NR.min(n - jr);
        let (bp, b_step) = panel(jr);
        for ir in (0..m).step_by(MR) {
            let mr = MR.min(m - ir);
            // Rows past the edge repeat the last one (in bounds); their results are dropped.
            let rows: [*const f32; MR] = std::array::from_fn(|r| a.at(ir + r.min(mr - 1), 0));
            if mr == MR && nr == NR {
                tile(k, rows, a.cs, bp, b_step, c.add(ir * ldc + jr), ldc);
            } else {
                let mut tmp = [0f32; MR * NR];
                tile(k, rows, a.cs, bp, b_step, tmp.as_mut_ptr(), NR);
                for i in 0..mr {
                    std::ptr::copy_nonoverlapping(tmp.as_ptr().add(i * NR), c.add((ir + i) * ldc + jr), nr);
                }
            }
        }
    }
}

/// One 6×16 tile over the whole depth: A's value of row r at depth p is `rows[r] + p·a_cs`,
/// B's 16 values at depth p start at `b + p·b_step`.
#[inline(always)]
unsafe fn tile(k: usize, rows: [*const f32; MR], a_cs: isize, mut b: *const f32, b_step: isize, c: *mut f32, ldc: usize) {
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let mut off = 0isize;
    for _ in 0..k {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (r, row) in rows.iter().enumerate() {
            let ar = _mm256_set1_ps(*row.offset(off));
            acc[2 * r] = _mm256_fmadd_ps(ar, b0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(ar, b1, acc[2 * r + 1]);
        }
        off += a_cs;
        b = b.offset(b_step);
    }
    for r in 0..MR {
        _mm256_storeu_ps(c.add(r * ldc), acc[2 * r]);
        _mm256_storeu_ps(c.add(r * ldc + 8), acc[2 * r + 1]);
    }
}
