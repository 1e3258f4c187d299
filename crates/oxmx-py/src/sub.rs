//! The submodules `oxmx.core.random`, `.fast`, `.linalg` and `.fft`.

use crate::array::PyArray;
use crate::convert::{axes_arg, dtype_arg, isize_list, ok, opt_array, opt_shape, py_scalar, to_array, to_operand};
use oxmx_core::{Array, Dtype, Operand};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

type Obj<'a, 'py> = &'a Bound<'py, PyAny>;
type OptObj<'a, 'py> = Option<&'a Bound<'py, PyAny>>;

fn arr(o: Obj) -> PyResult<Array> {
    to_array(o, None)
}
fn shape_or(o: OptObj, d: Vec<usize>) -> PyResult<Vec<usize>> {
    Ok(opt_shape(o)?.unwrap_or(d))
}
fn dt_or(o: OptObj, d: Dtype) -> PyResult<Dtype> {
    Ok(dtype_arg(o)?.unwrap_or(d))
}
fn operand_or(o: OptObj, d: f64) -> PyResult<Operand> {
    match o {
        Some(v) if !v.is_none() => to_operand(v),
        _ => Ok(Operand::Scalar(oxmx_core::Scalar::Float(d))),
    }
}

// ---- random

mod random {
    use super::*;

    #[pyfunction]
    pub fn key(seed: u64) -> PyResult<PyArray> {
        ok(oxmx_core::random::key(seed))
    }
    #[pyfunction]
    pub fn seed(seed: u64) {
        oxmx_core::random::seed(seed)
    }
    #[pyfunction]
    #[pyo3(signature = (key, num=2, stream=None))]
    pub fn split(key: Obj, num: usize, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(oxmx_core::random::split(&arr(key)?, num))
    }
    #[pyfunction]
    #[pyo3(signature = (shape=None, width=4, key=None, stream=None))]
    pub fn bits(shape: OptObj, width: usize, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        if width != 4 {
            return Err(PyValueError::new_err("[bits] only width=4 (uint32 words) is supported"));
        }
        let k = opt_array(key)?;
        ok(oxmx_core::random::bits(&shape_or(shape, vec![1])?, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (low=None, high=None, shape=None, dtype=None, key=None, stream=None))]
    pub fn uniform(low: OptObj, high: OptObj, shape: OptObj, dtype: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::uniform(
            operand_or(low, 0.0)?,
            operand_or(high, 1.0)?,
            &shape_or(shape, vec![])?,
            dt_or(dtype, Dtype::Float32)?,
            k.as_ref(),
        ))
    }
    #[pyfunction]
    #[pyo3(signature = (shape=None, dtype=None, loc=None, scale=None, key=None, stream=None))]
    pub fn normal(shape: OptObj, dtype: OptObj, loc: OptObj, scale: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::normal(
            &shape_or(shape, vec![])?,
            dt_or(dtype, Dtype::Float32)?,
            operand_or(loc, 0.0)?,
            operand_or(scale, 1.0)?,
            k.as_ref(),
        ))
    }
    #[pyfunction]
    #[pyo3(signature = (low, high, shape=None, dtype=None, key=None, stream=None))]
    pub fn randint(low: Obj, high: Obj, shape: OptObj, dtype: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::randint(
            to_operand(low)?,
            to_operand(high)?,
            &shape_or(shape, vec![])?,
            dt_or(dtype, Dtype::Int32)?,
            k.as_ref(),
        ))
    }
    #[pyfunction]
    #[pyo3(signature = (p=None, shape=None, key=None, stream=None))]
    pub fn bernoulli(p: OptObj, shape: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        let p = operand_or(p, 0.5)?;
        let shape = match opt_shape(shape)? {
            Some(s) => s,
            None => match &p {
                Operand::Array(a) => a.shape().to_vec(),
                Operand::Scalar(_) => vec![],
            },
        };
        ok(oxmx_core::random::bernoulli(p, &shape, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (lower, upper, shape=None, dtype=None, key=None, stream=None))]
    pub fn truncated_normal(lower: Obj, upper: Obj, shape: OptObj, dtype: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        let (lo, hi) = (to_operand(lower)?, to_operand(upper)?);
        let shape = match opt_shape(shape)? {
            Some(s) => s,
            None => {
                let sh = |o: &Operand| match o {
                    Operand::Array(a) => a.shape().to_vec(),
                    _ => vec![],
                };
                oxmx_core::shape::broadcast_shapes(&sh(&lo), &sh(&hi)).map_err(crate::convert::to_pyerr)?
            }
        };
        ok(oxmx_core::random::truncated_normal(lo, hi, &shape, dt_or(dtype, Dtype::Float32)?, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (shape=None, dtype=None, key=None, stream=None))]
    pub fn gumbel(shape: OptObj, dtype: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::gumbel(&shape_or(shape, vec![])?, dt_or(dtype, Dtype::Float32)?, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (shape=None, dtype=None, loc=0.0, scale=1.0, key=None, stream=None))]
    pub fn laplace(shape: OptObj, dtype: OptObj, loc: f64, scale: f64, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::laplace(&shape_or(shape, vec![])?, dt_or(dtype, Dtype::Float32)?, loc, scale, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (logits, axis=-1, shape=None, num_samples=None, key=None, stream=None))]
    pub fn categorical(
        logits: Obj,
        axis: isize,
        shape: OptObj,
        num_samples: Option<usize>,
        key: OptObj,
        stream: OptObj,
    ) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        if shape.is_some_and(|s| !s.is_none()) {
            return Err(PyValueError::new_err("[categorical] the shape argument is not supported yet; use num_samples"));
        }
        let k = opt_array(key)?;
        ok(oxmx_core::random::categorical(&arr(logits)?, axis, num_samples, k.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (x, axis=0, key=None, stream=None))]
    pub fn permutation(x: Obj, axis: isize, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        match py_scalar(x)? {
            Some(oxmx_core::Scalar::Int(n)) if n >= 0 => ok(oxmx_core::random::permutation(n as usize, k.as_ref())),
            Some(_) => Err(PyTypeError::new_err("[permutation] expects an int or an array")),
            None => {
                let a = arr(x)?;
                let n = a.dim(axis);
                let p = oxmx_core::random::permutation(n, k.as_ref());
                ok(oxmx_core::take(&a, &p, Some(axis)))
            }
        }
    }
    #[pyfunction]
    #[pyo3(signature = (mean, cov, shape=None, dtype=None, key=None, stream=None))]
    pub fn multivariate_normal(mean: Obj, cov: Obj, shape: OptObj, dtype: OptObj, key: OptObj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let k = opt_array(key)?;
        ok(oxmx_core::random::multivariate_normal(
            &arr(mean)?,
            &arr(cov)?,
            &shape_or(shape, vec![])?,
            dt_or(dtype, Dtype::Float32)?,
            k.as_ref(),
        ))
    }
}

// ---- fast

mod fast {
    use super::*;

    #[pyfunction]
    #[pyo3(signature = (x, weight, eps, *, stream=None))]
    pub fn rms_norm(x: Obj, weight: OptObj, eps: f32, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let w = opt_array(weight)?;
        ok(oxmx_core::fast::rms_norm(&arr(x)?, w.as_ref(), eps))
    }
    #[pyfunction]
    #[pyo3(signature = (x, weight, bias, eps, *, stream=None))]
    pub fn layer_norm(x: Obj, weight: OptObj, bias: OptObj, eps: f32, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (w, b) = (opt_array(weight)?, opt_array(bias)?);
        ok(oxmx_core::fast::layer_norm(&arr(x)?, w.as_ref(), b.as_ref(), eps))
    }
    #[pyfunction]
    #[pyo3(signature = (a, dims, *, traditional, base, scale, offset, freqs=None, stream=None))]
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        a: Obj,
        dims: usize,
        traditional: bool,
        base: Option<f32>,
        scale: f32,
        offset: Obj,
        freqs: OptObj,
        stream: OptObj,
    ) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let off = match py_scalar(offset)? {
            Some(oxmx_core::Scalar::Int(i)) => oxmx_core::fast::RopeOffset::Int(i),
            _ => oxmx_core::fast::RopeOffset::Array(arr(offset)?),
        };
        let f = opt_array(freqs)?;
        ok(oxmx_core::fast::rope(&arr(a)?, dims, traditional, base, scale, off, f.as_ref()))
    }
    #[pyfunction]
    #[pyo3(signature = (q, k, v, *, scale, mask=None, sinks=None, stream=None))]
    #[allow(clippy::too_many_arguments)]
    pub fn scaled_dot_product_attention(
        q: Obj,
        k: Obj,
        v: Obj,
        scale: f32,
        mask: OptObj,
        sinks: OptObj,
        stream: OptObj,
    ) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let m = match mask {
            None => oxmx_core::fast::AttentionMask::None,
            Some(m) if m.is_none() => oxmx_core::fast::AttentionMask::None,
            Some(m) => match m.extract::<String>() {
                Ok(s) => oxmx_core::fast::AttentionMask::from(s.as_str()),
                Err(_) => oxmx_core::fast::AttentionMask::from(arr(m)?),
            },
        };
        let s = opt_array(sinks)?;
        ok(oxmx_core::fast::scaled_dot_product_attention(&arr(q)?, &arr(k)?, &arr(v)?, scale, m, s.as_ref()))
    }
}

// ---- linalg

mod linalg {
    use super::*;
    use oxmx_core::linalg as la;

    fn norm_ord(o: OptObj) -> PyResult<Option<la::NormOrd>> {
        match o {
            None => Ok(None),
            Some(o) if o.is_none() => Ok(None),
            Some(o) => {
                if let Ok(s) = o.extract::<String>() {
                    return Ok(Some(la::NormOrd::from(s.as_str())));
                }
                Ok(Some(la::NormOrd::P(o.extract::<f64>()?)))
            }
        }
    }
    #[pyfunction]
    #[pyo3(signature = (a, /, ord=None, axis=None, keepdims=false, *, stream=None))]
    pub fn norm(a: Obj, ord: OptObj, axis: OptObj, keepdims: bool, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(la::norm(&arr(a)?, norm_ord(ord)?, axes_arg(axis)?, keepdims))
    }
    macro_rules! one {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, *, stream=None))]
            pub fn $name(a: Obj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok(la::$name(&arr(a)?))
            }
        )*};
    }
    one!(inv, pinv, eigvals);
    macro_rules! upper {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, upper=false, *, stream=None))]
            pub fn $name(a: Obj, upper: bool, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok(la::$name(&arr(a)?, upper))
            }
        )*};
    }
    upper!(cholesky, cholesky_inv, tri_inv);
    #[pyfunction]
    #[pyo3(signature = (a, *, stream=None))]
    pub fn qr(a: Obj, stream: OptObj) -> PyResult<(PyArray, PyArray)> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (q, r) = la::qr(&arr(a)?);
        Ok((ok(q)?, ok(r)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, compute_uv=true, *, stream=None))]
    pub fn svd(py: Python<'_>, a: Obj, compute_uv: bool, stream: OptObj) -> PyResult<Py<PyAny>> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let x = arr(a)?;
        if !compute_uv {
            return Ok(ok(la::svd_values(&x))?.into_pyobject(py)?.into_any().unbind());
        }
        let (u, s, vt) = la::svd(&x);
        Ok((ok(u)?, ok(s)?, ok(vt)?).into_pyobject(py)?.into_any().unbind())
    }
    #[pyfunction]
    #[pyo3(signature = (a, UPLO="L", *, stream=None))]
    #[allow(non_snake_case)]
    pub fn eigh(a: Obj, UPLO: &str, stream: OptObj) -> PyResult<(PyArray, PyArray)> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (w, v) = la::eigh(&arr(a)?, UPLO);
        Ok((ok(w)?, ok(v)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, UPLO="L", *, stream=None))]
    #[allow(non_snake_case)]
    pub fn eigvalsh(a: Obj, UPLO: &str, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(la::eigvalsh(&arr(a)?, UPLO))
    }
    #[pyfunction]
    #[pyo3(signature = (a, *, stream=None))]
    pub fn eig(a: Obj, stream: OptObj) -> PyResult<(PyArray, PyArray)> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (w, v) = la::eig(&arr(a)?);
        Ok((ok(w)?, ok(v)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, *, stream=None))]
    pub fn lu(a: Obj, stream: OptObj) -> PyResult<(PyArray, PyArray, PyArray)> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (p, l, u) = la::lu(&arr(a)?);
        Ok((ok(p)?, ok(l)?, ok(u)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, *, stream=None))]
    pub fn lu_factor(a: Obj, stream: OptObj) -> PyResult<(PyArray, PyArray)> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        let (lu, piv) = la::lu_factor(&arr(a)?);
        Ok((ok(lu)?, ok(piv)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, b, *, stream=None))]
    pub fn solve(a: Obj, b: Obj, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(la::solve(&arr(a)?, &arr(b)?))
    }
    #[pyfunction]
    #[pyo3(signature = (a, b, *, upper=false, stream=None))]
    pub fn solve_triangular(a: Obj, b: Obj, upper: bool, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(la::solve_triangular(&arr(a)?, &arr(b)?, upper))
    }
    #[pyfunction]
    #[pyo3(signature = (a, b, axis=-1, *, stream=None))]
    pub fn cross(a: Obj, b: Obj, axis: isize, stream: OptObj) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(la::cross(&arr(a)?, &arr(b)?, axis))
    }
}

// ---- fft

mod fft {
    use super::*;
    use oxmx_core::fft as f;

    macro_rules! one_d {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, n=None, axis=-1, *, stream=None))]
            pub fn $name(a: Obj, n: Option<usize>, axis: isize, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                ok(f::$name(&arr(a)?, n, axis))
            }
        )*};
    }
    one_d!(fft, ifft, rfft, irfft);
    macro_rules! two_d {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, s=None, axes=None, *, stream=None))]
            pub fn $name(a: Obj, s: OptObj, axes: OptObj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                let s = opt_shape(s)?;
                let axes = match axes { Some(x) if !x.is_none() => isize_list(x)?, _ => vec![-2, -1] };
                ok(f::$name(&arr(a)?, s.as_deref(), &axes))
            }
        )*};
    }
    two_d!(fft2, ifft2, rfft2, irfft2);
    macro_rules! n_d {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, s=None, axes=None, *, stream=None))]
            pub fn $name(a: Obj, s: OptObj, axes: OptObj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                let s = opt_shape(s)?;
                let axes = match axes { Some(x) if !x.is_none() => Some(isize_list(x)?), _ => None };
                ok(f::$name(&arr(a)?, s.as_deref(), axes.as_deref()))
            }
        )*};
    }
    n_d!(fftn, ifftn, rfftn, irfftn);
    macro_rules! shift {
        ($($name:ident),*) => {$(
            #[pyfunction]
            #[pyo3(signature = (a, axes=None, *, stream=None))]
            pub fn $name(a: Obj, axes: OptObj, stream: OptObj) -> PyResult<PyArray> {
                let _stream = crate::convert::StreamGuard::enter(stream)?;
                let axes = match axes { Some(x) if !x.is_none() => Some(isize_list(x)?), _ => None };
                ok(f::$name(&arr(a)?, axes.as_deref()))
            }
        )*};
    }
    shift!(fftshift, ifftshift);
}

macro_rules! add_fns {
    ($m:ident, $module:ident: $($f:ident),*) => {
        $( $m.add_function(wrap_pyfunction!($module::$f, &$m)?)?; )*
    };
}

pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = parent.py();
    let r = PyModule::new(py, "random")?;
    add_fns!(r, random: key, seed, split, bits, uniform, normal, randint, bernoulli, truncated_normal, gumbel, laplace,
        categorical, permutation, multivariate_normal);
    parent.add_submodule(&r)?;

    let f = PyModule::new(py, "fast")?;
    add_fns!(f, fast: rms_norm, layer_norm, rope, scaled_dot_product_attention);
    parent.add_submodule(&f)?;

    let l = PyModule::new(py, "linalg")?;
    add_fns!(l, linalg: norm, inv, pinv, eigvals, cholesky, cholesky_inv, tri_inv, qr, svd, eigh, eigvalsh, eig, lu, lu_factor,
        solve, solve_triangular, cross);
    parent.add_submodule(&l)?;

    let t = PyModule::new(py, "fft")?;
    add_fns!(t, fft: fft, ifft, rfft, irfft, fft2, ifft2, rfft2, irfft2, fftn, ifftn, rfftn, irfftn, fftshift, ifftshift);
    parent.add_submodule(&t)?;
    Ok(())
}
