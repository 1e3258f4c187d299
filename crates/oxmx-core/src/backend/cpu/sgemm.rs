//! Single-precision GEMM for x86-64 CPUs with AVX2 and FMA, and with AVX-512.
//!
//! Hand-written because the `gemm` crate reaches only ~0.7x OpenBLAS on AVX2 hosts (Zen 3:
//! 116-130 GFLOP/s against 150-178 on two cores) and 0.5-0.75x PyTorch's oneDNN on AVX-512 ones
//! (Sapphire Rapids: 200-310 GFLOP/s against ~400 at a training step's shapes). This is the
//! classic BLIS layout: B is packed into KC×NR panels (kept in L1 by the inner loop), A into
//! MR×KC panels (an MC×KC block kept in L2), and a register-blocked FMA microkernel (a `Tile`)
//! holds its accumulators in registers: 6×16 in ymm registers on AVX2 (this file), 12×32 in zmm
//! registers on AVX-512 (`sgemm512.rs`). Packing reads arbitrary strides (transposed and sliced views work in place) and widens
//! f16/bf16 to f32 on the fly, so 16-bit products need no separate conversion pass; C is f32, and
//! `narrow` rounds it to 16 bits with F16C / integer rounding instead of per-element calls.

use core::arch::x86_64::*;
use rayon::prelude::*;
use std::alloc::{alloc, dealloc, Layout};
use std::cell::RefCell;

/// A register-blocked microkernel and the block sizes that suit it.
pub(super) trait Tile {
    /// Rows of C per microkernel call (A values broadcast per depth step).
    const MR: usize;
    /// Columns of C per microkernel call (B vectors loaded per depth step), a multiple of 8.
    const NR: usize;
    /// Depth of a packed block: a KC×NR B panel stays in L1d.
    const KC: usize;
    /// Rows of a packed A block (MC×KC in L2). Multiple of MR.
    const MC: usize;
    /// Columns of a packed B block (KC×NC in L3). Multiple of NR.
    const NC: usize;
    /// `C[MR, NR] (=|+=) A·B` over `kc` depth steps from packed panels (A: `p*MR + r`, B:
    /// `p*NR + c`); `first` overwrites C, otherwise adds to it.
    ///
    /// # Safety
    /// The CPU has the tile's instruction set; the panels hold `kc` steps; C is writable.
    unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, first: bool);
    /// Whether small f32 products skip packing A on this tile (`sgemm_small`).
    const UNPACKED_SMALL: bool = false;
}

/// AVX2: 6 rows × 16 columns = 12 ymm accumulators, plus 2 for B and 1 for A.
pub(super) struct Avx2Tile;

impl Tile for Avx2Tile {
    const MR: usize = 6;
    const NR: usize = 16;
    /// A 16-wide B panel (KC·NR·4 = 16 KiB) stays in Zen 3's 32 KiB L1d.
    const KC: usize = 256;
    /// 144 KiB, well inside the 512 KiB L2.
    const MC: usize = 144;
    /// 4 MiB, in L3.
    const NC: usize = 4096;
    unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, first: bool) {
        kernel(kc, a, b, c, ldc, first)
    }
    /// Measured on Zen 2 only: the AVX-512 tile keeps packing everything.
    const UNPACKED_SMALL: bool = true;
}

/// The widest tile this CPU runs: AVX-512's where the SIMD level allows it (`OXMX_SIMD=avx2`
/// caps it).
pub(super) fn wide() -> bool {
    super::simd::level() == super::simd::Level::Avx512 && super::sgemm512::available()
}

/// A strided matrix operand: element (i, j) is at `ptr + i*rs + j*cs` (in elements).
#[derive(Clone, Copy)]
pub(crate) struct View<T> {
    pub(crate) ptr: *const T,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

// SAFETY: a View is only read, and the caller guarantees the buffer outlives the product.
unsafe impl<T> Send for View<T> {}
unsafe impl<T> Sync for View<T> {}

impl<T> View<T> {
    #[inline(always)]
    pub(super) unsafe fn at(self, i: usize, j: usize) -> *const T {
        self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// Source element types the packing widens to f32.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F32,
    F16,
    Bf16,
}

/// An element type the packing can read: f32 as is, f16 through F16C, bf16 by a 16-bit shift.
pub(crate) trait Widen: Copy + Send + Sync + 'static {
    const KIND: Kind;
}
impl Widen for f32 {
    const KIND: Kind = Kind::F32;
}
impl Widen for half::f16 {
    const KIND: Kind = Kind::F16;
}
impl Widen for half::bf16 {
    const KIND: Kind = Kind::Bf16;
}

/// Whether this CPU can run the kernel.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// `C = A·B` with A m×k, B k×n and C an m×n row-major f32 buffer with row stride `ldc`, split over
/// up to `threads` rayon tasks.
///
/// # Safety
/// `available()` must hold; `a`, `b` must describe readable m×k and k×n views and `c` a writable
/// m×n block that overlaps neither.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm<T: Widen>(m: usize, n: usize, k: usize, a: View<T>, b: View<T>, c: *mut f32, ldc: usize, threads: usize) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            std::ptr::write_bytes(c.add(i * ldc), 0, n);
        }
        return;
    }
    if wide() {
        split_run::<T, super::sgemm512::Avx512Tile>(m, n, k, a, b, c, ldc, threads)
    } else {
        split_run::<T, Avx2Tile>(m, n, k, a, b, c, ldc, threads)
    }
}

/// `sgemm` on tile `M`.
#[allow(clippy::too_many_arguments)]
unsafe fn split_run<T: Widen, M: Tile>(m: usize, n: usize, k: usize, a: View<T>, b: View<T>, c: *mut f32, ldc: usize, threads: usize) {
    let (tm, tn) = grid::<M>(m, n, k, threads);
    if tm * tn == 1 {
        serial::<T, M>(m, n, k, a, b, c, ldc);
        return;
    }
    // Each task owns a rectangle of C and packs its own operands: no barriers between threads, at
    // the price of packing A tn times and B tm times (O(n²) next to the O(n³) product).
    let (rows, cols) = (split(m, tm, M::MR), split(n, tn, M::NR));
    let cp = CPtr(c);
    (0..tm * tn).into_par_iter().for_each(|t| {
        let (r, s) = ((rows[t / tn], rows[t / tn + 1]), (cols[t % tn], cols[t % tn + 1]));
        if r.1 > r.0 && s.1 > s.0 {
            let cp = cp;
            serial::<T, M>(
                r.1 - r.0,
                s.1 - s.0,
                k,
                View { ptr: a.at(r.0, 0), ..a },
                View { ptr: b.at(0, s.0), ..b },
                cp.0.add(r.0 * ldc + s.0),
                ldc,
            );
        }
    });
}

#[derive(Clone, Copy)]
struct CPtr(*mut f32);
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

/// Tasks along m and n: as many as threads while each keeps enough work to pay for a task, in the
/// factorisation that packs the least (A is re-packed per column part, B per row part).
fn grid<M: Tile>(m: usize, n: usize, k: usize, threads: usize) -> (usize, usize) {
    let work = m * n * k;
    let t = threads.min(work / (64 * 64 * 64)).max(1);
    let mut best = (1, 1, usize::MAX);
    for tm in 1..=t {
        if t % tm != 0 {
            continue;
        }
        let tn = t / tm;
        if tm > m.div_ceil(M::MR) || tn > n.div_ceil(M::NR) {
            continue;
        }
        let cost = tn * m + tm * n;
        if cost < best.2 {
            best = (tm, tn, cost);
        }
    }
    (best.0, best.1)
}

/// Boundaries of `parts` near-equal ranges of `len`, cut at multiples of `unit`.
fn split(len: usize, parts: usize, unit: usize) -> Vec<usize> {
    let units = len.div_ceil(unit);
    (0..=parts).map(|p| (units * p / parts * unit).min(len)).collect()
}

/// Near-equal blocks of at most `max`, rounded up to `unit`: 300 = 152 + 148, not 256 + 44.
fn block(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max);
    len.div_ceil(blocks).next_multiple_of(unit)
}

/// 64-byte aligned f32 scratch, grown on demand and kept per thread between products.
struct Scratch {
    ptr: *mut f32,
    len: usize,
}

impl Scratch {
    const fn new() -> Self {
        Scratch { ptr: std::ptr::null_mut(), len: 0 }
    }
    /// At least `len` floats (contents unspecified).
    fn get(&mut self, len: usize) -> *mut f32 {
        if len > self.len {
            self.free();
            // SAFETY: non-zero size, valid alignment.
            self.ptr = unsafe { alloc(Self::layout(len)) as *mut f32 };
            assert!(!self.ptr.is_null(), "sgemm: out of memory");
            self.len = len;
        }
        self.ptr
    }
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len * 4, 64).unwrap()
    }
    fn free(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated by `get` with this layout.
            unsafe { dealloc(self.ptr as *mut u8, Self::layout(self.len)) };
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.free();
    }
}

thread_local! {
    static PACKS: RefCell<(Scratch, Scratch)> = const { RefCell::new((Scratch::new(), Scratch::new())) };
}

/// `f` with at least `len` floats of this thread's B-packing scratch (64-byte aligned).
pub(super) fn with_b_scratch<R>(len: usize, f: impl FnOnce(*mut f32) -> R) -> R {
    PACKS.with(|p| f(p.borrow_mut().1.get(len)))
}

/// One thread's product: the BLIS loop nest jc (NC) → pc (KC, pack B) → ic (MC, pack A) → macro.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn serial<T: Widen, M: Tile>(m: usize, n: usize, k: usize, a: View<T>, b: View<T>, c: *mut f32, ldc: usize) {
    if M::UNPACKED_SMALL && T::KIND == Kind::F32 && super::sgemm_small::takes(m, n, k) {
        let f32_view = |v: View<T>| View { ptr: v.ptr as *const f32, rs: v.rs, cs: v.cs };
        super::sgemm_small::small(m, n, k, f32_view(a), f32_view(b), c, ldc);
        return;
    }
    let (kc_max, mc_max, nc_max) = (block(k, M::KC, 1), block(m, M::MC, M::MR), block(n, M::NC, M::NR));
    PACKS.with(|p| {
        let (sa, sb) = &mut *p.borrow_mut();
        // The padding absorbs the 8-wide stores of the last row panel (see `pack_a`).
        let (pa, pb) = (sa.get(mc_max * kc_max + 8), sb.get(nc_max * kc_max));
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                pack_b::<T, M>(kc, nc, View { ptr: b.at(pc, jc), ..b }, pb);
                for ic in (0..m).step_by(mc_max) {
                    let mc = mc_max.min(m - ic);
                    pack_a::<T, M>(mc, kc, m - ic, View { ptr: a.at(ic, pc), ..a }, pa);
                    macro_kernel::<M>(mc, nc, kc, pa, pb, c.add(ic * ldc + jc), ldc, pc == 0);
                }
            }
        }
    })
}

/// All tiles of an mc×nc block of C from packed A and B; `first` overwrites C, later blocks add.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn macro_kernel<M: Tile>(mc: usize, nc: usize, kc: usize, pa: *const f32, pb: *const f32, c: *mut f32, ldc: usize, first: bool) {
    for jr in (0..nc).step_by(M::NR) {
        let nr = M::NR.min(nc - jr);
        for ir in (0..mc).step_by(M::MR) {
            let mr = M::MR.min(mc - ir);
            let (ap, bp, cp) = (pa.add(ir * kc), pb.add(jr * kc), c.add(ir * ldc + jr));
            if mr == M::MR && nr == M::NR {
                M::kernel(kc, ap, bp, cp, ldc, first);
            } else {
                edge::<M>(mr, nr, kc, ap, bp, cp, ldc, first);
            }
        }
    }
}

/// A partial tile: the full tile's product into a stack buffer, then only the valid part to C.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn edge<M: Tile>(mr: usize, nr: usize, kc: usize, ap: *const f32, bp: *const f32, c: *mut f32, ldc: usize, first: bool) {
    // Room for the largest tile (12×32), not zeroed: the kernel writes all MR×NR values
    // (`first`) before any is read.
    const { assert!(M::MR * M::NR <= 12 * 32) };
    let mut tmp = [std::mem::MaybeUninit::<f32>::uninit(); 12 * 32];
    M::kernel(kc, ap, bp, tmp.as_mut_ptr() as *mut f32, M::NR, true);
    for i in 0..mr {
        let dst = c.add(i * ldc);
        for j in 0..nr {
            let v = tmp[i * M::NR + j].assume_init();
            *dst.add(j) = if first { v } else { *dst.add(j) + v };
        }
    }
}

/// A tile's microkernel `$name` (the `Tile::kernel` contract) for vectors of `$w` floats:
/// per depth step `NR / $w` B loads, `MR` A broadcasts and `MR · NR / $w` FMAs, the
/// accumulators in registers, unrolled by 4 so the loop overhead stays off the FMA ports.
macro_rules! microkernel {
    ($name:ident, $feature:literal, $tile:ty, $v:ty, $w:literal,
     $zero:ident, $load:ident, $loadu:ident, $storeu:ident, $set1:ident, $fmadd:ident, $add:ident) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(kc: usize, mut a: *const f32, mut b: *const f32, c: *mut f32, ldc: usize, first: bool) {
            const MR: usize = <$tile as Tile>::MR;
            const NR: usize = <$tile as Tile>::NR;
            const V: usize = NR / $w;
            for i in 0..MR {
                _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1) as *const i8);
            }
            let mut acc = [$zero(); V * MR];
            #[inline(always)]
            unsafe fn step(acc: &mut [$v; V * MR], a: *const f32, b: *const f32) {
                // A loop, not `array::from_fn`: a closure is not compiled with the target features.
                let mut bv = [$zero(); V];
                for (j, x) in bv.iter_mut().enumerate() {
                    *x = $load(b.add(j * $w));
                }
                for i in 0..MR {
                    let ai = $set1(*a.add(i));
                    for j in 0..V {
                        acc[V * i + j] = $fmadd(ai, bv[j], acc[V * i + j]);
                    }
                }
            }
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
                for j in 0..V {
                    let mut v = acc[V * i + j];
                    if !first {
                        v = $add(v, $loadu(row.add(j * $w)));
                    }
                    $storeu(row.add(j * $w), v);
                }
            }
        }
    };
}
pub(super) use microkernel;

// The 6×16 AVX2 microkernel: two 8-wide B loads, six A broadcasts, twelve FMAs per step.
microkernel!(
    kernel,
    "avx2,fma",
    Avx2Tile,
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_load_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps
);

/// Eight consecutive source elements as f32.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn load8<T: Widen>(p: *const T) -> __m256 {
    match T::KIND {
        Kind::F32 => _mm256_loadu_ps(p as *const f32),
        Kind::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
        Kind::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)))),
    }
}

/// One source element as f32.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn load1<T: Widen>(p: *const T) -> f32 {
    match T::KIND {
        Kind::F32 => *(p as *const f32),
        Kind::F16 => _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*(p as *const u16) as i32))),
        Kind::Bf16 => f32::from_bits((*(p as *const u16) as u32) << 16),
    }
}

/// Transposes the 8×8 block held in `r` (row i in r[i]).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Packs kc×nc of B into NR-wide panels: panel j holds B[p, j*NR + c] at `p*NR + c`, zero-padded.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack_b<T: Widen, M: Tile>(kc: usize, nc: usize, b: View<T>, out: *mut f32) {
    const { assert!(M::NR % 8 == 0) };
    let nr = M::NR;
    for j0 in (0..nc).step_by(nr) {
        let dst = out.add(j0 * kc);
        let panel = View { ptr: b.at(0, j0), ..b };
        if nc - j0 < nr {
            pack_scalar(kc, nc - j0, nr, View { ptr: panel.ptr, rs: panel.cs, cs: panel.rs }, dst);
        } else if b.cs == 1 {
            for p in 0..kc {
                for h in (0..nr).step_by(8) {
                    _mm256_store_ps(dst.add(p * nr + h), load8(panel.at(p, h)));
                }
            }
        } else if b.rs == 1 {
            // Columns are contiguous: transpose 8×8 blocks of 8 columns × 8 depths.
            let p8 = kc / 8 * 8;
            for p in (0..p8).step_by(8) {
                for h in (0..nr).step_by(8) {
                    let cols = transpose8(std::array::from_fn(|c| load8(panel.at(p, h + c))));
                    for (q, v) in cols.iter().enumerate() {
                        _mm256_store_ps(dst.add((p + q) * nr + h), *v);
                    }
                }
            }
            let tail = View { ptr: panel.at(p8, 0), rs: panel.cs, cs: panel.rs };
            pack_scalar(kc - p8, nr, nr, tail, dst.add(p8 * nr));
        } else {
            pack_scalar(kc, nr, nr, View { ptr: panel.ptr, rs: panel.cs, cs: panel.rs }, dst);
        }
    }
}

/// Packs mc×kc of A into MR-row panels: panel i holds A[i*MR + r, p] at `p*MR + r`, zero-padded.
/// The vector paths store groups of 8 rows per depth step, the last group with fewer rows than 8
/// (6 of 6, 4 of 12): depth by depth in increasing address order, so a store's extra lanes are
/// overwritten by the next depth's stores, and the last spills into the next panel (packed
/// afterwards) or the buffer's padding. `avail` rows of the view are readable (the column path
/// reads 8 at a time).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_a<T: Widen, M: Tile>(mc: usize, kc: usize, avail: usize, a: View<T>, out: *mut f32) {
    let mr = M::MR;
    // Row groups of 8 (at most two: the widest tile has 12 rows).
    const { assert!(M::MR <= 16) };
    let groups = mr.div_ceil(8);
    for i0 in (0..mc).step_by(mr) {
        let dst = out.add(i0 * kc);
        let panel = View { ptr: a.at(i0, 0), ..a };
        if mc - i0 < mr {
            pack_scalar(kc, mc - i0, mr, panel, dst);
        } else if a.cs == 1 {
            // Rows are contiguous: transpose blocks of 8 rows (zero rows past MR) × 8 depths.
            let p8 = kc / 8 * 8;
            let z = _mm256_setzero_ps();
            for p in (0..p8).step_by(8) {
                let mut t = [[z; 8]; 2];
                for (g, tg) in t.iter_mut().enumerate().take(groups) {
                    let rows = std::array::from_fn(|r| if 8 * g + r < mr { load8(panel.at(8 * g + r, p)) } else { z });
                    *tg = transpose8(rows);
                }
                for q in 0..8 {
                    for (g, tg) in t.iter().enumerate().take(groups) {
                        _mm256_storeu_ps(dst.add((p + q) * mr + 8 * g), tg[q]);
                    }
                }
            }
            pack_scalar(kc - p8, mr, mr, View { ptr: panel.at(0, p8), ..panel }, dst.add(p8 * mr));
        } else if a.rs == 1 && i0 + 8 * groups <= avail {
            // Columns are contiguous (a transposed A): 8 rows per load, the extra ones dropped.
            for p in 0..kc {
                for g in 0..groups {
                    _mm256_storeu_ps(dst.add(p * mr + 8 * g), load8(panel.at(8 * g, p)));
                }
            }
        } else {
            pack_scalar(kc, mr, mr, panel, dst);
        }
    }
}

/// Generic packing: `dst[p*width + r] = src(r, p)` for r < rows, zero for rows ≤ r < width.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_scalar<T: Widen>(kc: usize, rows: usize, width: usize, src: View<T>, dst: *mut f32) {
    for p in 0..kc {
        let d = dst.add(p * width);
        for r in 0..rows {
            *d.add(r) = load1(src.at(r, p));
        }
        for r in rows..width {
            *d.add(r) = 0.0;
        }
    }
}

/// Rounds f32 results to `T` (nearest even, NaN kept quiet, as `half` does) 8 lanes at a time: the
/// last step of a 16-bit product, kept off `half`'s per-element conversion calls.
///
/// # Safety
/// `available()` must hold.
pub(crate) unsafe fn narrow<T: Widen>(src: &[f32], dst: &mut [T]) {
    narrow_avx2(src, dst)
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn narrow_avx2<T: Widen>(src: &[f32], dst: &mut [T]) {
    let n = src.len().min(dst.len());
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let n8 = n / 8 * 8;
    for i in (0..n8).step_by(8) {
        let x = _mm256_loadu_ps(s.add(i));
        match T::KIND {
            Kind::F32 => _mm256_storeu_ps(d.add(i) as *mut f32, x),
            Kind::F16 => _mm_storeu_si128(d.add(i) as *mut __m128i, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x)),
            Kind::Bf16 => _mm_storeu_si128(d.add(i) as *mut __m128i, bf16x8(x)),
        }
    }
    for i in n8..n {
        let x = _mm256_set1_ps(*s.add(i));
        let bits = match T::KIND {
            Kind::F32 => {
                *(d.add(i) as *mut f32) = *s.add(i);
                continue;
            }
            Kind::F16 => _mm_extract_epi16::<0>(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x)),
            Kind::Bf16 => _mm_extract_epi16::<0>(bf16x8(x)),
        };
        *(d.add(i) as *mut u16) = bits as u16;
    }
}

/// Eight f32 rounded to bf16 bits: nearest even by adding 0x7FFF plus the kept lowest bit; NaN
/// truncated with the quiet bit set.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bf16x8(x: __m256) -> __m128i {
    let bits = _mm256_castps_si256(x);
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))));
    let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
    let v = _mm256_blendv_epi8(rounded, quiet, nan);
    // Values fit in 16 bits, so the unsigned saturating pack is exact; it packs within 128-bit lanes.
    _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}
