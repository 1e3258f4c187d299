//! Convolutions (see primitives/conv.rs): `conv_general` and the fixed-rank `conv1d/2d/3d` and
//! `conv_transpose1d/2d/3d` built on it, channels-last as MLX.
//!
//! Per-axis parameters are slices: empty means the default, one value applies to every spatial
//! axis, otherwise one value per spatial axis (MLX's int-or-sequence arguments).

use crate::array::Array;
use crate::dtype::promote_types;
use crate::error::Result;
use crate::primitives::conv::{conv_output_shape, ConvOp, ConvParams};
use crate::primitives::Primitive;

/// Expands an int-or-sequence argument to one value per spatial axis.
fn expand<T: Copy>(v: &[T], sp: usize, default: T, what: &str) -> Result<Vec<T>>
where
    T: std::fmt::Debug,
{
    match v.len() {
        0 => Ok(vec![default; sp]),
        1 => Ok(vec![v[0]; sp]),
        n if n == sp => Ok(v.to_vec()),
        _ => crate::bail!("[conv] Invalid {what} {v:?} for {sp}D convolution."),
    }
}

/// Checks ranks and dtypes and promotes both operands to one float dtype.
fn prepare(input: &Array, weight: &Array, sp: Option<usize>) -> Result<(Array, Array, usize)> {
    input.check()?;
    weight.check()?;
    let nd = input.ndim();
    let sp = match sp {
        Some(s) => s,
        None if nd >= 3 => nd - 2,
        None => crate::bail!("[conv] Invalid input array with {nd} dimensions. Expected at least 3 dimensions ([N, ..., C_in])."),
    };
    if nd != sp + 2 {
        crate::bail!(
            "[conv] Invalid input array with {nd} dimensions for {sp}D convolution. Expected an array with {} dimensions following the format [N, ..., C_in].",
            sp + 2
        );
    }
    if weight.ndim() != sp + 2 {
        crate::bail!(
            "[conv] Invalid weight array with {} dimensions for {sp}D convolution. Expected an array with {} dimensions following the format [C_out, ..., C_in].",
            weight.ndim(),
            sp + 2
        );
    }
    for a in [input, weight] {
        if !a.dtype().is_float() {
            crate::bail!("[conv] Invalid input array with type {}. Convolution currently only supports floating point types", a.dtype());
        }
    }
    let dt = promote_types(input.dtype(), weight.dtype());
    Ok((input.astype(dt), weight.astype(dt), sp))
}

/// General convolution: `padding_lo`/`padding_hi` per axis (negative values crop),
/// `kernel_dilation` spreads the kernel taps, `input_dilation` inserts zeros between input
/// samples, `groups` splits the channels, and `flip` computes convolution instead of
/// cross-correlation.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn conv_general(
    input: &Array,
    weight: &Array,
    stride: &[usize],
    padding_lo: &[isize],
    padding_hi: &[isize],
    kernel_dilation: &[usize],
    input_dilation: &[usize],
    groups: usize,
    flip: bool,
) -> Array {
    Array::build(|| {
        let (x, w, sp) = prepare(input, weight, None)?;
        let p = ConvParams {
            stride: expand(stride, sp, 1, "strides")?,
            pad_lo: expand(padding_lo, sp, 0, "padding")?,
            pad_hi: expand(padding_hi, sp, 0, "padding")?,
            kernel_dilation: expand(kernel_dilation, sp, 1, "kernel dilation")?,
            input_dilation: expand(input_dilation, sp, 1, "input dilation")?,
            groups,
            flip,
        };
        conv_output_shape(x.shape(), w.shape(), &p)?;
        Ok(Array::from_op(Primitive::Conv(ConvOp::Conv(p)), vec![x, w]))
    })
}

/// Symmetric-padding convolution of a fixed spatial rank.
#[track_caller]
fn conv_nd(input: &Array, weight: &Array, sp: usize, stride: &[usize], padding: &[usize], dilation: &[usize], groups: usize) -> Array {
    Array::build(|| {
        prepare(input, weight, Some(sp))?;
        let pad: Vec<isize> = padding.iter().map(|&p| p as isize).collect();
        Ok(conv_general(input, weight, stride, &pad, &pad, dilation, &[], groups, false))
    })
}

/// 1-d convolution: input `(N, L, C_in)`, weight `(C_out, K, C_in / groups)`.
#[track_caller]
pub fn conv1d(input: &Array, weight: &Array, stride: usize, padding: usize, dilation: usize, groups: usize) -> Array {
    conv_nd(input, weight, 1, &[stride], &[padding], &[dilation], groups)
}

/// 2-d convolution: input `(N, H, W, C_in)`, weight `(C_out, KH, KW, C_in / groups)`.
#[track_caller]
pub fn conv2d(input: &Array, weight: &Array, stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize) -> Array {
    conv_nd(input, weight, 2, &stride, &padding, &dilation, groups)
}

/// 3-d convolution: input `(N, D, H, W, C_in)`, weight `(C_out, KD, KH, KW, C_in / groups)`.
#[track_caller]
pub fn conv3d(input: &Array, weight: &Array, stride: [usize; 3], padding: [usize; 3], dilation: [usize; 3], groups: usize) -> Array {
    conv_nd(input, weight, 3, &stride, &padding, &dilation, groups)
}

/// Transposed convolution as MLX builds it: a flipped-kernel convolution of the input dilated by
/// `stride`, padded by `dilation * (k - 1) - padding` (plus `output_padding` at the end).
#[allow(clippy::too_many_arguments)]
#[track_caller]
fn conv_transpose_nd(
    input: &Array,
    weight: &Array,
    sp: usize,
    stride: &[usize],
    padding: &[usize],
    dilation: &[usize],
    output_padding: &[usize],
    groups: usize,
) -> Array {
    Array::build(|| {
        let (x, w, sp) = prepare(input, weight, Some(sp))?;
        let mut lo = Vec::with_capacity(sp);
        let mut hi = Vec::with_capacity(sp);
        for i in 0..sp {
            let k = w.shape()[i + 1] as isize;
            let base = dilation[i] as isize * (k - 1) - padding[i] as isize;
            lo.push(base);
            hi.push(base + output_padding[i] as isize);
        }
        Ok(conv_general(&x, &w, &[1], &lo, &hi, dilation, stride, groups, true))
    })
}

/// 1-d transposed convolution: input `(N, L, C_in)`, weight `(C_out, K, C_in / groups)`.
#[track_caller]
pub fn conv_transpose1d(
    input: &Array,
    weight: &Array,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
    groups: usize,
) -> Array {
    conv_transpose_nd(input, weight, 1, &[stride], &[padding], &[dilation], &[output_padding], groups)
}

/// 2-d transposed convolution: input `(N, H, W, C_in)`, weight `(C_out, KH, KW, C_in / groups)`.
#[track_caller]
pub fn conv_transpose2d(
    input: &Array,
    weight: &Array,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    output_padding: [usize; 2],
    groups: usize,
) -> Array {
    conv_transpose_nd(input, weight, 2, &stride, &padding, &dilation, &output_padding, groups)
}

/// 3-d transposed convolution: input `(N, D, H, W, C_in)`, weight `(C_out, KD, KH, KW, C_in / groups)`.
#[track_caller]
pub fn conv_transpose3d(
    input: &Array,
    weight: &Array,
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
    output_padding: [usize; 3],
    groups: usize,
) -> Array {
    conv_transpose_nd(input, weight, 3, &stride, &padding, &dilation, &output_padding, groups)
}
