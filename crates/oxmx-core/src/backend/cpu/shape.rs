//! Shape and layout kernels. Views share the input buffer; the rest copy.

use super::elementwise::{collapse, for_chunks};
use crate::dtype::Element;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::ShapeOp;
use crate::shape::row_major_strides;

/// Strides for viewing `d` with `new_shape` without copying, when its layout allows it
/// (NumPy's `_attempt_nocopy_reshape`).
pub fn reshape_strides(d: &Data, new_shape: &[usize]) -> Option<Vec<isize>> {
    if d.is_row_contiguous() {
        return Some(row_major_strides(new_shape));
    }
    // Group old dims into contiguous runs and map the new dims onto them.
    let old: Vec<(usize, isize)> = d.shape.iter().copied().zip(d.strides.iter().copied()).filter(|(s, _)| *s != 1).collect();
    let mut new_strides = vec![0isize; new_shape.len()];
    let (mut oi, mut ni) = (0usize, 0usize);
    let new_nz: Vec<usize> = (0..new_shape.len()).filter(|&i| new_shape[i] != 1).collect();
    let mut nk = 0usize;
    while oi < old.len() && nk < new_nz.len() {
        let (mut op, mut np) = (old[oi].0, new_shape[new_nz[nk]]);
        let (oj0, nj0) = (oi, nk);
        while op != np {
            if op < np {
                oi += 1;
                if oi >= old.len() {
                    return None;
                }
                op *= old[oi].0;
            } else {
                nk += 1;
                if nk >= new_nz.len() {
                    return None;
                }
                np *= new_shape[new_nz[nk]];
            }
        }
        // Old dims oj0..=oi must be contiguous with each other.
        for k in oj0..oi {
            if old[k].1 != old[k + 1].1 * old[k + 1].0 as isize {
                return None;
            }
        }
        // Assign new strides from the last dim of the group backwards.
        let mut st = old[oi].1;
        for k in (nj0..=nk).rev() {
            new_strides[new_nz[k]] = st;
            st *= new_shape[new_nz[k]] as isize;
        }
        oi += 1;
        nk += 1;
    }
    let _ = &mut ni;
    if oi != old.len() || nk != new_nz.len() {
        return None;
    }
    Some(new_strides)
}

/// Copies `src` into the row-major buffer `out` starting at element `dst_off`, where `out`'s
/// layout is `dst_strides` (a region of a bigger array).
pub(crate) fn copy_into<T: Element>(src: &Data, out: &mut [T], dst_strides: &[isize], dst_off: isize) {
    let raw = src.raw::<T>();
    let (cs, cstr) = collapse(&src.shape, &[&src.strides, dst_strides]);
    #[derive(Copy, Clone)]
    struct P<T>(*mut T);
    unsafe impl<T> Send for P<T> {}
    unsafe impl<T> Sync for P<T> {}
    let p = P(out.as_mut_ptr());
    let n = src.size();
    let nd = cs.len();
    for_chunks(n, |start, len| {
        let p = p;
        let mut flat = start;
        let end = start + len;
        while flat < end {
            let (mut so, mut dof) = (src.offset, dst_off);
            let mut rem = flat;
            for d in (0..nd).rev() {
                let i = (rem % cs[d]) as isize;
                rem /= cs[d];
                so += i * cstr[0][d];
                dof += i * cstr[1][d];
            }
            let run = (cs[nd - 1] - flat % cs[nd - 1]).min(end - flat);
            let (ss, ds) = (cstr[0][nd - 1], cstr[1][nd - 1]);
            for _ in 0..run {
                unsafe { *p.0.offset(dof) = raw[so as usize] };
                so += ss;
                dof += ds;
            }
            flat += run;
        }
    });
}

pub fn eval(op: &ShapeOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let (out_shape, out_dt) = specs[0].clone();
    let x = &inputs[0];
    let out = match op {
        ShapeOp::Reshape(shape) => match reshape_strides(x, shape) {
            Some(strides) => x.view(shape.clone(), strides, x.offset),
            None => {
                let c = x.to_row_contiguous()?;
                c.view(shape.clone(), row_major_strides(shape), c.offset)
            }
        },
        ShapeOp::Broadcast(shape) => {
            let nd = shape.len();
            let off = nd - x.ndim();
            let strides = (0..nd).map(|i| if i < off || x.shape[i - off] == 1 && shape[i] != 1 { 0 } else { x.strides[i - off] }).collect();
            x.view(shape.clone(), strides, x.offset)
        }
        ShapeOp::Transpose(perm) => x.view(out_shape, perm.iter().map(|&p| x.strides[p]).collect(), x.offset),
        ShapeOp::Slice { start, step, len } => {
            let offset = x.offset + start.iter().zip(&x.strides).map(|(&s, &st)| s as isize * st).sum::<isize>();
            let strides = step.iter().zip(&x.strides).map(|(&k, &st)| k * st).collect();
            x.view(len.clone(), strides, offset)
        }
        ShapeOp::AsStrided { shape, strides, offset } => {
            let c = x.to_row_contiguous()?;
            c.view(shape.clone(), strides.clone(), c.offset + *offset as isize)
        }
        ShapeOp::StopGradient => x.clone(),
        ShapeOp::Copy => {
            if x.is_row_contiguous() {
                x.clone()
            } else {
                x.to_row_contiguous()?
            }
        }
        ShapeOp::Concatenate { axis } => crate::dispatch!(out_dt, T => {
            let strides = row_major_strides(&out_shape);
            Data::build::<T>(out_shape.clone(), |out| {
                let mut at = 0usize;
                for inp in inputs {
                    copy_into::<T>(inp, out, &strides, at as isize * strides[*axis]);
                    at += inp.shape[*axis];
                }
            })?
        }),
        ShapeOp::Pad { low, .. } => crate::dispatch!(out_dt, T => {
            let strides = row_major_strides(&out_shape);
            let value: T = inputs[1].get_as::<T>(0);
            Data::build::<T>(out_shape.clone(), |out| {
                out.fill(value);
                let off: isize = low.iter().zip(&strides).map(|(&l, &s)| l as isize * s).sum();
                copy_into::<T>(x, out, &strides, off);
            })?
        }),
    };
    Ok(vec![out])
}

/// Whether `Reshape` to the output spec's shape is a view of `x` (no copy).
pub(crate) fn reshapes_as_view(x: &Data, specs: &[Spec]) -> bool {
    reshape_strides(x, &specs[0].0).is_some()
}
