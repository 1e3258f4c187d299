//! Row kernels for reductions that need several passes over the same data (softmax, logsumexp,
//! var). Built from ops, each pass is a graph node that streams the whole array through memory;
//! here one task handles a row while it is in cache, so the array is read once (and written once
//! for softmax). The op layer moves the reduced axis last; rows are the last axis.
//!
//! 16-bit floats are widened to f32 per row, f32 rows run in place, f64 natively. Accumulators
//! are spread over `LANES` independent partial sums so that the loops vectorise and the summation
//! error grows more slowly than a single running sum.

use super::elementwise::CHUNK;
use super::{fastmath, simd};
use crate::dtype::{Dtype, Element};
use crate::error::Result;
use crate::graph::Data;
use half::{bf16, f16};
use num_traits::Float;
use rayon::prelude::*;
use std::borrow::Cow;

const LANES: usize = 16;

/// The float types rows are computed in.
trait RowFloat: Float + Send + Sync + Default + 'static {
    fn exp_(self) -> Self;
    fn ln_(self) -> Self;
}
impl RowFloat for f32 {
    #[inline(always)]
    fn exp_(self) -> f32 {
        fastmath::exp(self)
    }
    #[inline(always)]
    fn ln_(self) -> f32 {
        fastmath::ln(self)
    }
}
impl RowFloat for f64 {
    #[inline(always)]
    fn exp_(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn ln_(self) -> f64 {
        self.ln()
    }
}

/// Max ignoring NaN (a NaN row still ends NaN: x - max keeps the NaN).
#[inline(always)]
fn row_max<F: RowFloat>(x: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    // The lanes folded as a tree (four vector steps), not one after another: on attention's
    // 64-wide rows a 16-long dependent chain cost more than the row's loads.
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] = if acc[l + w] > acc[l] { acc[l + w] } else { acc[l] };
        }
        w /= 2;
    }
    let mut m = acc[0];
    for &v in chunks.remainder() {
        m = if v > m { v } else { m };
    }
    m
}

/// The lanes' sum as a tree (see `row_max`), plus `rest`. Not inlined on purpose (as
/// `reduce::lane_tree`): inlined, LLVM's SLP vectoriser matched the tree and packed the lanes of
/// the loops that fill `acc` into 2-wide vectors (var over 4096² f32 ran its deviation pass in
/// `xmm` registers).
#[inline(never)]
fn lane_sum<F: RowFloat>(mut acc: [F; LANES], rest: F) -> F {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] = acc[l] + acc[l + w];
        }
        w /= 2;
    }
    rest + acc[0]
}

/// sum(exp(x - m)), also writing the exponentials to `out` when given. The exponentials are
/// computed by a plain map loop (which vectorises: fastmath's exp across 16 lanes, where exp
/// inside the lane-accumulator loop ran one element at a time) into `out`, or into a stack block
/// without it, and summed from there.
#[inline(always)]
fn sum_exp<F: RowFloat>(x: &[F], m: F, out: Option<&mut [F]>) -> F {
    const BLOCK: usize = 256;
    let mut acc = [F::zero(); LANES];
    let mut rest = F::zero();
    match out {
        Some(o) => {
            let o = &mut o[..x.len()];
            for (d, &v) in o.iter_mut().zip(x) {
                *d = (v - m).exp_();
            }
            add_lanes(&mut acc, &mut rest, o);
        }
        None => {
            let mut buf = [F::zero(); BLOCK];
            for xs in x.chunks(BLOCK) {
                let e = &mut buf[..xs.len()];
                for (d, &v) in e.iter_mut().zip(xs) {
                    *d = (v - m).exp_();
                }
                add_lanes(&mut acc, &mut rest, e);
            }
        }
    }
    lane_sum(acc, rest)
}

/// Adds `e` into the lane sums (a function, not a closure: a closure may be compiled out of
/// line without the caller's SIMD features).
#[inline(always)]
fn add_lanes<F: RowFloat>(acc: &mut [F; LANES], rest: &mut F, e: &[F]) {
    let mut chunks = e.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = acc[l] + c[l];
        }
    }
    for &v in chunks.remainder() {
        *rest = *rest + v;
    }
}

#[inline(always)]
fn softmax_row<F: RowFloat>(x: &[F], out: &mut [F]) {
    let m = row_max(x);
    let s = sum_exp(x, m, Some(out));
    // One division and a multiply per element (as MLX's normaliser), not a division each.
    let inv = F::one() / s;
    for o in out.iter_mut() {
        *o = *o * inv;
    }
}

#[inline(always)]
fn logsumexp_row<F: RowFloat>(x: &[F]) -> F {
    let m = row_max(x);
    if m.is_infinite() {
        // All -inf gives -inf; any +inf gives +inf (x - m would be NaN).
        return if x.iter().any(|v| v.is_nan()) { F::nan() } else { m };
    }
    sum_exp(x, m, None).ln_() + m
}

/// Two passes in cache: the mean, then the sum of squared deviations (exact for constant rows,
/// unlike the one-pass E[x^2] - E[x]^2). Both passes walk whole `LANES` chunks (indexed loops
/// kept a bounds check per element and ran one element at a time: var over 4096² f32 at ~11 GB/s).
///
/// `next` is where the following row starts (any address: prefetches never fault). The second
/// pass reads only L1, so the hardware prefetcher, which follows misses, idles through it; each
/// of its chunks asks for a line of the next row instead (var over 4096² f32 on Zen 2: 2.6 ms,
/// a fifth over the 2.1 ms of a plain mean's single read).
#[inline(always)]
fn var_row<F: RowFloat>(x: &[F], ddof: usize, next: *const F) -> F {
    let n = x.len();
    let denom = n as f64 - ddof as f64;
    let (mut acc, mut rest) = ([F::zero(); LANES], F::zero());
    add_lanes(&mut acc, &mut rest, x);
    let mean = lane_sum(acc, rest) / F::from(n).unwrap_or(F::nan());
    let (mut acc, mut rest) = ([F::zero(); LANES], F::zero());
    let mut chunks = x.chunks_exact(LANES);
    for (k, c) in (&mut chunks).enumerate() {
        simd::prefetch_l1(next.wrapping_add(k * LANES));
        for l in 0..LANES {
            let d = c[l] - mean;
            acc[l] = acc[l] + d * d;
        }
    }
    for &v in chunks.remainder() {
        let d = v - mean;
        rest = rest + d * d;
    }
    let ss = lane_sum(acc, rest);
    // MLX: n - ddof <= 0 divides by zero (inf for a non-zero sum, NaN for 0/0).
    ss / F::from(denom.max(0.0)).unwrap_or(F::nan())
}

/// Which row function `rows` runs.
#[derive(Clone, Copy)]
enum RowKind {
    Softmax,
    LogSumExp,
    Var(usize),
}

/// `next`: where the following row starts (a prefetch hint).
#[inline(always)]
fn row<F: RowFloat>(kind: RowKind, r: &[F], o: &mut [F], next: *const F) {
    match kind {
        RowKind::Softmax => softmax_row(r, o),
        RowKind::LogSumExp => o[0] = logsumexp_row(r),
        RowKind::Var(ddof) => o[0] = var_row(r, ddof, next),
    }
}

fn short_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("OXMX_SOFTMAX_SHORT").map_or(true, |v| v != "0"))
}

/// Rows up to this long take `softmax_short_rows` (a group of 16 such rows, in and out, fits
/// in L1).
const SHORT_ROW: usize = 256;

/// Softmax over consecutive short rows, a group of 16 rows at a time, one step of the row
/// computation at a time across the group: every maximum, then every row's exponentials, then
/// the sums, then the scaling. Row by row, each step waited on the previous one's dependency
/// chain (the maximum's lane tree, the exponential's polynomial, the sum's tree and the
/// reciprocal), which on attention's 64-wide rows is most of a row's time: [32, 4, 64, 64] ran
/// at 12 GB/s. Across a group the steps of different rows are independent and overlap. Each
/// row's arithmetic is `softmax_row`'s, in the same order, so the bits are the same
/// (`OXMX_SOFTMAX_SHORT=0` keeps the row-by-row loop, for A/B measurements).
#[inline(always)]
fn softmax_short_rows<F: RowFloat>(r: &[F], o: &mut [F], cols: usize) {
    const G: usize = 16;
    let rows = o.len() / cols;
    for g0 in (0..rows).step_by(G) {
        let n = G.min(rows - g0);
        let (src, dst) = (&r[g0 * cols..(g0 + n) * cols], &mut o[g0 * cols..(g0 + n) * cols]);
        let mut scale = [F::zero(); G];
        for (m, x) in scale.iter_mut().zip(src.chunks_exact(cols)) {
            *m = row_max(x);
        }
        for ((d, x), &m) in dst.chunks_exact_mut(cols).zip(src.chunks_exact(cols)).zip(&scale) {
            for (d, &v) in d.iter_mut().zip(x) {
                *d = (v - m).exp_();
            }
        }
        for (inv, e) in scale.iter_mut().zip(dst.chunks_exact(cols)) {
            let (mut acc, mut rest) = ([F::zero(); LANES], F::zero());
            add_lanes(&mut acc, &mut rest, e);
            *inv = F::one() / lane_sum(acc, rest);
        }
        for (d, &inv) in dst.chunks_exact_mut(cols).zip(&scale) {
            for v in d.iter_mut() {
                *v = *v * inv;
            }
        }
    }
}

/// `kind` over consecutive rows (`cols` long in `r`, `out_cols` long in `o`; empty rows when
/// `cols` is 0). Plain loops, no closure: a closure would be compiled out of line as baseline
/// code inside `rows_f32`'s SIMD entry points.
#[inline(always)]
fn each<F: RowFloat>(kind: RowKind, r: &[F], o: &mut [F], cols: usize, out_cols: usize) {
    if matches!(kind, RowKind::Softmax) && cols > 0 && cols <= SHORT_ROW && short_on() {
        return softmax_short_rows(r, o, cols);
    }
    let oc = out_cols.max(1);
    for i in 0..o.len() / oc {
        let src = if cols == 0 { &[][..] } else { &r[i * cols..(i + 1) * cols] };
        row(kind, src, &mut o[i * oc..(i + 1) * oc], r.as_ptr().wrapping_add((i + 1) * cols));
    }
}

/// Consecutive f32 rows (`cols` long in `r`, `out_cols` long in `o`) compiled for AVX-512 or
/// AVX2 where the CPU has them. Named entry points with the row function inlined, not a closure
/// handed to `simd::vectorized`: such a closure was left out of line as baseline code, where
/// fastmath's `mul_add` is a libm call (softmax and logsumexp ran at 0.3 GB/s). The loop over
/// rows is inside, so short rows (attention's 64-wide softmax) pay no call per row.
fn rows_f32(kind: RowKind, r: &[f32], o: &mut [f32], cols: usize, out_cols: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
        unsafe fn wide(kind: RowKind, r: &[f32], o: &mut [f32], cols: usize, out_cols: usize) {
            each(kind, r, o, cols, out_cols)
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn mid(kind: RowKind, r: &[f32], o: &mut [f32], cols: usize, out_cols: usize) {
            each(kind, r, o, cols, out_cols)
        }
        match simd::level() {
            // SAFETY: `level` checked that the CPU has these features.
            simd::Level::Avx512 => return unsafe { wide(kind, r, o, cols, out_cols) },
            simd::Level::Avx2 => return unsafe { mid(kind, r, o, cols, out_cols) },
            simd::Level::Baseline => {}
        }
    }
    each(kind, r, o, cols, out_cols)
}

/// Runs `kind` over every last-axis row of `x` in parallel; rows of 16-bit floats are widened
/// to f32 first. `out_cols` is the output row length (the row length, or 1).
fn rows(x: &Data, out_cols: usize, kind: RowKind) -> Result<Data> {
    let x: Cow<Data> = if x.is_row_contiguous() { Cow::Borrowed(x) } else { Cow::Owned(x.to_row_contiguous()?) };
    let cols = x.shape.last().copied().unwrap_or(1);
    let mut shape = x.shape.clone();
    if let Some(l) = shape.last_mut() {
        *l = out_cols;
    }
    match x.dtype {
        Dtype::Float32 => run_rows::<f32, f32>(&x, cols, out_cols, shape, |r, o| rows_f32(kind, r, o, cols, out_cols)),
        Dtype::Float64 => run_rows::<f64, f64>(&x, cols, out_cols, shape, |r, o| each::<f64>(kind, r, o, cols, out_cols)),
        Dtype::Float16 => widened::<f16>(&x, cols, out_cols, shape, kind),
        Dtype::Bfloat16 => widened::<bf16>(&x, cols, out_cols, shape, kind),
        dt => Err(crate::error::Error::invalid(format!("[rowwise] unsupported dtype {dt}"))),
    }
}

fn widened<T: Element>(x: &Data, cols: usize, out_cols: usize, shape: Vec<usize>, kind: RowKind) -> Result<Data> {
    run_rows::<T, T>(x, cols, out_cols, shape, |r, o| {
        let wide: Vec<f32> = r.iter().map(|v| v.to_f64() as f32).collect();
        let mut res = vec![0f32; o.len()];
        rows_f32(kind, &wide, &mut res, cols, out_cols);
        for (d, v) in o.iter_mut().zip(res) {
            *d = T::from_f64(v as f64);
        }
    })
}

/// Calls `f(rows, outs)` on runs of whole rows (`cols` long in the input, `out_cols` in the
/// output), split across the pool when there are many.
fn run_rows<T: Element, U: Element>(
    x: &Data,
    cols: usize,
    out_cols: usize,
    shape: Vec<usize>,
    f: impl Fn(&[T], &mut [U]) + Sync,
) -> Result<Data> {
    let n = x.size();
    let src = &x.raw::<T>()[x.offset as usize..x.offset as usize + n];
    Data::build::<U>(shape, |out| {
        if cols == 0 {
            // Empty rows: each output element still gets the reduction of nothing.
            f(&[], out);
            return;
        }
        let nrows = n / cols;
        let per_task = (CHUNK / cols).max(1);
        if nrows <= per_task || out_cols == 0 {
            f(src, out);
        } else {
            out.par_chunks_mut(per_task * out_cols).zip(src.par_chunks(per_task * cols)).for_each(|(o, s)| f(s, o));
        }
    })
}

pub fn softmax(x: &Data) -> Result<Data> {
    let cols = x.shape.last().copied().unwrap_or(1);
    rows(x, cols, RowKind::Softmax)
}

pub fn logsumexp(x: &Data) -> Result<Data> {
    rows(x, 1, RowKind::LogSumExp)
}

pub fn var(x: &Data, ddof: usize) -> Result<Data> {
    rows(x, 1, RowKind::Var(ddof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grouped short-row softmax gives `softmax_row`'s bits: partial groups, one-column
    /// rows, rows that are not whole lane chunks, and -inf, NaN and huge entries.
    #[test]
    fn short_rows_match_row_by_row_bits() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 20) as f32 - 8.0
        };
        for cols in [1, 3, 16, 17, 64, 255, 256] {
            for rows in [1, 15, 16, 17, 40] {
                let mut x: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
                x[0] = f32::NEG_INFINITY;
                if x.len() > 5 {
                    x[5] = f32::NAN;
                    let last = x.len() - 1;
                    x[last] = 1e30;
                }
                let mut got = vec![0f32; x.len()];
                softmax_short_rows(&x, &mut got, cols);
                let mut want = vec![0f32; x.len()];
                for (o, r) in want.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                    softmax_row(r, o);
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "rows {rows}, cols {cols}, element {i}: {g} against {w}");
                }
            }
        }
    }
}
