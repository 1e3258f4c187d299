//! `cross`: the 3-vector cross product along an axis, from slices and element-wise ops.

use crate::array::Array;
use crate::error::Result;
use crate::shape::normalize_axis;

/// The cross product of `a` and `b` along `axis` (size 2 or 3 each; a 2-vector is taken as
/// having a zero third component, as in MLX). Other axes broadcast; dtypes promote.
#[track_caller]
pub fn cross(a: &Array, b: &Array, axis: isize) -> Array {
    Array::build(|| {
        let (pa, ax) = components(a, axis)?;
        let (pb, _) = components(b, axis)?;
        use crate::ops::{multiply as mul, subtract as sub};
        let c0 = sub(&mul(&pa[1], &pb[2]), &mul(&pa[2], &pb[1]));
        let c1 = sub(&mul(&pa[2], &pb[0]), &mul(&pa[0], &pb[2]));
        let c2 = sub(&mul(&pa[0], &pb[1]), &mul(&pa[1], &pb[0]));
        // The axis counted from the end, which survives broadcasting to a higher rank.
        let from_end = ax as isize - a.ndim() as isize;
        Ok(crate::ops::concatenate(&[c0, c1, c2], from_end))
    })
}

/// The three components of `x` along `axis` (each keeping the axis with size 1), zero-padding a
/// 2-vector, and the resolved axis.
fn components(x: &Array, axis: isize) -> Result<(Vec<Array>, usize)> {
    let ax = normalize_axis(axis, x.ndim(), "linalg::cross")?;
    let n = x.shape()[ax];
    if n != 2 && n != 3 {
        crate::bail!("[linalg::cross] The specified axis must have size 2 or 3.");
    }
    let x3 = if n == 2 {
        let widths: Vec<(usize, usize)> = (0..x.ndim()).map(|i| if i == ax { (0, 1) } else { (0, 0) }).collect();
        crate::ops::pad_constant(x, &widths, 0)
    } else {
        x.clone()
    };
    Ok((crate::ops::split_equal(&x3, 3, ax as isize), ax))
}
