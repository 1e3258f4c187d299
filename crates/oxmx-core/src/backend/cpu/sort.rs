//! CPU kernels of the sort family. The sorted axis is moved last (a copy into a dense
//! `[rows, n]` block), each row is sorted or partitioned (in parallel over rows for large
//! inputs), and the output is returned as a strided view that puts the axis back.

use super::elementwise::PAR_THRESHOLD;
use crate::dtype::Element;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::SortOp;
use crate::shape::{row_major_strides, size_of};
use half::{bf16, f16};
use num_complex::Complex32;
use rayon::prelude::*;
use std::cmp::Ordering;

/// A total order for sorting: NaNs after every number (complex: lexicographic on (re, im)).
pub trait SortKey: Element {
    fn cmp_key(&self, other: &Self) -> Ordering;
    /// Sorts every row of `n` values with a radix sort when the type has an order-preserving
    /// integer key (see `radix`); `None` when it has not.
    fn radix_sort_rows(_v: &mut [Self], _n: usize) -> Option<Result<()>> {
        None
    }
}

/// Rows at least this long are radix sorted (below it a comparison sort is as fast).
const RADIX_MIN: usize = 2048;

macro_rules! ord_key {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            #[inline(always)]
            fn cmp_key(&self, other: &Self) -> Ordering { self.cmp(other) }
        }
    )*};
}
ord_key!(bool, u8, u16, u64, i8, i16, i64);

macro_rules! radix_key {
    ($($t:ty => $to:expr, $from:expr, $cmp:expr);* $(;)?) => {$(
        impl SortKey for $t {
            #[inline(always)]
            fn cmp_key(&self, other: &Self) -> Ordering { $cmp(*self, *other) }
            fn radix_sort_rows(v: &mut [Self], n: usize) -> Option<Result<()>> {
                Some(super::radix::sort_rows_u32(v, n, $to, $from))
            }
        }
    )*};
}
radix_key!(
    u32 => |x: u32| x, |k: u32| k, |a: u32, b: u32| a.cmp(&b);
    i32 => |x: i32| (x as u32) ^ 0x8000_0000, |k: u32| (k ^ 0x8000_0000) as i32, |a: i32, b: i32| a.cmp(&b);
    f32 => super::radix::f32_key, super::radix::f32_from_key, |a: f32, b: f32| float_cmp(a, b, a.is_nan(), b.is_nan());
);

#[inline(always)]
fn float_cmp<F: PartialOrd + Copy>(a: F, b: F, a_nan: bool, b_nan: bool) -> Ordering {
    match (a_nan, b_nan) {
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

macro_rules! float_key {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            #[inline(always)]
            fn cmp_key(&self, other: &Self) -> Ordering { float_cmp(*self, *other, self.is_nan(), other.is_nan()) }
        }
    )*};
}
float_key!(f64, f16, bf16);

impl SortKey for Complex32 {
    fn cmp_key(&self, other: &Self) -> Ordering {
        self.re.cmp_key(&other.re).then(self.im.cmp_key(&other.im))
    }
}

/// Moves `axis` last and copies into a dense `[rows, n]` block.
fn axis_last<T: Element>(x: &Data, axis: usize) -> (Vec<T>, Vec<usize>) {
    let mut perm: Vec<usize> = (0..x.ndim()).filter(|&a| a != axis).collect();
    perm.push(axis);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| x.strides[p]).collect();
    let v = x.view(shape, strides, x.offset).row_major::<T>().into_owned();
    (v, perm)
}

/// Wraps a dense block laid out in `perm` order as a view with the original axis order.
fn restore<U: Element>(values: Vec<U>, orig_shape: &[usize], perm: &[usize]) -> Result<Data> {
    let pshape: Vec<usize> = perm.iter().map(|&p| orig_shape[p]).collect();
    let d = Data::from_slice(&values, pshape.clone())?;
    let pstrides = row_major_strides(&pshape);
    let mut strides = vec![0isize; orig_shape.len()];
    for (i, &p) in perm.iter().enumerate() {
        strides[p] = pstrides[i];
    }
    Ok(d.view(orig_shape.to_vec(), strides, 0))
}

/// Runs `f` on each row of `n` elements of `v`, in parallel when the block is large.
fn for_rows<T: Send>(v: &mut [T], n: usize, f: impl Fn(&mut [T]) + Sync) {
    if n == 0 {
        return;
    }
    if v.len() >= PAR_THRESHOLD && v.len() / n > 1 {
        let per = (PAR_THRESHOLD / n).max(1);
        v.par_chunks_mut(per * n).for_each(|c| c.chunks_mut(n).for_each(&f));
    } else {
        v.chunks_mut(n).for_each(f);
    }
}

/// Like `for_rows`, over a value row and the matching index row.
fn for_rows2<T: Sync>(v: &[T], idx: &mut [u32], n: usize, f: impl Fn(&[T], &mut [u32]) + Sync) {
    if n == 0 {
        return;
    }
    if v.len() >= PAR_THRESHOLD && v.len() / n > 1 {
        let per = (PAR_THRESHOLD / n).max(1);
        idx.par_chunks_mut(per * n).zip(v.par_chunks(per * n)).for_each(|(ic, vc)| {
            ic.chunks_mut(n).zip(vc.chunks(n)).for_each(|(i, r)| f(r, i));
        });
    } else {
        idx.chunks_mut(n).zip(v.chunks(n)).for_each(|(i, r)| f(r, i));
    }
}

fn run<T: SortKey>(op: &SortOp, x: &Data) -> Result<Data> {
    let axis = op.axis();
    let n = x.shape[axis];
    let (mut v, perm) = axis_last::<T>(x, axis);
    let cmp = |a: &T, b: &T| a.cmp_key(b);
    match *op {
        SortOp::Sort { .. } => {
            if n >= RADIX_MIN {
                if let Some(done) = T::radix_sort_rows(&mut v, n) {
                    done?;
                    return restore(v, &x.shape, &perm);
                }
            }
            for_rows(&mut v, n, |r| r.sort_unstable_by(cmp));
            restore(v, &x.shape, &perm)
        }
        SortOp::Partition { kth, .. } => {
            for_rows(&mut v, n, |r| {
                r.select_nth_unstable_by(kth, cmp);
            });
            restore(v, &x.shape, &perm)
        }
        SortOp::ArgSort { .. } | SortOp::ArgPartition { .. } => {
            let mut idx = vec![0u32; v.len()];
            let kth = if let SortOp::ArgPartition { kth, .. } = *op { Some(kth) } else { None };
            for_rows2(&v, &mut idx, n, |r, ix| {
                for (k, slot) in ix.iter_mut().enumerate() {
                    *slot = k as u32;
                }
                let c = |a: &u32, b: &u32| r[*a as usize].cmp_key(&r[*b as usize]);
                match kth {
                    // Stable: equal values keep their original order.
                    None => ix.sort_by(c),
                    Some(k) => {
                        ix.select_nth_unstable_by(k, c);
                    }
                }
            });
            restore(idx, &x.shape, &perm)
        }
    }
}

pub fn eval(op: &SortOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    let x = &inputs[0];
    debug_assert!(size_of(&x.shape) == x.size());
    let out = crate::dispatch!(x.dtype, T => run::<T>(op, x))?;
    Ok(vec![out])
}
