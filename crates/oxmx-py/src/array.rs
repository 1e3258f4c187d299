//! `oxmx.core.array`: construction, properties, conversions, operators and indexing. Methods
//! that are plain ops (`a.sum(...)`, `a.reshape(...)`) are attached in `oxmx/core/__init__.py`
//! from the module functions, so each op has one binding.

use crate::convert::{dtype_arg, flat_pyvalues, ok, to_array, to_numpy, to_operand, to_pyerr, to_pylist};
use crate::dtype::PyDtype;
use oxmx_core::ops::{Idx, SliceSpec};
use oxmx_core::{Array, Dtype, Operand, Scalar};
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyEllipsis, PyInt, PyList, PyNone, PySlice, PyTuple};

#[pyclass(name = "array", module = "oxmx.core")]
pub struct PyArray {
    pub a: Array,
}

impl PyArray {
    pub fn new(a: Array) -> PyArray {
        PyArray { a }
    }
}

/// MLX refuses a Python integer that does not fit an integer array's dtype.
fn check_scalar_fits(op: &Operand, other: &Operand) -> PyResult<()> {
    if let (Operand::Scalar(Scalar::Int(v)), Operand::Array(a)) = (op, other) {
        if let Some(info) = oxmx_core::iinfo(a.dtype()) {
            if a.dtype() != Dtype::Bool && ((*v as i128) < info.min || (*v as i128) > info.max) {
                return Err(PyValueError::new_err(format!("Converting {v} to {} would result in overflow.", a.dtype().name())));
            }
        }
    }
    Ok(())
}

fn binop(lhs: &Bound<'_, PyAny>, rhs: &Bound<'_, PyAny>, what: &str, f: impl Fn(Operand, Operand) -> Array) -> PyResult<PyArray> {
    let conv = |o: &Bound<'_, PyAny>| -> PyResult<Operand> {
        to_operand(o).map_err(|_| {
            PyValueError::new_err(format!(
                "Cannot perform {what} on an oxmx.core.array and {}",
                o.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })
    };
    let (x, y) = (conv(lhs)?, conv(rhs)?);
    check_scalar_fits(&x, &y)?;
    check_scalar_fits(&y, &x)?;
    ok(f(x, y))
}

/// One entry of an index expression.
fn idx_item(obj: &Bound<'_, PyAny>, out: &mut Vec<Idx>) -> PyResult<()> {
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        out.push(Idx::At(obj.extract::<i64>()? as isize));
    } else if obj.is_instance_of::<PySlice>() {
        let get = |name: &str| -> PyResult<Option<isize>> {
            let v = obj.getattr(name)?;
            if v.is_none() {
                Ok(None)
            } else {
                Ok(Some(v.extract::<i64>()? as isize))
            }
        };
        let step = get("step")?.unwrap_or(1);
        if step == 0 {
            return Err(PyValueError::new_err("slice step cannot be zero"));
        }
        out.push(Idx::Slice(SliceSpec::new(get("start")?, get("stop")?, step)));
    } else if obj.is_instance_of::<PyNone>() {
        out.push(Idx::NewAxis);
    } else if obj.is_instance_of::<PyEllipsis>() {
        out.push(Idx::Ellipsis);
    } else if obj.cast::<PyArray>().is_ok() || obj.is_instance_of::<PyList>() || obj.hasattr("__array_interface__")? {
        let a = to_array(obj, None)?;
        if a.dtype() == Dtype::Bool {
            return Err(PyValueError::new_err("boolean mask indexing is not supported (as in MLX); use where()"));
        }
        if !a.dtype().is_integer() {
            return Err(PyValueError::new_err("Cannot index mlx array using the given type."));
        }
        out.push(Idx::Array(a));
    } else {
        return Err(PyValueError::new_err("Cannot index mlx array using the given type."));
    }
    Ok(())
}

pub fn parse_index(key: &Bound<'_, PyAny>) -> PyResult<Vec<Idx>> {
    let mut out = vec![];
    if key.is_instance_of::<PyTuple>() {
        for item in key.try_iter()? {
            idx_item(&item?, &mut out)?;
        }
    } else {
        idx_item(key, &mut out)?;
    }
    Ok(out)
}

macro_rules! dunder_binary {
    ($($name:ident, $rname:ident, $what:literal, $f:path;)*) => {
        #[pymethods]
        impl PyArray {
            $(
                fn $name(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyArray> {
                    binop(slf.as_any(), other, $what, |x, y| $f(x, y))
                }
                fn $rname(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyArray> {
                    binop(other, slf.as_any(), $what, |x, y| $f(x, y))
                }
            )*
        }
    };
}

dunder_binary! {
    __add__, __radd__, "addition", oxmx_core::add;
    __sub__, __rsub__, "subtraction", oxmx_core::subtract;
    __mul__, __rmul__, "multiplication", oxmx_core::multiply;
    __truediv__, __rtruediv__, "division", oxmx_core::divide;
    __floordiv__, __rfloordiv__, "floor division", oxmx_core::floor_divide;
    __mod__, __rmod__, "modulus", oxmx_core::remainder;
    __and__, __rand__, "bitwise and", oxmx_core::bitwise_and;
    __or__, __ror__, "bitwise or", oxmx_core::bitwise_or;
    __xor__, __rxor__, "bitwise xor", oxmx_core::bitwise_xor;
    __lshift__, __rlshift__, "left shift", oxmx_core::left_shift;
    __rshift__, __rrshift__, "right shift", oxmx_core::right_shift;
}

/// `a op= b`: MLX updates the array object itself (every reference to it sees the result).
fn inplace(a: &Array, other: &Bound<'_, PyAny>, what: &str, f: impl Fn(Operand, Operand) -> Array) -> PyResult<Array> {
    let y = to_operand(other).map_err(|_| {
        PyValueError::new_err(format!(
            "Cannot perform {what} on an oxmx.core.array and {}",
            other.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let x = Operand::Array(a.clone());
    check_scalar_fits(&y, &x)?;
    Ok(ok(f(x, y))?.a)
}

macro_rules! dunder_inplace {
    ($($name:ident, $what:literal, $f:path;)*) => {
        #[pymethods]
        impl PyArray {
            $(
                fn $name(&mut self, other: &Bound<'_, PyAny>) -> PyResult<()> {
                    self.a = inplace(&self.a, other, $what, |x, y| $f(x, y))?;
                    Ok(())
                }
            )*
        }
    };
}

dunder_inplace! {
    __iadd__, "addition", oxmx_core::add;
    __isub__, "subtraction", oxmx_core::subtract;
    __imul__, "multiplication", oxmx_core::multiply;
    __ifloordiv__, "floor division", oxmx_core::floor_divide;
    __imod__, "modulus", oxmx_core::remainder;
    __iand__, "bitwise and", oxmx_core::bitwise_and;
    __ior__, "bitwise or", oxmx_core::bitwise_or;
    __ixor__, "bitwise xor", oxmx_core::bitwise_xor;
    __ilshift__, "left shift", oxmx_core::left_shift;
    __irshift__, "right shift", oxmx_core::right_shift;
    __imatmul__, "matmul", matmul_ops;
}

#[pymethods]
impl PyArray {
    fn __itruediv__(&mut self, other: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.a.dtype().is_inexact() {
            return Err(PyValueError::new_err("In place division cannot cast to non-floating point type."));
        }
        self.a = inplace(&self.a, other, "division", |x, y| oxmx_core::divide(x, y))?;
        Ok(())
    }
    fn __ipow__(&mut self, other: &Bound<'_, PyAny>, modulo: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let _ = modulo;
        self.a = inplace(&self.a, other, "power", |x, y| oxmx_core::power(x, y))?;
        Ok(())
    }
}

fn matmul_ops(x: Operand, y: Operand) -> Array {
    let x = oxmx_core::to_array(x, None);
    let y = oxmx_core::to_array(y, None);
    oxmx_core::matmul(&x, &y)
}

#[pymethods]
impl PyArray {
    #[new]
    #[pyo3(signature = (val, dtype=None))]
    fn py_new(val: &Bound<'_, PyAny>, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let a = to_array(val, dtype_arg(dtype)?)?;
        Ok(PyArray::new(ok(a)?.a))
    }

    #[getter]
    fn dtype(&self) -> PyDtype {
        PyDtype { dt: self.a.dtype() }
    }
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.a.shape())
    }
    #[getter]
    fn ndim(&self) -> usize {
        self.a.ndim()
    }
    #[getter]
    fn size(&self) -> usize {
        self.a.size()
    }
    #[getter]
    fn itemsize(&self) -> usize {
        self.a.itemsize()
    }
    #[getter]
    fn nbytes(&self) -> usize {
        self.a.nbytes()
    }
    #[getter(T)]
    fn t(&self) -> PyResult<PyArray> {
        ok(oxmx_core::transpose(&self.a, &(0..self.a.ndim() as isize).rev().collect::<Vec<_>>()))
    }
    /// The last two axes swapped.
    #[getter(mT)]
    fn m_t(&self) -> PyResult<PyArray> {
        ok(oxmx_core::swapaxes(&self.a, -1, -2))
    }
    #[getter]
    fn at(&self) -> PyArrayAt {
        PyArrayAt { a: self.a.clone() }
    }
    #[getter]
    fn real(&self) -> PyResult<PyArray> {
        ok(oxmx_core::real(&self.a))
    }
    #[getter]
    fn imag(&self) -> PyResult<PyArray> {
        ok(oxmx_core::imag(&self.a))
    }

    fn item<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.a.size() != 1 {
            return Err(PyValueError::new_err("[item] item can only be called on arrays of size 1."));
        }
        Ok(flat_pyvalues(py, &self.a)?.remove(0))
    }
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_pylist(py, &self.a)
    }
    #[pyo3(signature = (dtype, stream=None))]
    fn astype(&self, dtype: &Bound<'_, PyAny>, stream: Option<&Bound<'_, PyAny>>) -> PyResult<PyArray> {
        let _stream = crate::convert::StreamGuard::enter(stream)?;
        ok(self.a.astype(crate::convert::dtype_req(dtype)?))
    }
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = copy;
        let arr = to_numpy(py, &self.a)?;
        match dtype {
            Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
            _ => Ok(arr),
        }
    }

    fn __repr__(&self) -> String {
        format!("{}", self.a)
    }
    fn __str__(&self) -> String {
        let s = format!("{}", self.a);
        // MLX's str is the repr without `array(` and `, dtype=...)` for 0-d: keep the repr form.
        s
    }
    fn __len__(&self) -> PyResult<usize> {
        if self.a.ndim() == 0 {
            return Err(PyTypeError::new_err("len() 0-dimensional array."));
        }
        Ok(self.a.shape()[0])
    }
    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let a = slf.borrow().a.clone();
        if a.ndim() == 0 {
            return Err(PyTypeError::new_err("iteration over a 0-d array"));
        }
        let items: Vec<PyArray> = (0..a.shape()[0]).map(|i| ok(oxmx_core::index(&a, &[Idx::At(i as isize)]))).collect::<PyResult<_>>()?;
        Ok(PyList::new(py, items)?.try_iter()?.into_any().unbind())
    }
    fn __bool__(&self, py: Python<'_>) -> PyResult<bool> {
        self.scalar(py)?.is_truthy()
    }
    fn __int__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.scalar(py)?;
        py.import("builtins")?.getattr("int")?.call1((v,))
    }
    fn __float__(&self, py: Python<'_>) -> PyResult<f64> {
        let v = self.scalar(py)?;
        py.import("builtins")?.getattr("float")?.call1((v,))?.extract()
    }
    fn __complex__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.scalar(py)?;
        py.import("builtins")?.getattr("complex")?.call1((v,))
    }
    fn __index__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.a.dtype().is_integer() {
            return Err(PyTypeError::new_err("only integer arrays can be used as an index"));
        }
        self.__int__(py)
    }
    fn __hash__(slf: &Bound<'_, Self>) -> isize {
        slf.as_ptr() as isize
    }

    fn __neg__(&self) -> PyResult<PyArray> {
        ok(oxmx_core::negative(&self.a))
    }
    fn __pos__(&self) -> PyResult<PyArray> {
        ok(self.a.clone())
    }
    fn __abs__(&self) -> PyResult<PyArray> {
        ok(oxmx_core::abs(&self.a))
    }
    fn __invert__(&self) -> PyResult<PyArray> {
        if self.a.dtype() == Dtype::Bool {
            return ok(oxmx_core::logical_not(&self.a));
        }
        ok(oxmx_core::bitwise_invert(&self.a))
    }
    fn __pow__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, modulo: Option<&Bound<'_, PyAny>>) -> PyResult<PyArray> {
        let _ = modulo;
        binop(slf.as_any(), other, "power", |x, y| oxmx_core::power(x, y))
    }
    fn __rpow__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, modulo: Option<&Bound<'_, PyAny>>) -> PyResult<PyArray> {
        let _ = modulo;
        binop(other, slf.as_any(), "power", |x, y| oxmx_core::power(x, y))
    }
    fn __matmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        binop(slf.as_any(), other, "matmul", matmul_ops)
    }
    fn __rmatmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        binop(other, slf.as_any(), "matmul", matmul_ops)
    }
    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<PyArray> {
        if other.is_none() {
            return Err(PyTypeError::new_err("comparison of an array with None is not supported"));
        }
        let f: fn(Operand, Operand) -> Array = match op {
            CompareOp::Eq => |x: Operand, y: Operand| oxmx_core::equal(x, y),
            CompareOp::Ne => |x: Operand, y: Operand| oxmx_core::not_equal(x, y),
            CompareOp::Lt => |x: Operand, y: Operand| oxmx_core::less(x, y),
            CompareOp::Le => |x: Operand, y: Operand| oxmx_core::less_equal(x, y),
            CompareOp::Gt => |x: Operand, y: Operand| oxmx_core::greater(x, y),
            CompareOp::Ge => |x: Operand, y: Operand| oxmx_core::greater_equal(x, y),
        };
        binop(slf.as_any(), other, "comparison", f)
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        let idx = parse_index(key)?;
        ok(oxmx_core::index(&self.a, &idx))
    }
    fn __setitem__(&mut self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let idx = parse_index(key)?;
        let v = to_array(value, None)?.astype(self.a.dtype());
        let out = oxmx_core::index_set(&self.a, &idx, &v);
        out.check().map_err(to_pyerr)?;
        self.a = out;
        Ok(())
    }

    fn __copy__(&self) -> PyArray {
        PyArray::new(self.a.clone())
    }
    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> PyArray {
        PyArray::new(self.a.clone())
    }
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyAny>,))> {
        let py = slf.py();
        let cls = py.import("oxmx.core")?.getattr("_array_from_numpy")?;
        let a = slf.borrow().a.clone();
        let arr =
            if a.dtype() == Dtype::Bfloat16 { (to_numpy(py, &a.astype(Dtype::Float32))?, "bfloat16") } else { (to_numpy(py, &a)?, "") };
        Ok((cls, (PyTuple::new(py, [arr.0, arr.1.into_pyobject(py)?.into_any()])?.into_any(),)))
    }
}

impl PyArray {
    /// The single element as a Python scalar (`bool(a)`, `int(a)`, `float(a)`).
    fn scalar<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.a.size() != 1 {
            return Err(PyValueError::new_err("[convert] Only length-1 arrays can be converted to Python scalars."));
        }
        Ok(flat_pyvalues(py, &self.a)?.remove(0))
    }
}

/// What a buffer export keeps alive until `__releasebuffer__`.
struct BufferData {
    bytes: Vec<u8>,
    format: std::ffi::CString,
    shape: Vec<isize>,
    strides: Vec<isize>,
}

#[pymethods]
impl PyArray {
    /// The buffer protocol (`memoryview(a)`): a read-only, row-major copy of the data.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut pyo3::ffi::Py_buffer, flags: std::ffi::c_int) -> PyResult<()> {
        use pyo3::ffi;
        if view.is_null() {
            return Err(pyo3::exceptions::PyBufferError::new_err("View is null"));
        }
        if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
            return Err(pyo3::exceptions::PyBufferError::new_err("oxmx arrays export read-only buffers"));
        }
        let a = slf.borrow().a.clone();
        let (bytes, fmt) = crate::convert::raw_bytes(&a)?;
        let itemsize = a.itemsize() as isize;
        let shape: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
        let mut strides = vec![itemsize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        if a.size() == 0 {
            strides.iter_mut().for_each(|s| *s = 0); // as MLX reports them
        }
        let mut data = Box::new(BufferData { bytes, format: std::ffi::CString::new(fmt).expect("no NUL in a format"), shape, strides });
        // SAFETY: `view` is non-null (checked) and points to a Py_buffer the caller owns; every
        // pointer stored in it stays valid until __releasebuffer__ frees `data`.
        unsafe {
            (*view).obj = slf.into_any().into_ptr();
            (*view).buf = data.bytes.as_mut_ptr() as *mut std::ffi::c_void;
            (*view).len = data.bytes.len() as isize;
            (*view).readonly = 1;
            (*view).itemsize = itemsize;
            (*view).format =
                if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT { data.format.as_ptr() as *mut _ } else { std::ptr::null_mut() };
            (*view).ndim = data.shape.len() as std::ffi::c_int;
            (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND { data.shape.as_mut_ptr() } else { std::ptr::null_mut() };
            (*view).strides =
                if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES { data.strides.as_mut_ptr() } else { std::ptr::null_mut() };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = Box::into_raw(data) as *mut std::ffi::c_void;
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, view: *mut pyo3::ffi::Py_buffer) {
        // SAFETY: `internal` was set by __getbuffer__ from Box::into_raw and is released once.
        unsafe {
            let p = (*view).internal as *mut BufferData;
            if !p.is_null() {
                drop(Box::from_raw(p));
                (*view).internal = std::ptr::null_mut();
            }
        }
    }
}

#[pyfunction]
pub fn _array_from_numpy(state: &Bound<'_, PyTuple>) -> PyResult<PyArray> {
    let arr = state.get_item(0)?;
    let tag: String = state.get_item(1)?.extract()?;
    let a = to_array(&arr, None)?;
    ok(if tag == "bfloat16" { a.astype(Dtype::Bfloat16) } else { a })
}

/// `a.at[idx]`: scatter-style updates that return new arrays (`add`, `subtract`, …).
#[pyclass(name = "ArrayAt", module = "oxmx.core")]
pub struct PyArrayAt {
    a: Array,
}

#[pymethods]
impl PyArrayAt {
    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<PyArrayAtIdx> {
        Ok(PyArrayAtIdx { a: self.a.clone(), idx: parse_index(key)? })
    }
}

#[pyclass(name = "ArrayAtIndex", module = "oxmx.core")]
pub struct PyArrayAtIdx {
    a: Array,
    idx: Vec<Idx>,
}

impl PyArrayAtIdx {
    fn values(&self, v: &Bound<'_, PyAny>) -> PyResult<Array> {
        Ok(to_array(v, None)?.astype(self.a.dtype()))
    }
}

#[pymethods]
impl PyArrayAtIdx {
    fn add(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        ok(oxmx_core::index_add(&self.a, &self.idx, &self.values(value)?))
    }
    fn subtract(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        let v = oxmx_core::negative(&self.values(value)?);
        ok(oxmx_core::index_add(&self.a, &self.idx, &v))
    }
    fn multiply(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        ok(oxmx_core::index_multiply(&self.a, &self.idx, &self.values(value)?))
    }
    fn divide(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        let v = oxmx_core::reciprocal(&self.values(value)?).astype(self.a.dtype());
        ok(oxmx_core::index_multiply(&self.a, &self.idx, &v))
    }
    fn maximum(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        ok(oxmx_core::index_maximum(&self.a, &self.idx, &self.values(value)?))
    }
    fn minimum(&self, value: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        ok(oxmx_core::index_minimum(&self.a, &self.idx, &self.values(value)?))
    }
}
