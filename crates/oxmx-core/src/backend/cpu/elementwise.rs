//! The element-wise engine shared by unary, binary, ternary and cast kernels: contiguous fast
//! paths over slices (which the compiler vectorises), a scalar-broadcast path, and a general
//! strided path; all split across the thread pool for large arrays.

use super::simd::{fill_streaming, map_slice, zip_slice, Work, STREAM_BYTES};
use crate::dtype::Element;
use crate::error::Result;
use crate::graph::data::{step_index, unravel};
use crate::graph::Data;
use crate::shape::Shape;
use rayon::prelude::*;

/// Below this many elements a kernel runs on one thread.
pub const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per parallel task.
pub const CHUNK: usize = 1 << 14;

/// Merges adjacent dims that are contiguous in every operand, and drops size-1 dims, so that the
/// strided loop runs over as few, as long rows as possible.
pub fn collapse(shape: &[usize], strides: &[&[isize]]) -> (Shape, Vec<Vec<isize>>) {
    let mut out_shape: Shape = Vec::new();
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::new(); strides.len()];
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        if let Some(&last) = out_shape.last() {
            let mergeable = strides.iter().enumerate().all(|(k, s)| *out_strides[k].last().unwrap() == s[i] * shape[i] as isize);
            if mergeable {
                let n = out_shape.len();
                out_shape[n - 1] = last * shape[i];
                for (k, s) in strides.iter().enumerate() {
                    *out_strides[k].last_mut().unwrap() = s[i];
                }
                continue;
            }
        }
        out_shape.push(shape[i]);
        for (k, s) in strides.iter().enumerate() {
            out_strides[k].push(s[i]);
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for s in out_strides.iter_mut() {
            s.push(0);
        }
    }
    (out_shape, out_strides)
}

/// Runs `body(flat_start, len)` over `0..n` in chunks, in parallel when `n` is large.
pub fn for_chunks(n: usize, body: impl Fn(usize, usize) + Sync) {
    if n < PAR_THRESHOLD {
        body(0, n);
    } else {
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
            let s = c * CHUNK;
            body(s, CHUNK.min(n - s));
        });
    }
}

/// Visits `len` row-major positions from `start`, calling `row(out_pos, offsets, inner_len,
/// inner_strides)` once per run along the innermost dim. The index is unravelled once and then
/// stepped row by row (a division per dim per row cost more than copying a short row).
fn strided_rows<const K: usize>(
    shape: &[usize],
    strides: &[Vec<isize>],
    base: [isize; K],
    start: usize,
    len: usize,
    mut row: impl FnMut(usize, [isize; K], usize, [isize; K]),
) {
    if len == 0 {
        // Nothing to visit (an empty array may have a zero-length dim to divide by).
        return;
    }
    let nd = shape.len();
    let inner = shape[nd - 1];
    let mut inner_strides = [0isize; K];
    for k in 0..K {
        inner_strides[k] = strides[k][nd - 1];
    }
    // The start's index is unravelled once, then stepped a row at a time.
    let mut idx = unravel(start, shape);
    let mut off = base;
    for k in 0..K {
        off[k] += idx.iter().zip(&strides[k]).map(|(&i, &s)| i as isize * s).sum::<isize>();
    }
    let outer: [&[isize]; K] = std::array::from_fn(|k| &strides[k][..nd - 1]);
    let mut pos = start;
    let end = start + len;
    while pos < end {
        let within = idx[nd - 1];
        let run = (inner - within).min(end - pos);
        row(pos - start, off, run, inner_strides);
        pos += run;
        // Back to the row's start, then on to the next row.
        for k in 0..K {
            off[k] -= within as isize * inner_strides[k];
        }
        idx[nd - 1] = 0;
        step_index(&mut idx[..nd - 1], &shape[..nd - 1], outer, &mut off);
    }
}

/// Shared-output pointer for chunked parallel writes into disjoint ranges.
#[derive(Copy, Clone)]
struct OutPtr<T>(*mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

/// `out[i] = f(a[i])` over a row-major output of `a`'s shape.
pub fn map_unary<A: Element, B: Element>(a: &Data, f: impl Fn(A) -> B + Sync) -> Result<Data> {
    map_unary_slices(a, |s: &[A], o: &mut [B]| map_slice(s, o, &&f))
}

/// `map_unary` for a kernel that takes whole runs (`f(src, dst)`, equal lengths, contiguous):
/// one that decides per vector of elements, such as `fastmath::exp_slice`'s in-range fast path.
/// A strided operand is gathered a short run at a time. Large outputs stream as `Work::Heavy`.
pub fn map_unary_slices<A: Element, B: Element>(a: &Data, f: impl Fn(&[A], &mut [B]) + Sync) -> Result<Data> {
    let n = a.size();
    let shape = a.shape.clone();
    Data::build::<B>(shape, |out| {
        let raw = a.raw::<A>();
        if a.is_row_contiguous() {
            let src = &raw[a.offset as usize..a.offset as usize + n];
            if n < PAR_THRESHOLD {
                f(src, out);
            } else if n * std::mem::size_of::<B>() >= STREAM_BYTES {
                out.par_chunks_mut(CHUNK)
                    .zip(src.par_chunks(CHUNK))
                    .for_each(|(o, s)| fill_streaming(o, Work::Heavy, |st, blk| f(&s[st..st + blk.len()], blk)));
            } else {
                out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| f(s, o));
            }
            return;
        }
        let (cs, cstr) = collapse(&a.shape, &[&a.strides]);
        let ptr = OutPtr(out.as_mut_ptr());
        for_chunks(n, |start, len| {
            let ptr = ptr;
            strided_rows::<1>(&cs, &cstr, [a.offset], start, len, |o, [off], run, [st]| {
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start + o), run) };
                if st == 1 {
                    // A unit-stride run (a row of a sliced or permuted view) vectorises.
                    return f(&raw[off as usize..off as usize + run], dst);
                }
                // Gathered 64 at a time into a contiguous run.
                let mut buf = [A::default(); 64];
                let mut p = off;
                for d in dst.chunks_mut(64) {
                    for b in buf[..d.len()].iter_mut() {
                        *b = raw[p as usize];
                        p += st;
                    }
                    f(&buf[..d.len()], d);
                }
            });
        });
    })
}

/// `out[i] = f(a[i], b[i])` for two operands of one shape (any strides).
pub fn map_binary<A: Element, B: Element, C: Element>(a: &Data, b: &Data, f: impl Fn(A, B) -> C + Sync) -> Result<Data> {
    let n = a.size();
    let shape = a.shape.clone();
    Data::build::<C>(shape, |out| {
        let (ra, rb) = (a.raw::<A>(), b.raw::<B>());
        let a_scalar = a.strides.iter().all(|&s| s == 0);
        let b_scalar = b.strides.iter().all(|&s| s == 0);
        let (ac, bc) = (a.is_row_contiguous(), b.is_row_contiguous());
        if (ac || a_scalar) && (bc || b_scalar) && n > 0 {
            let (oa, ob) = (a.offset as usize, b.offset as usize);
            let body = |start: usize, o: &mut [C]| {
                let len = o.len();
                match (a_scalar, b_scalar) {
                    (true, true) => o.iter_mut().for_each(|o| *o = f(ra[oa], rb[ob])),
                    (true, false) => {
                        let (x, f) = (ra[oa], &f);
                        map_slice(&rb[ob + start..ob + start + len], o, &move |y| f(x, y))
                    }
                    (false, true) => {
                        let (y, f) = (rb[ob], &f);
                        map_slice(&ra[oa + start..oa + start + len], o, &move |x| f(x, y))
                    }
                    (false, false) => zip_slice(&ra[oa + start..oa + start + len], &rb[ob + start..ob + start + len], o, &&f),
                }
            };
            if n < PAR_THRESHOLD {
                body(0, out);
            } else if n * std::mem::size_of::<C>() >= STREAM_BYTES {
                // Binary kernels are mostly one instruction an element (a few, like `power`, are not).
                out.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, o)| fill_streaming(o, Work::Light, |st, blk| body(c * CHUNK + st, blk)));
            } else {
                out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| body(c * CHUNK, o));
            }
            return;
        }
        let (cs, cstr) = collapse(&a.shape, &[&a.strides, &b.strides]);
        let ptr = OutPtr(out.as_mut_ptr());
        for_chunks(n, |start, len| {
            let ptr = ptr;
            strided_rows::<2>(&cs, &cstr, [a.offset, b.offset], start, len, |o, [pa, pb], run, [sa, sb]| {
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start + o), run) };
                // Unit-stride and broadcast runs (a bias added to each row, a mask to each head)
                // go through the vectorised slice loops.
                let (ua, ub) = (pa as usize, pb as usize);
                match (sa, sb) {
                    (1, 1) => return zip_slice(&ra[ua..ua + run], &rb[ub..ub + run], dst, &&f),
                    (1, 0) => {
                        let (y, f) = (rb[ub], &f);
                        return map_slice(&ra[ua..ua + run], dst, &move |x| f(x, y));
                    }
                    (0, 1) => {
                        let (x, f) = (ra[ua], &f);
                        return map_slice(&rb[ub..ub + run], dst, &move |y| f(x, y));
                    }
                    _ => {}
                }
                let (mut pa, mut pb) = (pa, pb);
                for d in dst.iter_mut() {
                    *d = f(ra[pa as usize], rb[pb as usize]);
                    pa += sa;
                    pb += sb;
                }
            });
        });
    })
}

/// `out[i] = f(a[i], b[i], c[i])` for three operands of one shape.
pub fn map_ternary<A: Element, B: Element, C: Element, D: Element>(
    a: &Data,
    b: &Data,
    c: &Data,
    f: impl Fn(A, B, C) -> D + Sync,
) -> Result<Data> {
    let n = a.size();
    Data::build::<D>(a.shape.clone(), |out| {
        let (ra, rb, rc) = (a.raw::<A>(), b.raw::<B>(), c.raw::<C>());
        let (cs, cstr) = collapse(&a.shape, &[&a.strides, &b.strides, &c.strides]);
        let ptr = OutPtr(out.as_mut_ptr());
        for_chunks(n, |start, len| {
            let ptr = ptr;
            strided_rows::<3>(&cs, &cstr, [a.offset, b.offset, c.offset], start, len, |o, [pa, pb, pc], run, [sa, sb, sc]| {
                let dst = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start + o), run) };
                if [sa, sb, sc].iter().all(|&s| s == 0 || s == 1) {
                    // Unit-stride or broadcast operands (`where(x > 0, g, 0)`): vectorised.
                    return zip3_runs(&ra[pa as usize..], &rb[pb as usize..], &rc[pc as usize..], [sa, sb, sc], dst, &f);
                }
                let (mut pa, mut pb, mut pc) = (pa, pb, pc);
                for d in dst.iter_mut() {
                    *d = f(ra[pa as usize], rb[pb as usize], rc[pc as usize]);
                    pa += sa;
                    pb += sb;
                    pc += sc;
                }
            });
        });
    })
}

/// `dst[i] = f(a[i·sa], b[i·sb], c[i·sc])` for strides of 0 (a broadcast value) or 1, with a
/// loop per stride pattern so that each one vectorises.
fn zip3_runs<A: Copy, B: Copy, C: Copy, D>(a: &[A], b: &[B], c: &[C], strides: [isize; 3], dst: &mut [D], f: &impl Fn(A, B, C) -> D) {
    #[inline(always)]
    fn body<A: Copy, B: Copy, C: Copy, D, const SA: bool, const SB: bool, const SC: bool>(
        a: &[A],
        b: &[B],
        c: &[C],
        dst: &mut [D],
        f: &impl Fn(A, B, C) -> D,
    ) {
        let n = dst.len();
        // Slices cut to the run so the loop needs no bounds checks.
        let (a, b, c) = (&a[..if SA { n } else { 1 }], &b[..if SB { n } else { 1 }], &c[..if SC { n } else { 1 }]);
        // Broadcast values read once: read in the loop, they were loaded again per element (a
        // store to `dst` might have changed them, as far as the compiler knew) and the loop
        // stayed scalar (see simd::map_slice).
        let (a0, b0, c0) = (a[0], b[0], c[0]);
        for (i, d) in dst.iter_mut().enumerate() {
            *d = f(if SA { a[i] } else { a0 }, if SB { b[i] } else { b0 }, if SC { c[i] } else { c0 });
        }
    }
    macro_rules! go {
        ($sa:literal, $sb:literal, $sc:literal) => {
            super::simd::vectorized(|| body::<A, B, C, D, $sa, $sb, $sc>(a, b, c, dst, f))
        };
    }
    match strides.map(|s| s == 1) {
        [true, true, true] => go!(true, true, true),
        [true, true, false] => go!(true, true, false),
        [true, false, true] => go!(true, false, true),
        [true, false, false] => go!(true, false, false),
        [false, true, true] => go!(false, true, true),
        [false, true, false] => go!(false, true, false),
        [false, false, true] => go!(false, false, true),
        [false, false, false] => go!(false, false, false),
    }
}
