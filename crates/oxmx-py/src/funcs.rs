//! `oxmx.core` functions, bound with MLX's names, argument order, keywords and defaults. Each
//! argument pattern has one macro; `stream=` is accepted everywhere (ops run on the default
//! stream for now).

use crate::array::PyArray;
use crate::convert::{
    array_list, axes_arg, dtype_arg, int_list, isize_list, ok, ok_vec, opt_array, opt_shape, py_scalar, shape_arg, to_array, to_operand,
    IntoPyResult,
};
use oxmx_core::{Array, Axes, Dtype, Operand, Scalar};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

type Obj<'a, 'py> = &'a Bound<'py, PyAny>;
type OptObj<'a, 'py> = Option<&'a Bound<'py, PyAny>>;

fn arr(o: Obj) -> PyResult<Array> {
    to_array(o, None)
}

fn fits(x: &Operand, y: &Operand) -> PyResult<()> {
    for (s, a) in [(x, y), (y, x)] {
        if let (Operand::Scalar(Scalar::Int(v)), Operand::Array(a)) = (s, a) {
            if let Some(info) = oxmx_core::iinfo(a.dtype()) {
                if a.dtype() != Dtype::Bool && ((*v as i128) < info.min || (*v as i128) > info.max) {
                    return Err(PyValueError::new_err(format!("Converting {v} to {} would result in overflow.", a.dtype().name())));
                }
            }
        }
    }
    Ok(())
}

macro_rules! register {
    ($fname:ident: $($rs:ident),* $(,)?) => {
        pub fn $fname(m: &Bound<'_, PyModule>) -> PyResult<()> {
            $( m.add_function(wrap_pyfunction!($rs, m)?)?; )*
            Ok(())
        }
    };
}

macro_rules! unary {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, *, stream=None))]
            fn $rs(a: Obj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?))
            }
        )*
        register!(register_unary: $($rs),*);
    };
}

unary! {
    "abs" => u_abs, oxmx_core::abs;
    "sign" => u_sign, oxmx_core::sign;
    "negative" => u_negative, oxmx_core::negative;
    "square" => u_square, oxmx_core::square;
    "sqrt" => u_sqrt, oxmx_core::sqrt;
    "rsqrt" => u_rsqrt, oxmx_core::rsqrt;
    "reciprocal" => u_reciprocal, oxmx_core::reciprocal;
    "exp" => u_exp, oxmx_core::exp;
    "expm1" => u_expm1, oxmx_core::expm1;
    "log" => u_log, oxmx_core::log;
    "log1p" => u_log1p, oxmx_core::log1p;
    "log2" => u_log2, oxmx_core::log2;
    "log10" => u_log10, oxmx_core::log10;
    "sin" => u_sin, oxmx_core::sin;
    "cos" => u_cos, oxmx_core::cos;
    "tan" => u_tan, oxmx_core::tan;
    "arcsin" => u_arcsin, oxmx_core::arcsin;
    "arccos" => u_arccos, oxmx_core::arccos;
    "arctan" => u_arctan, oxmx_core::arctan;
    "sinh" => u_sinh, oxmx_core::sinh;
    "cosh" => u_cosh, oxmx_core::cosh;
    "tanh" => u_tanh, oxmx_core::tanh;
    "arcsinh" => u_arcsinh, oxmx_core::arcsinh;
    "arccosh" => u_arccosh, oxmx_core::arccosh;
    "arctanh" => u_arctanh, oxmx_core::arctanh;
    "erf" => u_erf, oxmx_core::erf;
    "erfinv" => u_erfinv, oxmx_core::erfinv;
    "sigmoid" => u_sigmoid, oxmx_core::sigmoid;
    "floor" => u_floor, oxmx_core::floor;
    "ceil" => u_ceil, oxmx_core::ceil;
    "isnan" => u_isnan, oxmx_core::isnan;
    "isinf" => u_isinf, oxmx_core::isinf;
    "isposinf" => u_isposinf, oxmx_core::isposinf;
    "isneginf" => u_isneginf, oxmx_core::isneginf;
    "isfinite" => u_isfinite, oxmx_core::isfinite;
    "conjugate" => u_conjugate, oxmx_core::conjugate;
    "conj" => u_conj, oxmx_core::conjugate;
    "logical_not" => u_logical_not, oxmx_core::logical_not;
    "bitwise_invert" => u_bitwise_invert, oxmx_core::bitwise_invert;
    "real" => u_real, oxmx_core::real;
    "imag" => u_imag, oxmx_core::imag;
    "stop_gradient" => u_stop_gradient, oxmx_core::stop_gradient;
    "positive" => u_positive, positive_;
    "trunc" => u_trunc, trunc_;
    "matrix_transpose" => u_matrix_transpose, matrix_transpose_;
    "atleast_1d_one" => u_atleast_1d, oxmx_core::atleast_1d;
    "atleast_2d_one" => u_atleast_2d, oxmx_core::atleast_2d;
    "atleast_3d_one" => u_atleast_3d, oxmx_core::atleast_3d;
}

/// MLX's bitwise functions (not the operators) raise RuntimeError on floating-point inputs.
fn bitwise_guard(name: &str, x: &Operand, y: &Operand) -> PyResult<()> {
    if !(name.starts_with("bitwise") || name.ends_with("shift")) {
        return Ok(());
    }
    let dt = |o: &Operand| match o {
        Operand::Array(a) => a.dtype(),
        Operand::Scalar(s) => s.default_dtype(),
    };
    let (a, b) = (dt(x), dt(y));
    if a.is_inexact() || b.is_inexact() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "[{name}] Only allowed on integer or boolean types but got types {} and {}.",
            a.name(),
            b.name()
        )));
    }
    Ok(())
}

macro_rules! binary {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, b, /, *, stream=None))]
            fn $rs(a: Obj, b: Obj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                let (x, y) = (to_operand(a)?, to_operand(b)?);
                fits(&x, &y)?;
                bitwise_guard($py, &x, &y)?;
                ok($f(x, y))
            }
        )*
        register!(register_binary: $($rs),*);
    };
}

binary! {
    "add" => b_add, oxmx_core::add;
    "subtract" => b_subtract, oxmx_core::subtract;
    "multiply" => b_multiply, oxmx_core::multiply;
    "divide" => b_divide, oxmx_core::divide;
    "floor_divide" => b_floor_divide, oxmx_core::floor_divide;
    "remainder" => b_remainder, oxmx_core::remainder;
    "power" => b_power, oxmx_core::power;
    "maximum" => b_maximum, oxmx_core::maximum;
    "minimum" => b_minimum, oxmx_core::minimum;
    "equal" => b_equal, oxmx_core::equal;
    "not_equal" => b_not_equal, oxmx_core::not_equal;
    "less" => b_less, oxmx_core::less;
    "less_equal" => b_less_equal, oxmx_core::less_equal;
    "greater" => b_greater, oxmx_core::greater;
    "greater_equal" => b_greater_equal, oxmx_core::greater_equal;
    "arctan2" => b_arctan2, oxmx_core::arctan2;
    "logaddexp" => b_logaddexp, oxmx_core::logaddexp;
    "bitwise_and" => b_bitwise_and, oxmx_core::bitwise_and;
    "bitwise_or" => b_bitwise_or, oxmx_core::bitwise_or;
    "bitwise_xor" => b_bitwise_xor, oxmx_core::bitwise_xor;
    "left_shift" => b_left_shift, oxmx_core::left_shift;
    "right_shift" => b_right_shift, oxmx_core::right_shift;
    "logical_and" => b_logical_and, oxmx_core::logical_and;
    "logical_or" => b_logical_or, oxmx_core::logical_or;
    "logical_xor" => b_logical_xor, logical_xor_;
}

fn positive_(a: &Array) -> Array {
    a.clone()
}
/// Rounds towards zero (integers unchanged).
fn trunc_(a: &Array) -> Array {
    if !a.dtype().is_float() {
        return a.clone();
    }
    oxmx_core::where_(oxmx_core::less(a, 0.0), oxmx_core::ceil(a), oxmx_core::floor(a))
}
fn matrix_transpose_(a: &Array) -> Array {
    oxmx_core::swapaxes(a, -1, -2)
}
fn logical_xor_(a: Operand, b: Operand) -> Array {
    let (x, y) = (oxmx_core::to_array(a, None).astype(Dtype::Bool), oxmx_core::to_array(b, None).astype(Dtype::Bool));
    oxmx_core::not_equal(x, y)
}

macro_rules! binary_arrays {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, b, /, *, stream=None))]
            fn $rs(a: Obj, b: Obj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, &arr(b)?))
            }
        )*
        register!(register_binary_arrays: $($rs),*);
    };
}

binary_arrays! {
    "matmul" => ba_matmul, oxmx_core::matmul;
    "inner" => ba_inner, oxmx_core::inner;
    "outer" => ba_outer, oxmx_core::outer;
    "kron" => ba_kron, oxmx_core::kron;
}

macro_rules! reduction {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, axis=None, keepdims=false, *, stream=None))]
            fn $rs(a: Obj, axis: OptObj, keepdims: bool, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, axes_arg(axis)?, keepdims))
            }
        )*
        register!(register_reductions: $($rs),*);
    };
}

reduction! {
    "sum" => r_sum, oxmx_core::sum;
    "prod" => r_prod, oxmx_core::prod;
    "max" => r_max, oxmx_core::max;
    "min" => r_min, oxmx_core::min;
    "all" => r_all, oxmx_core::all;
    "any" => r_any, oxmx_core::any;
    "mean" => r_mean, oxmx_core::mean;
    "logsumexp" => r_logsumexp, oxmx_core::logsumexp;
    "median" => r_median, oxmx_core::median;
}

macro_rules! var_like {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, axis=None, keepdims=false, ddof=0, *, stream=None))]
            fn $rs(a: Obj, axis: OptObj, keepdims: bool, ddof: usize, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, axes_arg(axis)?, keepdims, ddof))
            }
        )*
        register!(register_var: $($rs),*);
    };
}
var_like! {
    "var" => v_var, oxmx_core::var;
    "std" => v_std, oxmx_core::std;
}

macro_rules! arg_reduction {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, axis=None, keepdims=false, *, stream=None))]
            fn $rs(a: Obj, axis: Option<isize>, keepdims: bool, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, axis, keepdims))
            }
        )*
        register!(register_arg_reductions: $($rs),*);
    };
}
arg_reduction! {
    "argmax" => ar_argmax, oxmx_core::argmax;
    "argmin" => ar_argmin, oxmx_core::argmin;
}

macro_rules! scan {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, axis=None, *, reverse=false, inclusive=true, stream=None))]
            fn $rs(a: Obj, axis: Option<isize>, reverse: bool, inclusive: bool, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, axis, reverse, inclusive))
            }
        )*
        register!(register_scans: $($rs),*);
    };
}
scan! {
    "cumsum" => s_cumsum, oxmx_core::cumsum;
    "cumprod" => s_cumprod, oxmx_core::cumprod;
    "cummax" => s_cummax, oxmx_core::cummax;
    "cummin" => s_cummin, oxmx_core::cummin;
    "logcumsumexp" => s_logcumsumexp, oxmx_core::logcumsumexp;
}

macro_rules! sort_like {
    ($($py:literal => $rs:ident, $f:path;)*) => {
        $(
            #[pyfunction(name = $py)]
            #[pyo3(signature = (a, /, axis=-1, *, stream=None))]
            fn $rs(a: Obj, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok($f(&arr(a)?, axis))
            }
        )*
        register!(register_sorts: $($rs),*);
    };
}
sort_like! {
    "sort" => so_sort, oxmx_core::sort;
    "argsort" => so_argsort, oxmx_core::argsort;
}

#[pyfunction]
#[pyo3(signature = (a, /, kth, axis=-1, *, stream=None))]
fn partition(a: Obj, kth: isize, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::partition(&arr(a)?, kth, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, kth, axis=-1, *, stream=None))]
fn argpartition(a: Obj, kth: isize, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::argpartition(&arr(a)?, kth, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, k, axis=-1, *, stream=None))]
fn topk(a: Obj, k: usize, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::topk(&arr(a)?, k, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, axis=None, *, precise=false, stream=None))]
fn softmax(a: Obj, axis: OptObj, precise: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::softmax(&arr(a)?, axes_arg(axis)?, precise))
}

// ---- creation

fn dtype_or(d: OptObj, default: Dtype) -> PyResult<Dtype> {
    Ok(dtype_arg(d)?.unwrap_or(default))
}

#[pyfunction]
#[pyo3(signature = (shape, dtype=None, *, stream=None))]
fn zeros(shape: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::zeros(&shape_arg(shape)?, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (shape, dtype=None, *, stream=None))]
fn ones(shape: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::ones(&shape_arg(shape)?, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (shape, vals, dtype=None, *, stream=None))]
fn full(shape: Obj, vals: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let v = to_array(vals, dtype_arg(dtype)?)?;
    ok(oxmx_core::full(&shape_arg(shape)?, v, None))
}

fn is_float_obj(o: OptObj) -> PyResult<bool> {
    Ok(match o {
        Some(o) if !o.is_none() => matches!(py_scalar(o)?, Some(Scalar::Float(_))),
        _ => false,
    })
}
fn f64_of(o: Obj) -> PyResult<f64> {
    match py_scalar(o)? {
        Some(s) => Ok(s.as_f64()),
        None => Err(PyTypeError::new_err("arange expects Python numbers")),
    }
}

/// `arange(stop)`, `arange(start, stop)`, `arange(start, stop, step)`; int32 unless a float is given.
#[pyfunction]
#[pyo3(signature = (start, stop=None, step=None, dtype=None, *, stream=None))]
fn arange(start: Obj, stop: OptObj, step: OptObj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let any_float = is_float_obj(Some(start))? || is_float_obj(stop)? || is_float_obj(step)?;
    let (b, e) = match stop {
        Some(s) if !s.is_none() => (f64_of(start)?, f64_of(s)?),
        _ => (0.0, f64_of(start)?),
    };
    let st = match step {
        Some(s) if !s.is_none() => f64_of(s)?,
        _ => 1.0,
    };
    let dt = dtype_or(dtype, if any_float { Dtype::Float32 } else { Dtype::Int32 })?;
    ok(oxmx_core::arange(b, e, st, Some(dt)))
}
#[pyfunction]
#[pyo3(signature = (start, stop, num=50, dtype=None, stream=None))]
fn linspace(start: f64, stop: f64, num: usize, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::linspace(start, stop, num, Some(dtype_or(dtype, Dtype::Float32)?)))
}
#[pyfunction]
#[pyo3(signature = (n, m=None, k=0, dtype=None, *, stream=None))]
fn eye(n: usize, m: Option<usize>, k: isize, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::eye(n, m, k, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (n, dtype=None, *, stream=None))]
fn identity(n: usize, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::identity(n, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (n, m=None, k=0, dtype=None, *, stream=None))]
fn tri(n: usize, m: Option<usize>, k: isize, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::tri(n, m, k, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (x, k=0, *, stream=None))]
fn tril(x: Obj, k: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::tril(&arr(x)?, k))
}
#[pyfunction]
#[pyo3(signature = (x, k=0, *, stream=None))]
fn triu(x: Obj, k: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::triu(&arr(x)?, k))
}
#[pyfunction]
#[pyo3(signature = (*arrays, sparse=false, indexing="xy", stream=None))]
fn meshgrid(arrays: &Bound<'_, PyTuple>, sparse: bool, indexing: &str, stream: OptObj) -> PyResult<Vec<PyArray>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let v: Vec<Array> = arrays.iter().map(|o| arr(&o)).collect::<PyResult<_>>()?;
    ok_vec(oxmx_core::meshgrid(&v, sparse, indexing))
}

// ---- shape

#[pyfunction]
#[pyo3(signature = (a, /, shape, *, stream=None))]
fn reshape(a: Obj, shape: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::reshape(&arr(a)?, &isize_list(shape)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, start_axis=0, end_axis=-1, *, stream=None))]
fn flatten(a: Obj, start_axis: isize, end_axis: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::flatten(&arr(a)?, start_axis, end_axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, axis, shape, *, stream=None))]
fn unflatten(a: Obj, axis: isize, shape: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::unflatten(&arr(a)?, axis, &isize_list(shape)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, axis=None, *, stream=None))]
fn squeeze(a: Obj, axis: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    match axis {
        Some(ax) if !ax.is_none() => {
            let axes = isize_list(ax)?;
            if axes.is_empty() {
                return ok(x);
            }
            ok(oxmx_core::squeeze(&x, &axes))
        }
        _ => ok(oxmx_core::squeeze(&x, &[])),
    }
}
#[pyfunction]
#[pyo3(signature = (a, /, axis, *, stream=None))]
fn expand_dims(a: Obj, axis: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::expand_dims(&arr(a)?, &isize_list(axis)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, axes=None, *, stream=None))]
fn transpose(a: Obj, axes: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let axes = match axes {
        Some(ax) if !ax.is_none() => isize_list(ax)?,
        _ => (0..x.ndim() as isize).rev().collect(),
    };
    ok(oxmx_core::transpose(&x, &axes))
}
#[pyfunction]
#[pyo3(signature = (a, /, axis1, axis2, *, stream=None))]
fn swapaxes(a: Obj, axis1: isize, axis2: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::swapaxes(&arr(a)?, axis1, axis2))
}
#[pyfunction]
#[pyo3(signature = (a, /, source, destination, *, stream=None))]
fn moveaxis(a: Obj, source: isize, destination: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::moveaxis(&arr(a)?, source, destination))
}
#[pyfunction]
#[pyo3(signature = (a, /, shape, *, stream=None))]
fn broadcast_to(a: Obj, shape: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = match to_operand(a)? {
        Operand::Array(x) => x,
        Operand::Scalar(s) => oxmx_core::scalar_array(s, s.default_dtype()),
    };
    ok(oxmx_core::broadcast_to(&x, &shape_arg(shape)?))
}
#[pyfunction]
#[pyo3(signature = (*arrays, stream=None))]
fn broadcast_arrays(arrays: &Bound<'_, PyTuple>, stream: OptObj) -> PyResult<Vec<PyArray>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let v: Vec<Array> = arrays.iter().map(|o| arr(&o)).collect::<PyResult<_>>()?;
    ok_vec(oxmx_core::broadcast_arrays(&v))
}
#[pyfunction]
#[pyo3(signature = (arrays, axis=Some(0), *, stream=None))]
fn concatenate(arrays: Obj, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let v = array_list(arrays)?;
    match axis {
        Some(ax) => ok(oxmx_core::concatenate(&v, ax)),
        None => {
            let flat: Vec<Array> = v.iter().map(|a| oxmx_core::reshape(a, &[-1])).collect();
            ok(oxmx_core::concatenate(&flat, 0))
        }
    }
}
#[pyfunction]
#[pyo3(signature = (arrays, axis=0, *, stream=None))]
fn stack(arrays: Obj, axis: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::stack(&array_list(arrays)?, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, indices_or_sections, axis=0, *, stream=None))]
fn split(a: Obj, indices_or_sections: Obj, axis: isize, stream: OptObj) -> PyResult<Vec<PyArray>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    if indices_or_sections.is_instance_of::<pyo3::types::PyInt>() {
        let n: usize = indices_or_sections.extract()?;
        return ok_vec(oxmx_core::split_equal(&x, n, axis));
    }
    ok_vec(oxmx_core::split_at(&x, &isize_list(indices_or_sections)?, axis))
}

fn pad_widths(pw: Obj, ndim: usize) -> PyResult<Vec<(usize, usize)>> {
    let pair = |o: &Bound<'_, PyAny>| -> PyResult<(usize, usize)> {
        let v = shape_arg(o)?;
        match v.as_slice() {
            [x] => Ok((*x, *x)),
            [l, h] => Ok((*l, *h)),
            _ => Err(PyValueError::new_err("[pad] pad_width must be an int or pairs of ints")),
        }
    };
    if pw.is_instance_of::<pyo3::types::PyInt>() {
        let w = pair(pw)?;
        return Ok(vec![w; ndim]);
    }
    let items: Vec<Bound<'_, PyAny>> = pw.try_iter()?.collect::<PyResult<_>>()?;
    if items.iter().all(|i| i.is_instance_of::<pyo3::types::PyInt>()) {
        let w = pair(pw)?;
        return Ok(vec![w; ndim]);
    }
    let ws: Vec<(usize, usize)> = items.iter().map(pair).collect::<PyResult<_>>()?;
    if ws.len() == 1 {
        return Ok(vec![ws[0]; ndim]);
    }
    if ws.len() != ndim {
        return Err(PyValueError::new_err(format!("[pad] Invalid number of padding sizes passed to pad with axes of size {ndim}")));
    }
    Ok(ws)
}
#[pyfunction]
#[pyo3(signature = (a, pad_width, mode="constant", constant_values=None, *, stream=None))]
fn pad(a: Obj, pad_width: Obj, mode: &str, constant_values: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let w = pad_widths(pad_width, x.ndim())?;
    let m = match mode {
        "constant" => oxmx_core::PadMode::Constant(match constant_values {
            Some(v) if !v.is_none() => to_operand(v)?,
            _ => Operand::Scalar(Scalar::Int(0)),
        }),
        "edge" => oxmx_core::PadMode::Edge,
        "reflect" => oxmx_core::PadMode::Reflect,
        "symmetric" => oxmx_core::PadMode::Symmetric,
        other => return Err(PyValueError::new_err(format!("Invalid padding mode {other} passed to pad"))),
    };
    ok(oxmx_core::pad(&x, &w, m))
}
#[pyfunction]
#[pyo3(signature = (array, repeats, axis=None, *, stream=None))]
fn repeat(array: Obj, repeats: usize, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::repeat(&arr(array)?, repeats, axis))
}
#[pyfunction]
#[pyo3(signature = (a, reps, /, *, stream=None))]
fn tile(a: Obj, reps: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::tile(&arr(a)?, &shape_arg(reps)?))
}
#[pyfunction]
#[pyo3(signature = (a, shift, axis=None, *, stream=None))]
fn roll(a: Obj, shift: Obj, axis: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let mut x = arr(a)?;
    let shifts = int_list(shift)?;
    match axis {
        Some(ax) if !ax.is_none() => {
            let axes = isize_list(ax)?;
            let shifts = if shifts.len() == 1 { vec![shifts[0]; axes.len()] } else { shifts };
            if shifts.len() != axes.len() {
                return Err(PyValueError::new_err("[roll] shift and axis must have the same number of elements"));
            }
            for (s, ax) in shifts.iter().zip(&axes) {
                x = oxmx_core::roll(&x, *s as isize, Some(*ax));
            }
            ok(x)
        }
        _ => {
            let total: i64 = shifts.iter().sum();
            ok(oxmx_core::roll(&x, total as isize, None))
        }
    }
}
#[pyfunction]
#[pyo3(signature = (a, /, k=0, *, stream=None))]
fn diag(a: Obj, k: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::diag(&arr(a)?, k))
}
#[pyfunction]
#[pyo3(signature = (a, offset=0, axis1=0, axis2=1, stream=None))]
fn diagonal(a: Obj, offset: isize, axis1: isize, axis2: isize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::diagonal(&arr(a)?, offset, axis1, axis2))
}
#[pyfunction]
#[pyo3(signature = (a, /, offset=0, axis1=0, axis2=1, dtype=None, *, stream=None))]
fn trace(a: Obj, offset: isize, axis1: isize, axis2: isize, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::trace(&arr(a)?, offset, axis1, axis2, dtype_arg(dtype)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, shape=None, strides=None, offset=0, *, stream=None))]
fn as_strided(a: Obj, shape: OptObj, strides: OptObj, offset: usize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let shape = opt_shape(shape)?.unwrap_or_else(|| x.shape().to_vec());
    let strides: Vec<isize> = match strides {
        Some(s) if !s.is_none() => isize_list(s)?,
        _ => {
            let mut st = vec![1isize; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                st[i] = st[i + 1] * shape[i + 1] as isize;
            }
            st
        }
    };
    ok(oxmx_core::as_strided(&x, &shape, &strides, offset))
}
#[pyfunction]
#[pyo3(signature = (a, dtype, *, stream=None))]
fn view(a: Obj, dtype: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::view(&arr(a)?, crate::convert::dtype_req(dtype)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, allow_col_major=false, *, stream=None))]
fn contiguous(a: Obj, allow_col_major: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let _ = allow_col_major;
    ok(oxmx_core::contiguous(&arr(a)?))
}

// ---- indexing

#[pyfunction]
#[pyo3(signature = (a, /, indices, axis=None, *, stream=None))]
fn take(a: Obj, indices: Obj, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::take(&arr(a)?, &arr(indices)?, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, indices, axis=None, *, stream=None))]
fn take_along_axis(a: Obj, indices: Obj, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::take_along_axis(&arr(a)?, &arr(indices)?, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, indices, values, axis=None, *, stream=None))]
fn put_along_axis(a: Obj, indices: Obj, values: Obj, axis: Option<isize>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let v = to_array(values, Some(x.dtype()))?;
    ok(oxmx_core::put_along_axis(&x, &arr(indices)?, &v, axis))
}
#[pyfunction(name = "slice")]
#[pyo3(signature = (a, start_indices, axes, slice_size, *, stream=None))]
fn slice_(a: Obj, start_indices: Obj, axes: Obj, slice_size: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::slice_dynamic(&arr(a)?, &arr(start_indices)?, &isize_list(axes)?, &shape_arg(slice_size)?))
}
#[pyfunction]
#[pyo3(signature = (a, update, start_indices, axes, *, stream=None))]
fn slice_update(a: Obj, update: Obj, start_indices: Obj, axes: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    ok(oxmx_core::slice_update_dynamic(&x, &to_array(update, Some(x.dtype()))?, &arr(start_indices)?, &isize_list(axes)?))
}

// ---- element-wise with options

#[pyfunction(name = "where")]
#[pyo3(signature = (condition, x, y, /, *, stream=None))]
fn where_(condition: Obj, x: Obj, y: Obj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::where_(to_operand(condition)?, to_operand(x)?, to_operand(y)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, a_min, a_max, *, stream=None))]
fn clip(a: Obj, a_min: OptObj, a_max: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let bound = |o: OptObj| -> PyResult<Option<Operand>> {
        match o {
            Some(v) if !v.is_none() => Ok(Some(to_operand(v)?)),
            _ => Ok(None),
        }
    };
    let (lo, hi) = (bound(a_min)?, bound(a_max)?);
    if lo.is_none() && hi.is_none() {
        return Err(PyValueError::new_err("At most one of a_min and a_max may be None"));
    }
    ok(oxmx_core::clip(&arr(a)?, lo, hi))
}
#[pyfunction]
#[pyo3(signature = (a, /, decimals=0, *, stream=None))]
fn round(a: Obj, decimals: i32, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::round(&arr(a)?, decimals))
}
#[pyfunction]
#[pyo3(signature = (a, nan=0.0, posinf=None, neginf=None, *, stream=None))]
fn nan_to_num(a: Obj, nan: f64, posinf: Option<f64>, neginf: Option<f64>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::nan_to_num(&arr(a)?, nan, posinf, neginf))
}
#[pyfunction]
#[pyo3(signature = (a, b, /, rtol=1e-5, atol=1e-8, *, equal_nan=false, stream=None))]
fn isclose(a: Obj, b: Obj, rtol: f64, atol: f64, equal_nan: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::isclose(&arr(a)?, &arr(b)?, rtol, atol, equal_nan))
}
#[pyfunction]
#[pyo3(signature = (a, b, /, rtol=1e-5, atol=1e-8, *, equal_nan=false, stream=None))]
fn allclose(a: Obj, b: Obj, rtol: f64, atol: f64, equal_nan: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::allclose(&arr(a)?, &arr(b)?, rtol, atol, equal_nan))
}
#[pyfunction]
#[pyo3(signature = (a, b, equal_nan=false, *, stream=None))]
fn array_equal(a: Obj, b: Obj, equal_nan: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::array_equal(&arr(a)?, &arr(b)?, equal_nan))
}
#[pyfunction(name = "divmod")]
#[pyo3(signature = (a, b, /, *, stream=None))]
fn divmod_(a: Obj, b: Obj, stream: OptObj) -> PyResult<(PyArray, PyArray)> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (q, r) = oxmx_core::divmod(to_operand(a)?, to_operand(b)?);
    Ok((ok(q)?, ok(r)?))
}

// ---- linear algebra-ish ops in the top namespace

#[pyfunction]
#[pyo3(signature = (c, a, b, /, alpha=1.0, beta=1.0, *, stream=None))]
fn addmm(c: Obj, a: Obj, b: Obj, alpha: f64, beta: f64, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::addmm(&arr(c)?, &arr(a)?, &arr(b)?, alpha, beta))
}
#[pyfunction]
#[pyo3(signature = (a, b, /, axes=None, *, stream=None))]
fn tensordot(a: Obj, b: Obj, axes: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (x, y) = (arr(a)?, arr(b)?);
    match axes {
        None => ok(oxmx_core::tensordot_n(&x, &y, 2)),
        Some(ax) if ax.is_instance_of::<pyo3::types::PyInt>() => ok(oxmx_core::tensordot_n(&x, &y, ax.extract()?)),
        Some(ax) => {
            let parts: Vec<Bound<'_, PyAny>> = ax.try_iter()?.collect::<PyResult<_>>()?;
            if parts.len() != 2 {
                return Err(PyValueError::new_err("[tensordot] axes must be an int or a pair of axis lists"));
            }
            ok(oxmx_core::tensordot(&x, &y, &isize_list(&parts[0])?, &isize_list(&parts[1])?))
        }
    }
}
#[pyfunction]
#[pyo3(signature = (subscripts, *operands, stream=None))]
fn einsum(subscripts: &str, operands: &Bound<'_, PyTuple>, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let v: Vec<Array> = operands.iter().map(|o| arr(&o)).collect::<PyResult<_>>()?;
    ok(oxmx_core::einsum(subscripts, &v))
}
#[pyfunction]
#[pyo3(signature = (subscripts, *operands))]
fn einsum_path(subscripts: &str, operands: &Bound<'_, PyTuple>) -> PyResult<(Vec<(usize, usize)>, String)> {
    let v: Vec<Array> = operands.iter().map(|o| arr(&o)).collect::<PyResult<_>>()?;
    oxmx_core::einsum_path(subscripts, &v).py()
}

fn tuple_n<const N: usize>(o: Obj) -> PyResult<[usize; N]> {
    let v = shape_arg(o)?;
    if v.len() == 1 {
        return Ok([v[0]; N]);
    }
    v.try_into().map_err(|_| PyValueError::new_err(format!("expected an int or a tuple of {N} ints")))
}

/// A per-dimension conv argument (`None` → `default` on every axis).
pub(crate) fn tuple_or<const N: usize>(o: OptObj, default: usize) -> PyResult<[usize; N]> {
    match o {
        Some(o) if !o.is_none() => tuple_n::<N>(o),
        _ => Ok([default; N]),
    }
}

#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=1, padding=0, dilation=1, groups=1, *, stream=None))]
fn conv1d(input: Obj, weight: Obj, stride: usize, padding: usize, dilation: usize, groups: usize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::conv1d(&arr(input)?, &arr(weight)?, stride, padding, dilation, groups))
}
#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=None, padding=None, dilation=None, groups=1, *, stream=None))]
fn conv2d(input: Obj, weight: Obj, stride: OptObj, padding: OptObj, dilation: OptObj, groups: usize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let t = tuple_or::<2>;
    ok(oxmx_core::conv2d(&arr(input)?, &arr(weight)?, t(stride, 1)?, t(padding, 0)?, t(dilation, 1)?, groups))
}
#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=None, padding=None, dilation=None, groups=1, *, stream=None))]
fn conv3d(input: Obj, weight: Obj, stride: OptObj, padding: OptObj, dilation: OptObj, groups: usize, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let t = tuple_or::<3>;
    ok(oxmx_core::conv3d(&arr(input)?, &arr(weight)?, t(stride, 1)?, t(padding, 0)?, t(dilation, 1)?, groups))
}
#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=1, padding=0, dilation=1, output_padding=0, groups=1, *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn conv_transpose1d(
    input: Obj,
    weight: Obj,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
    groups: usize,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::conv_transpose1d(&arr(input)?, &arr(weight)?, stride, padding, dilation, output_padding, groups))
}

// ---- quantization

#[pyfunction]
#[pyo3(signature = (w, /, group_size=None, bits=None, mode="affine", *, stream=None))]
fn quantize(w: Obj, group_size: Option<usize>, bits: Option<usize>, mode: &str, stream: OptObj) -> PyResult<Vec<PyArray>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (q, s, b) = oxmx_core::quantize(&arr(w)?, group_size, bits, mode);
    let mut out = vec![ok(q)?, ok(s)?];
    if let Some(b) = b {
        out.push(ok(b)?);
    }
    Ok(out)
}
#[pyfunction]
#[pyo3(signature = (w, /, scales, biases=None, group_size=None, bits=None, mode="affine", dtype=None, *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn dequantize(
    w: Obj,
    scales: Obj,
    biases: OptObj,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
    dtype: OptObj,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let b = opt_array(biases)?;
    ok(oxmx_core::dequantize(&arr(w)?, &arr(scales)?, b.as_ref(), group_size, bits, mode, dtype_arg(dtype)?))
}
#[pyfunction]
#[pyo3(signature = (x, w, /, scales, biases=None, transpose=true, group_size=None, bits=None, mode="affine", *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn quantized_matmul(
    x: Obj,
    w: Obj,
    scales: Obj,
    biases: OptObj,
    transpose: bool,
    group_size: Option<usize>,
    bits: Option<usize>,
    mode: &str,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let b = opt_array(biases)?;
    ok(oxmx_core::quantized_matmul(&arr(x)?, &arr(w)?, &arr(scales)?, b.as_ref(), transpose, group_size, bits, mode))
}

// ---- evaluation and memory

/// The arrays in a Python tree (arrays, lists, tuples, dicts; other leaves are ignored).
pub fn collect_arrays(obj: &Bound<'_, PyAny>, out: &mut Vec<Array>) -> PyResult<()> {
    if let Ok(a) = obj.cast::<PyArray>() {
        out.push(a.borrow().a.clone());
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        for x in obj.try_iter()? {
            collect_arrays(&x?, out)?;
        }
    } else if let Ok(d) = obj.cast::<PyDict>() {
        for (_, v) in d.iter() {
            collect_arrays(&v, out)?;
        }
    }
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (*args))]
fn eval(py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let mut v = vec![];
    collect_arrays(args.as_any(), &mut v)?;
    let refs: Vec<Array> = v;
    py.detach(|| oxmx_core::eval(&refs.iter().collect::<Vec<_>>())).py()
}
#[pyfunction]
#[pyo3(signature = (*args))]
fn async_eval(args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let mut v = vec![];
    collect_arrays(args.as_any(), &mut v)?;
    oxmx_core::async_eval(&v.iter().collect::<Vec<_>>());
    Ok(())
}

#[pyfunction]
fn get_active_memory() -> usize {
    oxmx_core::memory::active_memory()
}
#[pyfunction]
fn get_peak_memory() -> usize {
    oxmx_core::memory::peak_memory()
}
#[pyfunction]
fn reset_peak_memory() {
    oxmx_core::memory::reset_peak_memory()
}
#[pyfunction]
fn get_cache_memory() -> usize {
    oxmx_core::memory::cache_memory()
}
#[pyfunction]
fn clear_cache() {
    oxmx_core::memory::clear_cache()
}
#[pyfunction]
fn set_memory_limit(limit: usize) -> usize {
    oxmx_core::memory::set_memory_limit(limit)
}
#[pyfunction]
fn set_cache_limit(limit: usize) -> usize {
    oxmx_core::memory::set_cache_limit(limit)
}

#[pyfunction]
#[pyo3(signature = (a, /, dtype=None, *, stream=None))]
fn zeros_like(a: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    ok(oxmx_core::zeros(x.shape(), dtype_or(dtype, x.dtype())?))
}
#[pyfunction]
#[pyo3(signature = (a, /, dtype=None, *, stream=None))]
fn ones_like(a: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    ok(oxmx_core::ones(x.shape(), dtype_or(dtype, x.dtype())?))
}
#[pyfunction]
#[pyo3(signature = (a, vals, dtype=None, *, stream=None))]
fn full_like(a: Obj, vals: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let v = to_array(vals, Some(dtype_or(dtype, x.dtype())?))?;
    ok(oxmx_core::broadcast_to(&v, x.shape()))
}
#[pyfunction]
#[pyo3(signature = (shape, dtype=None, *, stream=None))]
fn empty(shape: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok(oxmx_core::zeros(&shape_arg(shape)?, dtype_or(dtype, Dtype::Float32)?))
}
#[pyfunction]
#[pyo3(signature = (a, /, dtype=None, *, stream=None))]
fn empty_like(a: Obj, dtype: OptObj, stream: OptObj) -> PyResult<PyArray> {
    zeros_like(a, dtype, stream)
}
#[pyfunction]
#[pyo3(signature = (a, /, axis=None, *, stream=None))]
fn flip(a: Obj, axis: OptObj, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    let axes = match axis {
        Some(ax) if !ax.is_none() => isize_list(ax)?,
        _ => (0..x.ndim() as isize).collect(),
    };
    ok(oxmx_core::flip(&x, &axes))
}
#[pyfunction]
#[pyo3(signature = (x, /, *, axis=0, stream=None))]
fn unstack(x: Obj, axis: isize, stream: OptObj) -> PyResult<Vec<PyArray>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    ok_vec(oxmx_core::unstack(&arr(x)?, axis))
}
#[pyfunction]
#[pyo3(signature = (a, /, *, axis=None, keepdims=false, stream=None))]
fn count_nonzero(a: Obj, axis: OptObj, keepdims: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let x = arr(a)?;
    ok(oxmx_core::sum(&oxmx_core::not_equal(&x, 0), axes_arg(axis)?, keepdims))
}
#[pyfunction]
#[pyo3(signature = (*shapes))]
fn broadcast_shapes(shapes: &Bound<'_, PyTuple>) -> PyResult<Vec<usize>> {
    let mut out: Vec<usize> = vec![];
    for s in shapes.iter() {
        out = oxmx_core::shape::broadcast_shapes(&out, &shape_arg(&s)?).py()?;
    }
    Ok(out)
}
#[pyfunction]
#[pyo3(signature = (a, b, /, lhs_indices=None, rhs_indices=None, *, sorted_indices=false, stream=None))]
fn gather_mm(a: Obj, b: Obj, lhs_indices: OptObj, rhs_indices: OptObj, sorted_indices: bool, stream: OptObj) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (l, r) = (opt_array(lhs_indices)?, opt_array(rhs_indices)?);
    ok(oxmx_core::gather_mm(&arr(a)?, &arr(b)?, l.as_ref(), r.as_ref(), sorted_indices))
}
#[pyfunction]
#[pyo3(signature = (a, b, /, block_size=64, mask_out=None, mask_lhs=None, mask_rhs=None, *, stream=None))]
fn block_masked_mm(
    a: Obj,
    b: Obj,
    block_size: usize,
    mask_out: OptObj,
    mask_lhs: OptObj,
    mask_rhs: OptObj,
    stream: OptObj,
) -> PyResult<PyArray> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let (mo, ml, mr) = (opt_array(mask_out)?, opt_array(mask_lhs)?, opt_array(mask_rhs)?);
    ok(oxmx_core::block_masked_mm(&arr(a)?, &arr(b)?, block_size, mo.as_ref(), ml.as_ref(), mr.as_ref()))
}
#[pyfunction]
#[pyo3(signature = (input, weight, /, stride=None, padding=None, dilation=None, output_padding=None, groups=1, *, stream=None))]
#[allow(clippy::too_many_arguments)]
fn conv_transpose2d(
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
    let t = tuple_or::<2>;
    ok(oxmx_core::conv_transpose2d(
        &arr(input)?,
        &arr(weight)?,
        t(stride, 1)?,
        t(padding, 0)?,
        t(dilation, 1)?,
        t(output_padding, 0)?,
        groups,
    ))
}

// ---- files

fn path_of(file: Obj) -> PyResult<String> {
    let os = file.py().import("os")?;
    os.call_method1("fspath", (file,))
        .and_then(|p| p.extract::<String>())
        .map_err(|_| PyTypeError::new_err("file must be a str, an os.PathLike or an open binary file"))
}

/// Where a save or load goes: a path, or an open binary file object (MLX accepts both).
enum Target<'py> {
    Path(String),
    File(Bound<'py, PyAny>),
}

fn target_of<'py>(file: &Bound<'py, PyAny>, method: &str) -> PyResult<Target<'py>> {
    if let Ok(p) = path_of(file) {
        return Ok(Target::Path(p));
    }
    if file.hasattr(method)? {
        return Ok(Target::File(file.clone()));
    }
    Err(PyTypeError::new_err(format!(
        "file must be a str, an os.PathLike or a binary file object with a {method}() method, got {}",
        file.get_type().name().map(|n| n.to_string()).unwrap_or_default()
    )))
}

/// A fresh temporary path ending in `.ext` (file objects go through one: the writers and
/// readers work on paths).
struct TempPath(std::path::PathBuf);

impl TempPath {
    fn new(ext: &str) -> TempPath {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("oxmx-py-{}-{n}.{ext}", std::process::id())))
    }
    fn as_str(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Saves through `write(path)`: to the path itself, or to a temporary file copied into the
/// file object.
fn save_to(file: Obj, ext: &str, write: impl FnOnce(String) -> oxmx_core::Result<()>) -> PyResult<()> {
    match target_of(file, "write")? {
        Target::Path(p) => write(p).py(),
        Target::File(f) => {
            let tmp = TempPath::new(ext);
            write(tmp.as_str()).py()?;
            let bytes =
                std::fs::read(&tmp.0).map_err(|e| PyRuntimeError::new_err(format!("[save] cannot read back {}: {e}", tmp.as_str())))?;
            f.call_method1("write", (pyo3::types::PyBytes::new(f.py(), &bytes),))?;
            Ok(())
        }
    }
}
fn named_arrays(d: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Array)>> {
    d.iter().map(|(k, v)| Ok((k.extract::<String>()?, arr(&v)?))).collect()
}
#[pyfunction]
fn save(file: Obj, arr: Obj) -> PyResult<()> {
    let a = to_array(arr, None)?;
    save_to(file, "npy", |p| oxmx_core::io::save(p, &a))
}
#[pyfunction]
#[pyo3(signature = (file, *args, **kwargs))]
fn savez(file: Obj, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    let items = npz_items(args, kwargs)?;
    save_to(file, "npz", |p| oxmx_core::io::savez(p, &items))
}
#[pyfunction]
#[pyo3(signature = (file, *args, **kwargs))]
fn savez_compressed(file: Obj, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    let items = npz_items(args, kwargs)?;
    save_to(file, "npz", |p| oxmx_core::io::savez_compressed(p, &items))
}
fn npz_items(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Array)>> {
    let mut v: Vec<(String, Array)> = args.iter().enumerate().map(|(i, a)| Ok((format!("arr_{i}"), arr(&a)?))).collect::<PyResult<_>>()?;
    if let Some(k) = kwargs {
        v.extend(named_arrays(k)?);
    }
    Ok(v)
}
#[pyfunction]
#[pyo3(signature = (file, arrays, metadata=None))]
fn save_safetensors(file: Obj, arrays: &Bound<'_, PyDict>, metadata: Option<std::collections::BTreeMap<String, String>>) -> PyResult<()> {
    let named = named_arrays(arrays)?;
    save_to(file, "safetensors", |mut path| {
        if !path.ends_with(".safetensors") {
            path.push_str(".safetensors");
        }
        oxmx_core::io::save_safetensors_file(path, &named, metadata.as_ref())
    })
}

/// The format of a file object's bytes: `format=`, else the file's name, else its magic bytes.
fn file_format(f: &Bound<'_, PyAny>, format: Option<&str>, bytes: &[u8]) -> PyResult<String> {
    if let Some(fmt) = format {
        return Ok(fmt.to_string());
    }
    if let Ok(name) = f.getattr("name").and_then(|n| n.extract::<String>()) {
        if let Some((_, ext)) = name.rsplit_once('.') {
            return Ok(ext.to_ascii_lowercase());
        }
    }
    if bytes.starts_with(b"\x93NUMPY") {
        Ok("npy".into())
    } else if bytes.starts_with(b"PK") {
        Ok("npz".into())
    } else if bytes.starts_with(b"GGUF") {
        Ok("gguf".into())
    } else if bytes.len() >= 9 && bytes[8] == b'{' {
        Ok("safetensors".into())
    } else {
        Err(PyValueError::new_err("[load] cannot tell the format of the file object: pass format= (npy, npz, safetensors or gguf)"))
    }
}

#[pyfunction]
#[pyo3(signature = (file, /, format=None, return_metadata=false, *, stream=None))]
fn load<'py>(py: Python<'py>, file: Obj, format: Option<&str>, return_metadata: bool, stream: OptObj) -> PyResult<Bound<'py, PyAny>> {
    let _stream = crate::convert::StreamGuard::enter(stream)?;
    let mut _tmp = None;
    let path = match target_of(file, "read")? {
        Target::Path(path) => {
            if let Some(f) = format {
                if !path.ends_with(&format!(".{f}")) {
                    return Err(PyValueError::new_err(format!("[load] format={f} needs a file named *.{f} for now")));
                }
            }
            path
        }
        Target::File(f) => {
            let bytes: Vec<u8> = f
                .call_method0("read")?
                .extract()
                .map_err(|_| PyTypeError::new_err("[load] the file object must be opened in binary mode"))?;
            let ext = file_format(&f, format, &bytes)?;
            if !["npy", "npz", "safetensors", "gguf"].contains(&ext.as_str()) {
                return Err(PyValueError::new_err(format!("[load] unknown format '{ext}' (expected npy, npz, safetensors or gguf)")));
            }
            let tmp = TempPath::new(&ext);
            std::fs::write(&tmp.0, &bytes).map_err(|e| PyRuntimeError::new_err(format!("[load] cannot write {}: {e}", tmp.as_str())))?;
            let p = tmp.as_str();
            _tmp = Some(tmp);
            p
        }
    };
    let (loaded, meta) = oxmx_core::io::load_with_metadata(&path).py()?;
    drop(_tmp);
    let value = match loaded {
        oxmx_core::io::Loaded::Array(a) => Bound::new(py, ok(a)?)?.into_any(),
        oxmx_core::io::Loaded::Arrays(v) => {
            let d = PyDict::new(py);
            for (k, a) in v {
                d.set_item(k, ok(a)?)?;
            }
            d.into_any()
        }
    };
    if !return_metadata {
        return Ok(value);
    }
    let m = PyDict::new(py);
    if let oxmx_core::io::Metadata::Safetensors(map) = meta {
        for (k, v) in map {
            m.set_item(k, v)?;
        }
    }
    Ok(PyTuple::new(py, [value, m.into_any()])?.into_any())
}
#[pyfunction]
fn get_memory_limit() -> usize {
    oxmx_core::memory::memory_limit()
}
#[pyfunction]
#[pyo3(signature = (stream=None))]
fn synchronize(stream: OptObj) {
    let _ = stream;
    oxmx_core::stream::synchronize_all()
}

/// `result_type(*arrays_and_dtypes)`: MLX's promotion of the arguments' dtypes.
#[pyfunction]
#[pyo3(signature = (*arrays_and_dtypes))]
fn result_type(arrays_and_dtypes: &Bound<'_, PyTuple>) -> PyResult<crate::dtype::PyDtype> {
    let mut out: Option<Dtype> = None;
    for x in arrays_and_dtypes.iter() {
        let d = match x.cast::<PyArray>() {
            Ok(a) => a.borrow().a.dtype(),
            Err(_) => crate::convert::dtype_req(&x)?,
        };
        out = Some(out.map_or(d, |o| oxmx_core::promote_types(o, d)));
    }
    out.map(|dt| crate::dtype::PyDtype { dt }).ok_or_else(|| PyValueError::new_err("[result_type] at least one array or dtype is required"))
}

/// The default device as `(type, index)`.
#[pyfunction]
fn _default_device() -> (&'static str, usize) {
    match oxmx_core::default_device() {
        oxmx_core::Device::Cpu => ("cpu", 0),
        oxmx_core::Device::Gpu(n) => ("gpu", n),
    }
}
#[pyfunction]
fn _set_default_device(kind: &str, index: usize) -> PyResult<()> {
    let d = match kind {
        "cpu" => oxmx_core::Device::Cpu,
        "gpu" if oxmx_core::device::gpu_available() => oxmx_core::Device::Gpu(index),
        "gpu" => return Err(PyValueError::new_err("[set_default_device] no GPU is available")),
        other => return Err(PyValueError::new_err(format!("unknown device type {other}"))),
    };
    oxmx_core::set_default_device(d);
    Ok(())
}
#[pyfunction]
fn _gpu_available() -> bool {
    oxmx_core::device::gpu_available()
}

register!(register_misc:
    result_type,
    zeros_like, ones_like, full_like, empty, empty_like, flip, unstack, count_nonzero, broadcast_shapes, gather_mm,
    block_masked_mm, conv_transpose2d, save, savez, savez_compressed, save_safetensors, load, get_memory_limit, synchronize,
    _default_device, _set_default_device, _gpu_available,
    partition, argpartition, topk, softmax,
    zeros, ones, full, arange, linspace, eye, identity, tri, tril, triu, meshgrid,
    reshape, flatten, unflatten, squeeze, expand_dims, transpose, swapaxes, moveaxis, broadcast_to, broadcast_arrays,
    concatenate, stack, split, pad, repeat, tile, roll, diag, diagonal, trace, as_strided, view, contiguous,
    take, take_along_axis, put_along_axis, slice_, slice_update,
    where_, clip, round, nan_to_num, isclose, allclose, array_equal, divmod_,
    addmm, tensordot, einsum, einsum_path, conv1d, conv2d, conv3d, conv_transpose1d,
    quantize, dequantize, quantized_matmul,
    eval, async_eval, get_active_memory, get_peak_memory, reset_peak_memory, get_cache_memory, clear_cache,
    set_memory_limit, set_cache_limit,
);

pub fn register_all(m: &Bound<'_, PyModule>) -> PyResult<()> {
    register_unary(m)?;
    register_binary(m)?;
    register_binary_arrays(m)?;
    register_reductions(m)?;
    register_var(m)?;
    register_arg_reductions(m)?;
    register_scans(m)?;
    register_sorts(m)?;
    register_misc(m)?;
    Ok(())
}

#[allow(dead_code)]
fn unused(_: Axes) {}
