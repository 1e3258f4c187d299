//! bfloat16 matmul on Intel AMX tiles (Sapphire Rapids and later).
//!
//! One TDPBF16PS multiplies a 16x32 bf16 tile by a 32x16 bf16 tile into a 16x16 f32 tile, so a
//! core does ~1k flops a cycle, several times its AVX-512 f32 FMA rate. No crate offers AMX and
//! its intrinsics are unstable in Rust, so the few instructions are written as inline assembly
//! (LLVM's assembler knows them). Operands are packed into tile layout first: A as 16-row panels
//! of 16x32 tiles, B pair-interleaved (row r of a tile holds B[2r][c], B[2r+1][c]) as the
//! instruction expects; edges are zero-padded. Each step computes a 32x32 output block with
//! four accumulator tiles; column chunks of B sized for L2 are shared by all row blocks.
//! Linux only: the kernel must grant the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).

use half::bf16;
use rayon::prelude::*;
use std::arch::asm;
use std::sync::OnceLock;

/// Asks the kernel for permission to use the AMX tile data state (Linux); true when granted
/// and the CPU has AMX-BF16.
pub fn amx_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
        let l7 = std::arch::x86_64::__cpuid_count(7, 0);
        if l7.edx & (1 << 22) == 0 || l7.edx & (1 << 24) == 0 {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain syscall with integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        r == 0
    })
}

/// The 64-byte tile configuration: palette 1; tiles 0-3 are 16x16 f32 accumulators, 4-5 are A
/// tiles (16 rows x 32 bf16), 6-7 are B tiles in pair-interleaved layout (16 rows x 16 pairs).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1; // palette
    for t in 0..8 {
        // colsb (bytes per row) at 16 + 2t, rows at 48 + t: every tile is 16 rows x 64 bytes.
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
    }
    TileConfig(c)
}

/// Packs rows [r0, r0 + 16) of row-major `a` (m x k) into kt tiles of 16 x 32 bf16, zero-padded.
fn pack_a(a: &[bf16], m: usize, k: usize, r0: usize, kt: usize, out: &mut [bf16]) {
    out.fill(bf16::ZERO);
    for r in 0..16.min(m.saturating_sub(r0)) {
        let row = &a[(r0 + r) * k..(r0 + r + 1) * k];
        for t in 0..kt {
            let (j0, j1) = (t * 32, (t * 32 + 32).min(k));
            out[t * 512 + r * 32..t * 512 + r * 32 + (j1 - j0)].copy_from_slice(&row[j0..j1]);
        }
    }
}

/// Packs columns [c0, c0 + 16) of row-major `b` (k x n) into kt tiles in the pair-interleaved
/// layout TDPBF16PS expects: tile row r holds B[2r][c], B[2r+1][c] for c in 0..16.
fn pack_b(b: &[bf16], k: usize, n: usize, c0: usize, out: &mut [bf16]) {
    out.fill(bf16::ZERO);
    let w = 16.min(n.saturating_sub(c0));
    if w == 0 {
        return;
    }
    for i in 0..k {
        let (t, r, p) = (i / 32, (i % 32) / 2, i % 2);
        let src = &b[i * n + c0..i * n + c0 + w];
        let dst = &mut out[t * 512 + r * 32..t * 512 + r * 32 + 32];
        for (c, &v) in src.iter().enumerate() {
            dst[c * 2 + p] = v;
        }
    }
}

/// C (32 x 32 f32, row stride 32) = A panel pair x B panel pair over kt k-tiles.
///
/// # Safety
/// `amx_available()` must be true and the pointers must cover kt tiles each (c: 32x32 f32).
unsafe fn block_32x32(a0: *const bf16, a1: *const bf16, b0: *const bf16, b1: *const bf16, kt: usize, c: *mut f32) {
    let cfg = config();
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack));
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        let stride: usize = 64;
        for t in 0..kt {
            let off = t * 512;
            asm!(
                "tileloadd tmm4, [{a0} + {s} * 1]",
                "tileloadd tmm5, [{a1} + {s} * 1]",
                "tileloadd tmm6, [{b0} + {s} * 1]",
                "tileloadd tmm7, [{b1} + {s} * 1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0.add(off),
                a1 = in(reg) a1.add(off),
                b0 = in(reg) b0.add(off),
                b1 = in(reg) b1.add(off),
                s = in(reg) stride,
                options(nostack, readonly),
            );
        }
        let cs: usize = 128; // 32 f32 per row
        asm!(
            "tilestored [{c0} + {s} * 1], tmm0",
            "tilestored [{c1} + {s} * 1], tmm1",
            "tilestored [{c2} + {s} * 1], tmm2",
            "tilestored [{c3} + {s} * 1], tmm3",
            "tilerelease",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.add(16 * 32),
            c3 = in(reg) c.add(16 * 32 + 16),
            s = in(reg) cs,
            options(nostack),
        );
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// C = A B for row-major bf16 A (m x k) and B (k x n) into row-major f32 `c` (m x n).
/// Callers check `amx_available()` first.
pub fn matmul_bf16(a: &[bf16], b: &[bf16], m: usize, k: usize, n: usize, c: &mut [f32]) {
    let kt = k.div_ceil(32);
    let (mp, np) = (m.div_ceil(32), n.div_ceil(32));
    let tile = kt * 512;
    let mut ap = vec![bf16::ZERO; mp * 2 * tile];
    ap.par_chunks_mut(tile).enumerate().for_each(|(i, o)| pack_a(a, m, k, i * 16, kt, o));
    let mut bp = vec![bf16::ZERO; np * 2 * tile];
    bp.par_chunks_mut(tile).enumerate().for_each(|(j, o)| pack_b(b, k, n, j * 16, o));
    // Column chunks whose packed B (kt x 32 cols x 2 bytes per pair-column) fits in ~1 MiB of L2
    // are reused by every row block; threads take chunks.
    let pairs_per_chunk = ((1 << 20) / (tile * 2 * 2)).clamp(1, np.div_ceil(rayon::current_num_threads()).max(1));
    let cp = SendPtr(c.as_mut_ptr());
    (0..np.div_ceil(pairs_per_chunk)).into_par_iter().for_each(|chunk| {
        let cp = cp;
        let mut blk = [0f32; 32 * 32];
        for mi in 0..mp {
            let a0 = ap[(2 * mi) * tile..].as_ptr();
            let a1 = ap[(2 * mi + 1) * tile..].as_ptr();
            for nj in chunk * pairs_per_chunk..((chunk + 1) * pairs_per_chunk).min(np) {
                let b0 = bp[(2 * nj) * tile..].as_ptr();
                let b1 = bp[(2 * nj + 1) * tile..].as_ptr();
                // SAFETY: AMX is available (checked by the caller) and the panels hold kt tiles.
                unsafe { block_32x32(a0, a1, b0, b1, kt, blk.as_mut_ptr()) };
                let h = (m - mi * 32).min(32);
                let w = (n - nj * 32).min(32);
                for r in 0..h {
                    // SAFETY: chunks own disjoint column ranges of C.
                    let dst = unsafe { std::slice::from_raw_parts_mut(cp.0.add((mi * 32 + r) * n + nj * 32), w) };
                    dst.copy_from_slice(&blk[r * 32..r * 32 + w]);
                }
            }
        }
    });
}
