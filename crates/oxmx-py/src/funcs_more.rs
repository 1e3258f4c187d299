//! `conv_general`, `conv_transpose3d` and `gather_qmm`, bound with MLX's names, argument order
//! and defaults (kept out of funcs.rs, which is long already). `qqmm` is composed in Python
//! (python/oxmx/core/__init__.py) from quantize/dequantize, since MLX's CPU build has no kernel
//! for it either.

use crate::array::PyArray;
use crate::convert::{ok, opt_array, shape_arg, to_array};
use crate::funcs::tuple_or;
use oxmx_core::Array;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

type Obj<'a, 'py> = &'a Bound<'py, PyAny>;
type OptObj<'a, 'py> = Option<&'a Bound<'py, PyAny>>;

/// An int or a sequence of ints, as a list (an int is one entry: oxmx-core repeats it per axis).
fn ints(o: OptObj, default: usize) -> PyResult<Vec<usize>> {
    match o {
        Some(o) if !o.is_none() => shape_arg(o),
        _ => Ok(vec![default]),
    }
}

/// `conv_general`'s padding: an int, a sequence of ints (both sides), or a pair of sequences
/// `(low, high)`.
fn padding_pair(o: OptObj) -> PyResult<(Vec<isize>, Vec<isize>)> {
    let Some(o) = o.filter(|o| !o.is_none()) else {
        return Ok((vec![0], vec![0]));
    };
    if o.is_instance_of::<PyInt>() {
        let p: isize = o.extract()?;
        return Ok((vec![p], vec![p]));
    }
    let items: Vec<Bound<'_, PyAny>> = o.try_iter()?.collect::<PyResult<_>>()?;
    let nested = items.len() == 2 && items.iter().all(|x| !x.is_instance_of::<PyInt>());
    if nested {
        let lo: Vec<isize> = items[0].extract()?;
        let hi: Vec<isize> = items[1].extract()?;
        return Ok((lo, hi));
    }
    let p: Vec<isize> = items.iter().map(|x| x.extract()).collect::<PyResult<_>>()?;
    Ok((p.clone(), p))
}

#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=None, padding=None, kernel_dilation=None, input_dilation=None, groups=1, flip=false, *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn conv_general(
    input: Obj,
    weight: Obj,
    stride: OptObj,
    padding: OptObj,
    kernel_dilation: OptObj,
    input_dilation: OptObj,
    groups: usize,
    flip: bool,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (lo, hi) = padding_pair(padding)?;
    ok(oxmx_core::conv_general(
        &to_array(input, None)?,
        &to_array(weight, None)?,
        &ints(stride, 1)?,
        &lo,
        &hi,
        &ints(kernel_dilation, 1)?,
        &ints(input_dilation, 1)?,
        groups,
        flip,
    ))
}

#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=None, padding=None, dilation=None, output_padding=None, groups=1, *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn conv_transpose3d(
    input: Obj,
    weight: Obj,
    stride: OptObj,
    padding: OptObj,
    dilation: OptObj,
    output_padding: OptObj,
    groups: usize,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::conv_transpose3d(
        &to_array(input, None)?,
        &to_array(weight, None)?,
        tuple_or::<3>(stride, 1)?,
        tuple_or::<3>(padding, 0)?,
        tuple_or::<3>(dilation, 1)?,
        tuple_or::<3>(output_padding, 0)?,
        groups,
    ))
}

#[pyfunction]
#[pyo3(signature = (x, w, /, scales, biases=None, lhs_indices=None, rhs_indices=None, transpose=true, group_size=None, bits=None, mode="affine", global_scale=None, *, sorted_indices=false, stream=None))]
#[allow(clippy::too_many_arguments)]
fn gather_qmm(
    x: Obj,
    w: Obj,
    scales: Obj,
    biases: OptObj,
    lhs_indices: OptObj,
    rhs_indices: OptObj,
    transpose: bool,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
    global_scale: OptObj,
    sorted_indices: bool,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    if global_scale.is_some_and(|g| !g.is_none()) {
        return Err(PyValueError::new_err("[gather_qmm] global_scale (nvfp4 with a global scale) is not supported"));
    }
    let (b, li, ri): (Option<Array>, Option<Array>, Option<Array>) = (opt_array(biases)?, opt_array(lhs_indices)?, opt_array(rhs_indices)?);
    ok(oxmx_core::gather_qmm(
        &to_array(x, None)?,
        &to_array(w, None)?,
        &to_array(scales, None)?,
        b.as_ref(),
        li.as_ref(),
        ri.as_ref(),
        transpose,
        group_size,
        bits,
        mode,
        sorted_indices,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv_general, m)?)?;
    m.add_function(wrap_pyfunction!(conv_transpose3d, m)?)?;
    m.add_function(wrap_pyfunction!(gather_qmm, m)?)?;
    Ok(())
}
