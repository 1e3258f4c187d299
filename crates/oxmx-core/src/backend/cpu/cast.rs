//! `astype` and `view` on the CPU.

use super::elementwise::map_unary;
use crate::dtype::cast;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::CastOp;

pub fn eval(op: &CastOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let a = &inputs[0];
    match op {
        CastOp::AsType(to) => {
            if *to == a.dtype {
                return Ok(vec![a.clone()]);
            }
            crate::dispatch!(a.dtype, A => crate::dispatch!(*to, B => Ok(vec![map_unary::<A, B>(a, cast::<A, B>)?])))
        }
        CastOp::View(to) => {
            let src = a.to_row_contiguous()?;
            let (shape, _) = specs[0].clone();
            let byte_off = src.offset as usize * src.dtype.size();
            if byte_off % to.size() == 0 && src.dtype != crate::dtype::Dtype::Bool && *to != crate::dtype::Dtype::Bool {
                let strides = crate::shape::row_major_strides(&shape);
                return Ok(vec![Data { buffer: src.buffer.clone(), dtype: *to, shape, strides, offset: (byte_off / to.size()) as isize }]);
            }
            // Copy (misaligned offset, or bool which must hold only 0/1).
            let nbytes = src.size() * src.dtype.size();
            let bytes = &src.buffer.bytes()[byte_off..byte_off + nbytes];
            let mut buf = crate::memory::Buffer::alloc(nbytes)?;
            buf.bytes_mut().copy_from_slice(bytes);
            if *to == crate::dtype::Dtype::Bool {
                buf.bytes_mut().iter_mut().for_each(|b| *b = (*b != 0) as u8);
            }
            Ok(vec![Data::dense(buf, shape, *to)])
        }
    }
}
