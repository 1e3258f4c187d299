//! Reductions, arg-reductions and scans on the CPU.
//!
//! The input is brought to row-major order and its axes grouped into runs of kept (K) and
//! reduced (R) axes. `[.., K, R]` reduces contiguous rows; `[R, K]` and `[K, R, K]` accumulate whole
//! rows into the output (vectorised along K); other layouts are transposed into `[K, R]` first.

use super::elementwise::{CHUNK, PAR_THRESHOLD};
use super::kfloat::KFloat;
use crate::dtype::{cast, Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::reduce::{ReduceKind, ScanKind};
use crate::primitives::ReduceOp;
use crate::shape::size_of;
use half::{bf16, f16};
use num_complex::Complex32;
use rayon::prelude::*;

/// How to combine values of accumulator type `A`.
pub trait Combine<A>: Sync {
    fn identity(&self) -> A;
    fn combine(&self, a: A, b: A) -> A;
}

struct Fold<A, F: Fn(A, A) -> A + Sync>(A, F);
impl<A: Copy + Sync, F: Fn(A, A) -> A + Sync> Combine<A> for Fold<A, F> {
    #[inline(always)]
    fn identity(&self) -> A {
        self.0
    }
    #[inline(always)]
    fn combine(&self, a: A, b: A) -> A {
        (self.1)(a, b)
    }
}

/// Reduces each contiguous row of `len` elements: `out[r] = fold(x[r*len..][..len])`.
fn reduce_rows<T: Copy + Sync, A: Copy + Send + Sync>(
    x: &[T],
    len: usize,
    out: &mut [A],
    conv: impl Fn(T) -> A + Sync,
    c: &impl Combine<A>,
) {
    let rows = out.len();
    if rows == 0 {
        return;
    }
    if rows == 1 && len >= PAR_THRESHOLD {
        // One long row: split it, then combine the partial results.
        let parts: Vec<A> = x[..len]
            .par_chunks(CHUNK * 4)
            .map(|p| {
                let mut part = [c.identity()];
                rows_at(p, p.len(), 0, &mut part, &conv, c);
                part[0]
            })
            .collect();
        out[0] = parts.into_iter().fold(c.identity(), |a, b| c.combine(a, b));
    } else if rows * len >= PAR_THRESHOLD {
        let per = (PAR_THRESHOLD / len.max(1)).max(1);
        out.par_chunks_mut(per).enumerate().for_each(|(ci, o)| rows_at(x, len, ci * per, o, &conv, c));
    } else {
        rows_at(x, len, 0, out, &conv, c);
    }
}

/// `out[k] = row_fold(row r0 + k of x)`, compiled for AVX-512 or AVX2 where the CPU has them.
/// Not through `simd::vectorized`: a closure holding this loop was too big for LLVM to inline
/// into its wide function, so the loop ran in SSE2 there.
fn rows_at<T: Copy, A: Copy>(x: &[T], len: usize, r0: usize, out: &mut [A], conv: &impl Fn(T) -> A, c: &impl Combine<A>) {
    #[inline(always)]
    fn body<T: Copy, A: Copy>(x: &[T], len: usize, r0: usize, out: &mut [A], conv: &impl Fn(T) -> A, c: &impl Combine<A>) {
        for (k, slot) in out.iter_mut().enumerate() {
            let r = r0 + k;
            *slot = row_fold(&x[r * len..(r + 1) * len], conv, c);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
        unsafe fn w512<T: Copy, A: Copy>(x: &[T], len: usize, r0: usize, out: &mut [A], conv: &impl Fn(T) -> A, c: &impl Combine<A>) {
            body(x, len, r0, out, conv, c)
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn w256<T: Copy, A: Copy>(x: &[T], len: usize, r0: usize, out: &mut [A], conv: &impl Fn(T) -> A, c: &impl Combine<A>) {
            body(x, len, r0, out, conv, c)
        }
        use super::simd::{level, Level};
        match level() {
            // SAFETY: `level` checked that the CPU has these features.
            Level::Avx512 => return unsafe { w512(x, len, r0, out, conv, c) },
            Level::Avx2 => return unsafe { w256(x, len, r0, out, conv, c) },
            Level::Baseline => {}
        }
    }
    body(x, len, r0, out, conv, c)
}

/// One contiguous row folded in 16 independent lanes (they let the compiler vectorise and keep
/// sums accurate, pairwise-like), then `lane_tree`.
#[inline(always)]
fn row_fold<T: Copy, A: Copy>(r: &[T], conv: &impl Fn(T) -> A, c: &impl Combine<A>) -> A {
    const LANES: usize = 16;
    let mut lanes = [c.identity(); LANES];
    let chunks = r.chunks_exact(LANES);
    let rem = chunks.remainder();
    for ch in chunks {
        for i in 0..LANES {
            lanes[i] = c.combine(lanes[i], conv(ch[i]));
        }
    }
    let mut acc = c.identity();
    for &v in rem {
        acc = c.combine(acc, conv(v));
    }
    lane_tree(lanes, acc, c)
}

/// The 16 lanes of a row folded in halves (a pairwise-like tree), then `rest`. Not inlined on
/// purpose: inlined, LLVM's SLP vectoriser matched this tree and packed the lanes of the row
/// loop above into eight 2-wide vectors (an f32 row sum of 4096 ran at ~13 GB/s on one core;
/// with the tree out of its sight, one 16-wide vector at ~28 GB/s in a stand-alone copy).
#[inline(never)]
fn lane_tree<A: Copy>(mut lanes: [A; 16], rest: A, c: &impl Combine<A>) -> A {
    let mut w = lanes.len();
    while w > 1 {
        w /= 2;
        for i in 0..w {
            lanes[i] = c.combine(lanes[i], lanes[i + w]);
        }
    }
    c.combine(lanes[0], rest)
}

/// `acc[j] = combine(acc[j], conv(src[j]))`, compiled wide (see `simd::vectorized`).
#[inline(always)]
fn accumulate<T: Copy, A: Copy>(acc: &mut [A], src: &[T], conv: &impl Fn(T) -> A, c: &impl Combine<A>) {
    for (a, &v) in acc.iter_mut().zip(src) {
        *a = c.combine(*a, conv(v));
    }
}

/// `[outer, red, inner]` with the middle axis reduced: accumulate whole rows of `inner` into an
/// L1-sized accumulator. When there are fewer (outer, column block) tasks than threads — e.g. a
/// column sum of one matrix — the reduced rows are split between threads too and the partial
/// accumulators combined.
fn reduce_middle<T: Copy + Sync, A: Copy + Send + Sync>(
    x: &[T],
    outer: usize,
    red: usize,
    inner: usize,
    out: &mut [A],
    conv: impl Fn(T) -> A + Sync,
    c: &(impl Combine<A> + Sync),
) {
    const COLS: usize = 4096;
    let work = |o: usize, j0: usize, r0: usize, r1: usize, acc: &mut [A]| {
        acc.iter_mut().for_each(|a| *a = c.identity());
        for r in r0..r1 {
            let base = (o * red + r) * inner + j0;
            let src = &x[base..base + acc.len()];
            super::simd::vectorized(|| accumulate(acc, src, &conv, c));
        }
    };
    if outer * red * inner < PAR_THRESHOLD {
        for (o, orow) in out.chunks_mut(inner.max(1)).enumerate() {
            work(o, 0, 0, red, orow);
        }
        return;
    }
    let n_col = inner.div_ceil(COLS);
    let want = 2 * rayon::current_num_threads();
    let parts = if outer * n_col >= want { 1 } else { (want / (outer * n_col)).clamp(1, (red / 16).max(1)) };
    if parts == 1 {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, orow)| {
            orow.par_chunks_mut(COLS).enumerate().for_each(|(ci, acc)| work(o, ci * COLS, 0, red, acc));
        });
        return;
    }
    let per = red.div_ceil(parts);
    let partials: Vec<Vec<A>> = (0..outer * n_col * parts)
        .into_par_iter()
        .map(|t| {
            let (oc, p) = (t / parts, t % parts);
            let (o, ci) = (oc / n_col, oc % n_col);
            let len = COLS.min(inner - ci * COLS);
            let mut acc = vec![c.identity(); len];
            work(o, ci * COLS, (p * per).min(red), ((p + 1) * per).min(red), &mut acc);
            acc
        })
        .collect();
    for (oc, group) in partials.chunks(parts).enumerate() {
        let (o, ci) = (oc / n_col, oc % n_col);
        let dst = &mut out[o * inner + ci * COLS..o * inner + ci * COLS + group[0].len()];
        dst.copy_from_slice(&group[0]);
        for g in &group[1..] {
            for (d, &v) in dst.iter_mut().zip(g) {
                *d = c.combine(*d, v);
            }
        }
    }
}

/// Groups axes into alternating kept/reduced runs of the row-major input (size-1 axes dropped).
fn runs(shape: &[usize], axes: &[usize]) -> Vec<(bool, usize)> {
    let mut out: Vec<(bool, usize)> = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let red = axes.contains(&i);
        match out.last_mut() {
            Some((r, n)) if *r == red => *n *= d,
            _ => out.push((red, d)),
        }
    }
    out
}

fn reduce_with<T: Element, A: Copy + Send + Sync>(
    x: &Data,
    axes: &[usize],
    conv: impl Fn(T) -> A + Sync + Copy,
    c: &impl Combine<A>,
) -> Result<Vec<A>> {
    let out_size: usize = x.shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).product();
    let mut out = vec![c.identity(); out_size];
    if x.size() == 0 {
        return Ok(out);
    }
    let r = runs(&x.shape, axes);
    let contiguous = x.to_row_contiguous()?;
    let src = &contiguous.raw::<T>()[contiguous.offset as usize..contiguous.offset as usize + x.size()];
    match r.as_slice() {
        [] => out[0] = c.combine(c.identity(), conv(src[0])),
        [(false, _)] => out.iter_mut().zip(src).for_each(|(o, &v)| *o = c.combine(c.identity(), conv(v))),
        [(true, n)] => reduce_rows(src, *n, &mut out, conv, c),
        [(false, _), (true, n)] => reduce_rows(src, *n, &mut out, conv, c),
        [(true, n), (false, m)] => reduce_middle(src, 1, *n, *m, &mut out, conv, c),
        [(false, k), (true, n), (false, m)] => reduce_middle(src, *k, *n, *m, &mut out, conv, c),
        _ => {
            // Interleaved axes: move reduced axes last with a copy, then reduce rows.
            let kept: Vec<usize> = (0..x.ndim()).filter(|a| !axes.contains(a)).collect();
            let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
            let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
            let strides: Vec<isize> = perm.iter().map(|&p| x.strides[p]).collect();
            let moved = x.view(shape, strides, x.offset).to_row_contiguous()?;
            let n: usize = axes.iter().map(|&a| x.shape[a]).product();
            let msrc = &moved.raw::<T>()[moved.offset as usize..moved.offset as usize + x.size()];
            reduce_rows(msrc, n, &mut out, conv, c);
        }
    }
    Ok(out)
}

fn finish<U: Element>(shape: Vec<usize>, values: Vec<U>) -> Result<Data> {
    Data::from_slice(&values, shape)
}

fn reduce_float<T: Element, U: Element>(kind: ReduceKind, x: &Data, axes: &[usize], shape: Vec<usize>) -> Result<Data>
where
    T: Into<FloatIn>,
{
    // Accumulate in f64 for f64, f32 otherwise.
    let wide = T::DTYPE == Dtype::Float64;
    macro_rules! go {
        ($A:ty, $conv:expr) => {{
            let conv = $conv;
            let v: Vec<$A> = match kind {
                ReduceKind::Sum => reduce_with::<T, $A>(x, axes, conv, &Fold(0.0, |a, b| a + b))?,
                ReduceKind::Prod => reduce_with::<T, $A>(x, axes, conv, &Fold(1.0, |a, b| a * b))?,
                ReduceKind::Max => reduce_with::<T, $A>(
                    x,
                    axes,
                    conv,
                    &Fold(<$A>::NEG_INFINITY, |a: $A, b: $A| if a.is_nan() || b.is_nan() { <$A>::NAN } else { a.max(b) }),
                )?,
                ReduceKind::Min => reduce_with::<T, $A>(
                    x,
                    axes,
                    conv,
                    &Fold(<$A>::INFINITY, |a: $A, b: $A| if a.is_nan() || b.is_nan() { <$A>::NAN } else { a.min(b) }),
                )?,
                ReduceKind::And => {
                    reduce_with::<T, $A>(x, axes, conv, &Fold(1.0, |a: $A, b: $A| if a != 0.0 && b != 0.0 { 1.0 } else { 0.0 }))?
                }
                ReduceKind::Or => {
                    reduce_with::<T, $A>(x, axes, conv, &Fold(0.0, |a: $A, b: $A| if a != 0.0 || b != 0.0 { 1.0 } else { 0.0 }))?
                }
            };
            finish::<U>(shape, v.into_iter().map(|a| U::from_f64(a as f64)).collect())
        }};
    }
    if wide {
        go!(f64, |t: T| t.to_f64())
    } else {
        go!(f32, |t: T| t.into().0)
    }
}

/// f32 view of a float element (f16/bf16/f32).
pub struct FloatIn(f32);
impl From<f32> for FloatIn {
    fn from(v: f32) -> Self {
        FloatIn(v)
    }
}
impl From<f64> for FloatIn {
    fn from(v: f64) -> Self {
        FloatIn(v as f32)
    }
}
impl From<f16> for FloatIn {
    fn from(v: f16) -> Self {
        FloatIn(v.to_f32())
    }
}
impl From<bf16> for FloatIn {
    fn from(v: bf16) -> Self {
        FloatIn(v.to_f32())
    }
}

fn reduce_int<T: Element, U: Element>(kind: ReduceKind, x: &Data, axes: &[usize], shape: Vec<usize>) -> Result<Data> {
    // Integer sums/products wrap in the output type, as in C++; compute in i128 then wrap.
    let conv = |t: T| t.to_i128();
    let v: Vec<i128> = match kind {
        ReduceKind::Sum => reduce_with::<T, i128>(x, axes, conv, &Fold(0, |a: i128, b: i128| a.wrapping_add(b)))?,
        ReduceKind::Prod => reduce_with::<T, i128>(x, axes, conv, &Fold(1, |a: i128, b: i128| a.wrapping_mul(b)))?,
        ReduceKind::Max => reduce_with::<T, i128>(x, axes, conv, &Fold(i128::MIN, |a: i128, b: i128| a.max(b)))?,
        ReduceKind::Min => reduce_with::<T, i128>(x, axes, conv, &Fold(i128::MAX, |a: i128, b: i128| a.min(b)))?,
        ReduceKind::And => reduce_with::<T, i128>(x, axes, conv, &Fold(1, |a: i128, b: i128| (a != 0 && b != 0) as i128))?,
        ReduceKind::Or => reduce_with::<T, i128>(x, axes, conv, &Fold(0, |a: i128, b: i128| (a != 0 || b != 0) as i128))?,
    };
    finish::<U>(shape, v.into_iter().map(U::from_i128).collect())
}

fn reduce_complex(kind: ReduceKind, x: &Data, axes: &[usize], shape: Vec<usize>, out: Dtype) -> Result<Data> {
    type C = Complex32;
    let conv = |t: C| t;
    let key = |z: C| (z.re, z.im);
    let v: Vec<C> = match kind {
        ReduceKind::Sum => reduce_with::<C, C>(x, axes, conv, &Fold(C::new(0.0, 0.0), |a, b| a + b))?,
        ReduceKind::Prod => reduce_with::<C, C>(x, axes, conv, &Fold(C::new(1.0, 0.0), |a, b| a * b))?,
        ReduceKind::Max => {
            reduce_with::<C, C>(x, axes, conv, &Fold(C::new(f32::NEG_INFINITY, 0.0), move |a, b| if key(a) >= key(b) { a } else { b }))?
        }
        ReduceKind::Min => {
            reduce_with::<C, C>(x, axes, conv, &Fold(C::new(f32::INFINITY, 0.0), move |a, b| if key(a) <= key(b) { a } else { b }))?
        }
        ReduceKind::And => reduce_with::<C, C>(
            x,
            axes,
            conv,
            &Fold(C::new(1.0, 0.0), |a: C, b: C| C::new((a != C::new(0.0, 0.0) && b != C::new(0.0, 0.0)) as u8 as f32, 0.0)),
        )?,
        ReduceKind::Or => reduce_with::<C, C>(
            x,
            axes,
            conv,
            &Fold(C::new(0.0, 0.0), |a: C, b: C| C::new((a != C::new(0.0, 0.0) || b != C::new(0.0, 0.0)) as u8 as f32, 0.0)),
        )?,
    };
    let _ = out;
    finish::<C>(shape, v)
}

fn arg_reduce(x: &Data, axis: usize, is_max: bool, shape: Vec<usize>) -> Result<Data> {
    let outer: usize = x.shape[..axis].iter().product();
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    if n == 0 {
        return Err(Error::invalid("[argmax/argmin] Cannot compute the arg reduction of an empty axis."));
    }
    let c = x.to_row_contiguous()?;
    let mut out = vec![0u32; outer * inner];
    // Float rows along the last axis (greedy sampling's argmax over the logits): lane-parallel.
    if inner == 1 {
        let rows = match c.dtype {
            Dtype::Float32 => Some(arg_rows::<f32> as fn(&Data, usize, usize, bool, &mut [u32])),
            Dtype::Float16 => Some(arg_rows::<f16> as fn(&Data, usize, usize, bool, &mut [u32])),
            Dtype::Bfloat16 => Some(arg_rows::<bf16> as fn(&Data, usize, usize, bool, &mut [u32])),
            _ => None,
        };
        if let Some(rows) = rows {
            rows(&c, x.size(), n, is_max, &mut out);
            return Data::from_slice(&out, shape);
        }
    }
    crate::dispatch!(c.dtype, T => {
        let src = &c.raw::<T>()[c.offset as usize..c.offset as usize + x.size()];
        let key = |v: T| -> (f64, f64) {
            let z = v.to_c32();
            if T::DTYPE.is_integer() { (v.to_i128() as f64, 0.0) } else if T::DTYPE.is_complex() { (z.re as f64, z.im as f64) } else { (v.to_f64(), 0.0) }
        };
        out.par_chunks_mut(inner.max(1)).enumerate().for_each(|(o, orow)| {
            for (j, slot) in orow.iter_mut().enumerate() {
                let mut best = 0usize;
                let mut bk = key(src[o * n * inner + j]);
                for i in 1..n {
                    let k = key(src[(o * n + i) * inner + j]);
                    if bk.0.is_nan() {
                        break; // NaN wins and the first NaN stays.
                    }
                    let better = if k.0.is_nan() { true } else if is_max { k > bk } else { k < bk };
                    if better {
                        best = i;
                        bk = k;
                    }
                }
                *slot = best as u32;
            }
        });
    });
    Data::from_slice(&out, shape)
}

/// `arg_row` over each row of `n` of the contiguous float data `c` (f32 read in place, half
/// types widened a row at a time).
fn arg_rows<T: KFloat>(c: &Data, size: usize, n: usize, is_max: bool, out: &mut [u32]) {
    let src = &c.raw::<T>()[c.offset as usize..c.offset as usize + size];
    out.par_iter_mut().enumerate().for_each(|(o, slot)| {
        let row = &src[o * n..(o + 1) * n];
        let mut buf = Vec::new();
        let r = T::as_f32(row).unwrap_or_else(|| {
            buf.resize(n, 0f32);
            T::load(row, &mut buf);
            &buf
        });
        *slot = if is_max { arg_row::<true>(r) } else { arg_row::<false>(r) } as u32;
    });
}

/// The index of the first maximum (`MAX`) or minimum of `row`, or of its first NaN (NumPy's and
/// MLX's rule). Eight lanes each keep their best value and its first index, which compiles to
/// vector compares and blends; the generic loop above compared one f64 key at a time (70 µs for
/// SmolLM2's 49,152 logits on a Zen 2 core). A NaN anywhere sends the row to a scan for it.
fn arg_row<const MAX: bool>(row: &[f32]) -> usize {
    const L: usize = 8;
    let better = |v: f32, b: f32| if MAX { v > b } else { v < b };
    let first_nan = || row.iter().position(|v| v.is_nan());
    if row.len() < 2 * L {
        return first_nan().unwrap_or_else(|| (1..row.len()).fold(0, |bi, i| if better(row[i], row[bi]) { i } else { bi }));
    }
    let mut best = [0f32; L];
    best.copy_from_slice(&row[..L]);
    let mut idx: [u32; L] = std::array::from_fn(|l| l as u32);
    let mut nan = [false; L];
    let chunks = row.chunks_exact(L);
    let rest = chunks.remainder();
    for (c, ch) in chunks.enumerate() {
        for l in 0..L {
            let v = ch[l];
            nan[l] |= v.is_nan();
            if better(v, best[l]) {
                best[l] = v;
                idx[l] = (c * L + l) as u32;
            }
        }
    }
    if nan.contains(&true) || rest.iter().any(|v| v.is_nan()) {
        return first_nan().unwrap_or(0);
    }
    // The best lane (ties: the lowest index), then the tail, whose indices come after all lanes'.
    let mut bi = idx[0] as usize;
    for l in 1..L {
        let i = idx[l] as usize;
        if better(best[l], row[bi]) || (best[l] == row[bi] && i < bi) {
            bi = i;
        }
    }
    let tail = row.len() - rest.len();
    for (j, &v) in rest.iter().enumerate() {
        if better(v, row[bi]) {
            bi = tail + j;
        }
    }
    bi
}

fn scan(x: &Data, kind: ScanKind, axis: usize, reverse: bool, inclusive: bool) -> Result<Data> {
    let outer: usize = x.shape[..axis].iter().product();
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let c = x.to_row_contiguous()?;
    macro_rules! go {
        ($T:ty, $A:ty, $to:expr, $from:expr, $init:expr, $f:expr) => {{
            let src = &c.raw::<$T>()[c.offset as usize..c.offset as usize + x.size()];
            let to = $to;
            let from = $from;
            let f = $f;
            Data::build::<$T>(x.shape.clone(), |out| {
                // One (outer) block of n * inner elements at a time; lines run along the axis.
                let block = |o: usize, out: &mut [$T]| {
                    let src = &src[o * n * inner..(o + 1) * n * inner];
                    for j in 0..inner {
                        let mut acc: $A = $init;
                        for step in 0..n {
                            let i = if reverse { n - 1 - step } else { step };
                            let idx = i * inner + j;
                            if inclusive {
                                acc = f(acc, to(src[idx]));
                                out[idx] = from(acc);
                            } else {
                                out[idx] = from(acc);
                                acc = f(acc, to(src[idx]));
                            }
                        }
                    }
                };
                let bl = (n * inner).max(1);
                if size_of(&x.shape) >= PAR_THRESHOLD && outer > 1 {
                    out.par_chunks_mut(bl).enumerate().for_each(|(o, chunk)| block(o, chunk));
                } else {
                    out.chunks_mut(bl).enumerate().for_each(|(o, chunk)| block(o, chunk));
                }
            })
        }};
    }
    macro_rules! float_scan {
        ($T:ty, $A:ty, $to:expr, $from:expr) => {
            match kind {
                ScanKind::Sum => go!($T, $A, $to, $from, 0.0, |a: $A, b: $A| a + b),
                ScanKind::Prod => go!($T, $A, $to, $from, 1.0, |a: $A, b: $A| a * b),
                ScanKind::Max => {
                    go!($T, $A, $to, $from, <$A>::NEG_INFINITY, |a: $A, b: $A| if a.is_nan() || b.is_nan() { <$A>::NAN } else { a.max(b) })
                }
                ScanKind::Min => {
                    go!($T, $A, $to, $from, <$A>::INFINITY, |a: $A, b: $A| if a.is_nan() || b.is_nan() { <$A>::NAN } else { a.min(b) })
                }
                ScanKind::LogAddExp => go!($T, $A, $to, $from, <$A>::NEG_INFINITY, |a: $A, b: $A| {
                    let m = a.max(b);
                    if a.is_nan() || b.is_nan() {
                        <$A>::NAN
                    } else if m == <$A>::NEG_INFINITY {
                        m
                    } else {
                        m + (-(a - b).abs()).exp().ln_1p()
                    }
                }),
            }
        };
    }
    macro_rules! int_scan {
        ($T:ty) => {
            match kind {
                ScanKind::Sum => go!($T, $T, |v: $T| v, |v: $T| v, 0, |a: $T, b: $T| a.wrapping_add(b)),
                ScanKind::Prod => go!($T, $T, |v: $T| v, |v: $T| v, 1, |a: $T, b: $T| a.wrapping_mul(b)),
                ScanKind::Max => go!($T, $T, |v: $T| v, |v: $T| v, <$T>::MIN, |a: $T, b: $T| a.max(b)),
                ScanKind::Min => go!($T, $T, |v: $T| v, |v: $T| v, <$T>::MAX, |a: $T, b: $T| a.min(b)),
                ScanKind::LogAddExp => Err(Error::invalid("[logcumsumexp] integer inputs must be cast to float first")),
            }
        };
    }
    match c.dtype {
        Dtype::Float32 => float_scan!(f32, f32, |v: f32| v, |v: f32| v),
        Dtype::Float64 => float_scan!(f64, f64, |v: f64| v, |v: f64| v),
        Dtype::Float16 => float_scan!(f16, f32, |v: f16| v.to_f32(), f16::from_f32),
        Dtype::Bfloat16 => float_scan!(bf16, f32, |v: bf16| v.to_f32(), bf16::from_f32),
        Dtype::Uint8 => int_scan!(u8),
        Dtype::Uint16 => int_scan!(u16),
        Dtype::Uint32 => int_scan!(u32),
        Dtype::Uint64 => int_scan!(u64),
        Dtype::Int8 => int_scan!(i8),
        Dtype::Int16 => int_scan!(i16),
        Dtype::Int32 => int_scan!(i32),
        Dtype::Int64 => int_scan!(i64),
        Dtype::Complex64 => match kind {
            ScanKind::Sum => go!(Complex32, Complex32, |v| v, |v| v, Complex32::new(0.0, 0.0), |a: Complex32, b: Complex32| a + b),
            ScanKind::Prod => go!(Complex32, Complex32, |v| v, |v| v, Complex32::new(1.0, 0.0), |a: Complex32, b: Complex32| a * b),
            _ => Err(Error::invalid("[scan] unsupported for complex64")),
        },
        Dtype::Bool => Err(Error::invalid("[scan] bool inputs must be cast first")),
    }
}

pub fn eval(op: &ReduceOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let x = &inputs[0];
    let (shape, out_dt) = specs[0].clone();
    let out = match op {
        ReduceOp::Reduce { kind, axes, .. } => {
            // The op layer casts the input to the output dtype, so one type parameter suffices.
            let kind = *kind;
            debug_assert_eq!(x.dtype, out_dt);
            match x.dtype {
                Dtype::Float32 => reduce_float::<f32, f32>(kind, x, axes, shape),
                Dtype::Float64 => reduce_float::<f64, f64>(kind, x, axes, shape),
                Dtype::Float16 => reduce_float::<f16, f16>(kind, x, axes, shape),
                Dtype::Bfloat16 => reduce_float::<bf16, bf16>(kind, x, axes, shape),
                Dtype::Complex64 => reduce_complex(kind, x, axes, shape, out_dt),
                dt => crate::dispatch!(real: dt, T => reduce_int::<T, T>(kind, x, axes, shape), else unreachable!()),
            }
        }
        ReduceOp::ArgMax { axis } => arg_reduce(x, *axis, true, shape),
        ReduceOp::ArgMin { axis } => arg_reduce(x, *axis, false, shape),
        ReduceOp::Scan { kind, axis, reverse, inclusive } => scan(x, *kind, *axis, *reverse, *inclusive),
        ReduceOp::Softmax => super::rowwise::softmax(x),
        ReduceOp::LogSumExp => super::rowwise::logsumexp(x),
        ReduceOp::Var { ddof } => super::rowwise::var(x, *ddof),
    }?;
    let _ = cast::<f32, f32>;
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::arg_row;

    /// NumPy's rule written plainly: the first NaN, else the first extreme value.
    fn reference(row: &[f32], max: bool) -> usize {
        if let Some(i) = row.iter().position(|v| v.is_nan()) {
            return i;
        }
        let mut bi = 0;
        for (i, &v) in row.iter().enumerate() {
            if (max && v > row[bi]) || (!max && v < row[bi]) {
                bi = i;
            }
        }
        bi
    }

    /// The lane-parallel row path on rows of every remainder, with many ties (values drawn
    /// from a few integers), infinities, and NaNs in the lanes or the tail.
    #[test]
    fn arg_row_matches_the_first_extreme_or_nan() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [1usize, 2, 7, 8, 15, 16, 17, 23, 24, 63, 64, 100, 1001, 49152] {
            for trial in 0..12 {
                let mut row: Vec<f32> = (0..n).map(|_| (next() % 6) as f32 - 2.0).collect();
                match trial % 4 {
                    1 => row[(next() as usize) % n] = f32::INFINITY,
                    2 => row[(next() as usize) % n] = f32::NAN,
                    3 => {
                        row.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                        row[n - 1] = if trial % 8 == 3 { f32::NAN } else { f32::NEG_INFINITY };
                    }
                    _ => {}
                }
                assert_eq!(arg_row::<true>(&row), reference(&row, true), "argmax n={n} trial={trial}");
                assert_eq!(arg_row::<false>(&row), reference(&row, false), "argmin n={n} trial={trial}");
            }
        }
    }
}
