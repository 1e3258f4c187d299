//! Direct ("implicit GEMM") f32 convolution on the AVX2 6×16 tile: no patch matrix.
//!
//! With one group and unit dilations, the `kw` taps of one kernel row read one contiguous run
//! of `kw * c_in` values of the (padded) input, so a patch is `kd * kh` runs that can be read
//! where they lie. The microkernel broadcasts A's values from six row pointers per run (as
//! `sgemm_small` does for a strided A) and keeps its 6×16 accumulators in registers across the
//! runs of a patch. The weight is packed into 16-column panels once per call and shared by every
//! task; the im2col path (conv.rs) gathers each tile's patches into a buffer, packs that buffer
//! again for its product and packs the weight again for every tile (28 tiles of a 56×56 image).
//! Padding is one zero-bordered copy of the input, made only when the conv pads.

use super::conv::{Geo, Ptr};
use super::sgemm::{pack_b, Avx2Tile, Tile, View};
use core::arch::x86_64::*;
use rayon::prelude::*;

const MR: usize = Avx2Tile::MR;
const NR: usize = Avx2Tile::NR;

/// Whether `conv` takes this geometry: one group, no dilation, the AVX2 tile is this host's
/// widest (measured on Zen 2 only), and a patch is more than a few values per run.
/// `OXMX_CONV_DIRECT=0` keeps every conv on im2col, for A/B measurements.
pub(super) fn takes(g: &Geo) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("OXMX_CONV_DIRECT").map_or(true, |v| v != "0"));
    on && g.groups == 1
        && g.kdil == [1; 3]
        && g.idil == [1; 3]
        && g.c_in >= 8
        && !g.is_pointwise()
        && super::sgemm::available()
        && !super::sgemm::wide()
}

/// The input as the convolution reads it: `x` itself, or a zero-bordered copy when the conv
/// pads (or crops); `dims` are its spatial sizes.
struct Source {
    data: Option<Vec<f32>>,
    dims: [usize; 3],
}

/// The padded input of `g`: every index a patch reads, `(o * stride + tap)` on each axis, is in
/// bounds; values outside the real input are zero.
fn source(x: &[f32], g: &Geo) -> Source {
    let need: [usize; 3] = std::array::from_fn(|d| if g.outs[d] == 0 { 0 } else { (g.outs[d] - 1) * g.stride[d] + g.ks[d] });
    if g.lo == [0; 3] && (0..3).all(|d| need[d] <= g.ins[d]) {
        return Source { data: None, dims: g.ins };
    }
    let c = g.c_in;
    let [pd, ph, pw] = need;
    let mut buf = vec![0f32; g.n * pd * ph * pw * c];
    // Output line (b, z, y) of the padded copy: its run of real values, if any.
    buf.par_chunks_mut(pw * c).enumerate().for_each(|(line, dst)| {
        let (b, z, y) = (line / (pd * ph), (line / ph) % pd, line % ph);
        let (iz, iy) = (z as isize - g.lo[0], y as isize - g.lo[1]);
        if iz < 0 || iy < 0 || iz as usize >= g.ins[0] || iy as usize >= g.ins[1] {
            return;
        }
        let x0 = -g.lo[2];
        let c0 = (-x0).clamp(0, pw as isize) as usize;
        let c1 = (g.ins[2] as isize - x0).clamp(c0 as isize, pw as isize) as usize;
        if c1 > c0 {
            let src = (((b * g.ins[0] + iz as usize) * g.ins[1] + iy as usize) * g.ins[2] + (x0 + c0 as isize) as usize) * c;
            dst[c0 * c..c1 * c].copy_from_slice(&x[src..src + (c1 - c0) * c]);
        }
    });
    Source { data: Some(buf), dims: need }
}

/// 32-byte aligned f32 storage (`pack_b` stores whole vectors).
struct Aligned(Vec<__m256>);

impl Aligned {
    fn zeroed(floats: usize) -> Aligned {
        // SAFETY: all-zero bits are a valid __m256.
        Aligned(vec![unsafe { _mm256_setzero_ps() }; floats.div_ceil(8)])
    }
    fn ptr(&mut self) -> *mut f32 {
        self.0.as_mut_ptr() as *mut f32
    }
}

/// `out[r, co] = sum_p patch(r)[p] * w[co, p]` for every output row r (batch entry and output
/// position) of `g`; `w` is the contiguous `(C_out, kvol, c_in)` weight.
///
/// # Safety
/// `takes(g)` holds; `x` is the row-contiguous input and `out` the `[rows, c_out]` output of `g`.
pub(super) unsafe fn conv(x: &[f32], w: &[f32], g: &Geo, out: &mut [f32]) {
    let (c_in, c_out) = (g.c_in, g.c_out);
    let m = g.n * g.out_positions();
    let run = g.ks[2] * c_in;
    let kc = g.kvol() * c_in;
    if m == 0 || c_out == 0 {
        return;
    }
    let src = source(x, g);
    let xs = src.data.as_deref().unwrap_or(x);
    let [sd, sh, sw] = src.dims;
    let (line, plane) = (sw * c_in, sh * sw * c_in);
    let batch = sd * plane;
    let np = c_out.next_multiple_of(NR);
    let mut packed = Aligned::zeroed(np * kc);
    let pb = packed.ptr();
    pack_b::<f32, Avx2Tile>(kc, c_out, View { ptr: w.as_ptr(), rs: 1, cs: kc as isize }, pb);
    let (xp, bp) = (Ptr(xs.as_ptr()), Ptr(pb as *const f32));
    let [_, oh, ow] = g.outs;
    let [s0, s1, s2] = g.stride;
    // Where output row r's patch starts in the source.
    let origin = move |r: usize| -> usize {
        let q = r % g.out_positions();
        let (z, y, xw) = (q / (oh * ow), (q / ow) % oh, q % ow);
        (r / g.out_positions()) * batch + z * s0 * plane + y * s1 * line + xw * s2 * c_in
    };
    // Runs of one patch: offset in the source and in the packed depth.
    let runs: Vec<(usize, usize)> =
        (0..g.ks[0]).flat_map(|a| (0..g.ks[1]).map(move |b| (a * plane + b * line, (a * g.ks[1] + b) * run))).collect();
    // Tasks of whole 6-row groups, enough of them to balance the threads; each task's A rows
    // (rows × kc floats) stay in L2 while the weight's panels pass over them.
    let threads = rayon::current_num_threads().max(1);
    let rows = (m.div_ceil(8 * threads)).next_multiple_of(MR).clamp(MR, 16 * MR);
    out.par_chunks_mut(rows * c_out).enumerate().for_each(|(t, dst)| {
        let (xp, bp) = (xp, bp);
        let r0 = t * rows;
        let mr_all = dst.len() / c_out;
        for jr in (0..c_out).step_by(NR) {
            let nr = NR.min(c_out - jr);
            let panel = bp.0.add(jr * kc);
            for ir in (0..mr_all).step_by(MR) {
                let mr = MR.min(mr_all - ir);
                // Rows past the end repeat the last one (in bounds); their results are dropped.
                let rows: [*const f32; MR] = std::array::from_fn(|i| xp.0.add(origin(r0 + ir + i.min(mr - 1))));
                let c = dst.as_mut_ptr().add(ir * c_out + jr);
                if mr == MR && nr == NR {
                    tile(&runs, run, rows, panel, c, c_out);
                } else {
                    let mut tmp = [0f32; MR * NR];
                    tile(&runs, run, rows, panel, tmp.as_mut_ptr(), NR);
                    for i in 0..mr {
                        std::ptr::copy_nonoverlapping(tmp.as_ptr().add(i * NR), c.add(i * c_out), nr);
                    }
                }
            }
        }
    });
}

/// One 6×16 tile of the output over a whole patch: for each run (source offset, packed depth
/// offset), `len` depth steps with A's row i at `rows[i] + offset + p` and B's 16 values at
/// `b + (depth + p) * 16`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(runs: &[(usize, usize)], len: usize, rows: [*const f32; MR], b: *const f32, c: *mut f32, ldc: usize) {
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    for &(off, depth) in runs {
        let a: [*const f32; MR] = std::array::from_fn(|i| rows[i].add(off));
        let mut bq = b.add(depth * NR);
        for p in 0..len {
            let b0 = _mm256_load_ps(bq);
            let b1 = _mm256_load_ps(bq.add(8));
            for (i, row) in a.iter().enumerate() {
                let ar = _mm256_broadcast_ss(&*row.add(p));
                acc[2 * i] = _mm256_fmadd_ps(ar, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(ar, b1, acc[2 * i + 1]);
            }
            bq = bq.add(NR);
        }
    }
    for i in 0..MR {
        _mm256_storeu_ps(c.add(i * ldc), acc[2 * i]);
        _mm256_storeu_ps(c.add(i * ldc + 8), acc[2 * i + 1]);
    }
}
