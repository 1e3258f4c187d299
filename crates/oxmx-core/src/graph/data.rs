//! `Data`: the evaluated contents of an array — a shared buffer plus a strided view into it.
//! Views (transpose, slice, broadcast, reshape of dense data) share the buffer.

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::memory::Buffer;
use crate::shape::{self, Shape, Strides};
use rayon::prelude::*;
use std::borrow::Cow;

/// Element count from which a strided gather is split across threads.
const GATHER_PAR_MIN: usize = 1 << 16;
use std::sync::Arc;

#[derive(Clone)]
pub struct Data {
    pub buffer: Arc<Buffer>,
    pub dtype: Dtype,
    pub shape: Shape,
    /// In elements.
    pub strides: Strides,
    /// Element offset of index [0, 0, …] into the buffer.
    pub offset: isize,
}

impl Data {
    /// A dense row-major array over a whole buffer.
    pub fn dense(buffer: Buffer, shape: Shape, dtype: Dtype) -> Data {
        debug_assert!(buffer.len() >= shape::size_of(&shape) * dtype.size());
        let strides = shape::row_major_strides(&shape);
        Data { buffer: Arc::new(buffer), dtype, shape, strides, offset: 0 }
    }

    /// Allocates a dense output and lets `fill` write every element.
    pub fn build<T: Element>(shape: Shape, fill: impl FnOnce(&mut [T])) -> Result<Data> {
        let n = shape::size_of(&shape);
        let mut buf = Buffer::alloc(n * std::mem::size_of::<T>())?;
        fill(typed_mut::<T>(&mut buf, n));
        Ok(Data::dense(buf, shape, T::DTYPE))
    }

    /// Copies a host slice into a new dense array.
    pub fn from_slice<T: Element>(values: &[T], shape: Shape) -> Result<Data> {
        if values.len() != shape::size_of(&shape) {
            return Err(Error::invalid(format!("[array] {} values cannot fill an array of shape {shape:?}", values.len())));
        }
        Data::build::<T>(shape, |out| out.copy_from_slice(values))
    }

    /// A view of the same buffer with another shape/strides/offset.
    pub fn view(&self, shape: Shape, strides: Strides, offset: isize) -> Data {
        Data { buffer: self.buffer.clone(), dtype: self.dtype, shape, strides, offset }
    }

    pub fn size(&self) -> usize {
        shape::size_of(&self.shape)
    }
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    pub fn is_row_contiguous(&self) -> bool {
        shape::is_row_contiguous(&self.shape, &self.strides)
    }
    /// Dense in some axis order: an element-wise op may run over the flat block.
    pub fn is_dense(&self) -> bool {
        shape::is_dense(&self.shape, &self.strides)
    }

    /// The whole underlying buffer as `T`s (index with `offset` and `strides`).
    pub fn raw<T: Element>(&self) -> &[T] {
        debug_assert_eq!(T::DTYPE.size(), self.dtype.size());
        typed::<T>(&self.buffer)
    }

    /// The elements in row-major order: borrowed when already row-contiguous, gathered otherwise.
    pub fn row_major<T: Element>(&self) -> Cow<'_, [T]> {
        let n = self.size();
        if self.is_row_contiguous() {
            let raw = self.raw::<T>();
            let start = self.offset as usize;
            return Cow::Borrowed(&raw[start..start + n]);
        }
        let mut out = vec![T::default(); n];
        self.gather_into(&mut out);
        Cow::Owned(out)
    }

    /// Writes the elements in row-major order into `out` (`size()` long).
    fn gather_into<T: Element>(&self, out: &mut [T]) {
        let raw = self.raw::<T>();
        let n = out.len();
        let nd = self.shape.len();
        if n < GATHER_PAR_MIN || nd < 2 || self.shape[nd - 1] == 0 {
            let mut i = 0;
            for_each_offset(&self.shape, &self.strides, self.offset, |o| {
                out[i] = raw[o as usize];
                i += 1;
            });
            return;
        }
        // Large gathers (the copy behind a reshape of a transposed view, a reduction over a
        // permuted layout) split their rows across threads: each row's start offset is
        // unravelled once, then the row is a memcpy (unit stride) or a strided loop.
        let (inner, s_in) = (self.shape[nd - 1], self.strides[nd - 1]);
        let rows_per_task = (GATHER_PAR_MIN / inner).max(1);
        let outer = &self.shape[..nd - 1];
        out.par_chunks_mut(inner * rows_per_task).enumerate().for_each(|(t, chunk)| {
            // The first row's index is unravelled once, then stepped.
            let mut idx = unravel(t * rows_per_task, outer);
            let mut o = [self.offset + idx.iter().zip(&self.strides).map(|(&i, &s)| i as isize * s).sum::<isize>()];
            for dst in chunk.chunks_mut(inner) {
                let o0 = o[0];
                if s_in == 1 {
                    dst.copy_from_slice(&raw[o0 as usize..o0 as usize + inner]);
                } else {
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = raw[(o0 + j as isize * s_in) as usize];
                    }
                }
                step_index(&mut idx, outer, [&self.strides[..nd - 1]], &mut o);
            }
        });
    }

    /// The flat block of a dense (any axis order) array, for element-wise ops that keep strides.
    pub fn dense_block<T: Element>(&self) -> Option<&[T]> {
        if !self.is_dense() {
            return None;
        }
        let n = self.size();
        let min_off: isize = self.offset
            + self.shape.iter().zip(&self.strides).map(|(&d, &s)| if s < 0 && d > 0 { s * (d as isize - 1) } else { 0 }).sum::<isize>();
        let raw = self.raw::<T>();
        Some(&raw[min_off as usize..min_off as usize + n])
    }

    /// A dense row-major copy (or `self` when it already is one).
    pub fn to_row_contiguous(&self) -> Result<Data> {
        if self.is_row_contiguous() {
            return Ok(self.clone());
        }
        // Gathered straight into the new buffer (the allocator's cache), not through a Vec:
        // a fresh multi-megabyte Vec faulted its pages in (and was copied once more) on every
        // call, 7.7 GB/s for a training step's head split (thirty-fourth session).
        crate::dispatch!(self.dtype, T => Data::build::<T>(self.shape.clone(), |out| self.gather_into(out)))
    }

    /// The element at a flat row-major index, cast to `U`.
    pub fn get_as<U: Element>(&self, flat: usize) -> U {
        let mut rem = flat;
        let mut off = self.offset;
        for i in (0..self.shape.len()).rev() {
            let d = self.shape[i];
            off += (rem % d) as isize * self.strides[i];
            rem /= d;
        }
        crate::dispatch!(self.dtype, T => crate::dtype::cast::<T, U>(self.raw::<T>()[off as usize]))
    }
}

/// The buffer's bytes as `&[T]`. Buffers from the allocator are 64-byte aligned; loaders copy
/// misaligned mapped data before making an array of it.
pub fn typed<T: Element>(buf: &Buffer) -> &[T] {
    let n = buf.len() / std::mem::size_of::<T>().max(1);
    assert!(buf.as_ptr() as usize % std::mem::align_of::<T>() == 0 || n == 0, "misaligned buffer");
    // SAFETY: alignment checked; every Element is plain data (bool buffers hold 0/1 only).
    unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const T, n) }
}

pub fn typed_mut<T: Element>(buf: &mut Buffer, n: usize) -> &mut [T] {
    assert!(n * std::mem::size_of::<T>() <= buf.len());
    let ptr = buf.bytes_mut().as_mut_ptr();
    assert!(ptr as usize % std::mem::align_of::<T>() == 0 || n == 0, "misaligned buffer");
    // SAFETY: alignment and length checked; the buffer is exclusively borrowed.
    unsafe { std::slice::from_raw_parts_mut(ptr as *mut T, n) }
}

/// Calls `f` with the element offset of every index of `shape`, in row-major order.
pub fn for_each_offset(shape: &[usize], strides: &[isize], offset: isize, mut f: impl FnMut(isize)) {
    let n = shape::size_of(shape);
    if n == 0 {
        return;
    }
    let nd = shape.len();
    if nd == 0 {
        f(offset);
        return;
    }
    let mut idx = vec![0usize; nd - 1];
    let mut off = [offset];
    let (last_d, last_s) = (shape[nd - 1], strides[nd - 1]);
    loop {
        let mut o = off[0];
        for _ in 0..last_d {
            f(o);
            o += last_s;
        }
        if !step_index(&mut idx, &shape[..nd - 1], [&strides[..nd - 1]], &mut off) {
            return;
        }
    }
}

/// Moves the row-major multi-index `idx` over `shape` one position on (the last axis fastest),
/// keeping each operand's element offset in step through its `strides`; `false` once past the
/// end. Stepping rows this way replaces a division per axis per row.
pub(crate) fn step_index<const K: usize>(idx: &mut [usize], shape: &[usize], strides: [&[isize]; K], off: &mut [isize; K]) -> bool {
    let mut ax = idx.len();
    while ax > 0 {
        ax -= 1;
        idx[ax] += 1;
        for k in 0..K {
            off[k] += strides[k][ax];
        }
        if idx[ax] < shape[ax] {
            return true;
        }
        for k in 0..K {
            off[k] -= shape[ax] as isize * strides[k][ax];
        }
        idx[ax] = 0;
    }
    false
}

/// The row-major multi-index of position `flat` in `shape`.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0usize; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    idx
}
