//! Conversions between Python objects and oxmx arrays, scalars, shapes and axes, and the mapping
//! of oxmx errors to the Python exceptions MLX raises.

use crate::array::PyArray;
use crate::dtype::PyDtype;
use num_complex::Complex32;
use oxmx_core::{Array, Axes, Dtype, Error, ErrorKind, Operand, Scalar};
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyComplex, PyFloat, PyInt, PyList, PySequence, PyTuple};

/// The Python exception MLX raises for an error of this kind.
pub fn to_pyerr(e: Error) -> PyErr {
    let msg = e.message().to_string();
    // A Python callback (custom_function rules, checkpoint) failed: re-raise its own exception.
    if let Some(pe) = crate::custom::take_pending(&msg) {
        return pe;
    }
    match e.kind() {
        ErrorKind::InvalidArgument => PyValueError::new_err(msg),
        ErrorKind::IndexOutOfRange => PyIndexError::new_err(msg),
        ErrorKind::Type => PyTypeError::new_err(msg),
        ErrorKind::OutOfMemory => PyMemoryError::new_err(msg),
        ErrorKind::Runtime | ErrorKind::Io => PyRuntimeError::new_err(msg),
    }
}

pub trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> IntoPyResult<T> for oxmx_core::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}

/// An op's result as a Python array, raising the error it carries.
pub fn ok(a: Array) -> PyResult<PyArray> {
    a.check().py()?;
    Ok(PyArray::new(a))
}

pub fn ok_vec(v: Vec<Array>) -> PyResult<Vec<PyArray>> {
    v.into_iter().map(ok).collect()
}

/// A Python `bool`, `int`, `float` or `complex` (NumPy scalars that subclass them included).
pub fn py_scalar(obj: &Bound<'_, PyAny>) -> PyResult<Option<Scalar>> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(Some(Scalar::Bool(obj.extract::<bool>()?)));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(v) => Ok(Some(Scalar::Int(v))),
            Err(_) => match obj.extract::<u64>() {
                Ok(v) => Ok(Some(Scalar::Int(v as i64))),
                Err(_) => Err(PyValueError::new_err("Python integer out of range for an array")),
            },
        };
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Some(Scalar::Float(obj.extract::<f64>()?)));
    }
    if obj.is_instance_of::<PyComplex>() {
        let c = obj.cast::<PyComplex>()?;
        return Ok(Some(Scalar::Complex(c.real() as f32, c.imag() as f32)));
    }
    Ok(None)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}

fn is_numpy(obj: &Bound<'_, PyAny>) -> bool {
    let t = obj.get_type();
    let module = t.module().map(|m| m.to_string()).unwrap_or_default();
    module == "numpy" && (obj.hasattr("__array_interface__").unwrap_or(false))
}

/// The dtype oxmx gives a NumPy array of dtype `name` (MLX: float64 becomes float32).
fn numpy_dtype(name: &str) -> Option<(Dtype, Dtype)> {
    // (dtype of the buffer as NumPy holds it, dtype of the resulting array)
    Some(match name {
        "bool" => (Dtype::Bool, Dtype::Bool),
        "uint8" => (Dtype::Uint8, Dtype::Uint8),
        "uint16" => (Dtype::Uint16, Dtype::Uint16),
        "uint32" => (Dtype::Uint32, Dtype::Uint32),
        "uint64" => (Dtype::Uint64, Dtype::Uint64),
        "int8" => (Dtype::Int8, Dtype::Int8),
        "int16" => (Dtype::Int16, Dtype::Int16),
        "int32" => (Dtype::Int32, Dtype::Int32),
        "int64" => (Dtype::Int64, Dtype::Int64),
        "float16" => (Dtype::Float16, Dtype::Float16),
        "float32" => (Dtype::Float32, Dtype::Float32),
        "float64" => (Dtype::Float64, Dtype::Float32),
        "complex64" => (Dtype::Complex64, Dtype::Complex64),
        _ => return None,
    })
}

fn from_bytes(bytes: &[u8], dtype: Dtype, shape: &[usize]) -> Array {
    fn typed<T: oxmx_core::Element + bytemuck::Pod>(b: &[u8], shape: &[usize]) -> Array {
        let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
        bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
        Array::from_slice(&v, shape)
    }
    match dtype {
        Dtype::Bool => {
            let v: Vec<bool> = bytes.iter().map(|&b| b != 0).collect();
            Array::from_slice(&v, shape)
        }
        Dtype::Uint8 => typed::<u8>(bytes, shape),
        Dtype::Uint16 => typed::<u16>(bytes, shape),
        Dtype::Uint32 => typed::<u32>(bytes, shape),
        Dtype::Uint64 => typed::<u64>(bytes, shape),
        Dtype::Int8 => typed::<i8>(bytes, shape),
        Dtype::Int16 => typed::<i16>(bytes, shape),
        Dtype::Int32 => typed::<i32>(bytes, shape),
        Dtype::Int64 => typed::<i64>(bytes, shape),
        Dtype::Float16 => typed::<half::f16>(bytes, shape),
        Dtype::Bfloat16 => typed::<half::bf16>(bytes, shape),
        Dtype::Float32 => typed::<f32>(bytes, shape),
        Dtype::Float64 => typed::<f64>(bytes, shape),
        Dtype::Complex64 => typed::<Complex32>(bytes, shape),
    }
}

fn from_numpy(obj: &Bound<'_, PyAny>) -> PyResult<Array> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let mut arr = np.call_method1("asarray", (obj,))?;
    let mut name: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
    if name == "complex128" {
        arr = arr.call_method1("astype", ("complex64",))?;
        name = "complex64".into();
    }
    let Some((src, dst)) = numpy_dtype(&name) else {
        return Err(PyTypeError::new_err(format!("Cannot convert numpy array of dtype {name} to an array")));
    };
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let bytes = arr.call_method0("tobytes")?;
    let bytes = bytes.cast::<pyo3::types::PyBytes>()?;
    let a = from_bytes(bytes.as_bytes(), src, &shape);
    Ok(if src != dst { a.astype(dst) } else { a })
}

/// Nested Python lists/tuples of scalars.
#[derive(Default)]
struct Nested {
    shape: Vec<usize>,
    values: Vec<Scalar>,
    any_float: bool,
    any_int: bool,
    any_complex: bool,
    big_int: bool,
}

fn walk(obj: &Bound<'_, PyAny>, depth: usize, n: &mut Nested) -> PyResult<()> {
    if let Some(s) = py_scalar(obj)? {
        if depth != n.shape.len() {
            return Err(PyValueError::new_err("Initialization encountered non-uniform length."));
        }
        match s {
            Scalar::Int(i) => {
                n.any_int = true;
                if i < i32::MIN as i64 || i > i32::MAX as i64 {
                    n.big_int = true;
                }
            }
            Scalar::Float(_) => n.any_float = true,
            Scalar::Complex(..) => n.any_complex = true,
            Scalar::Bool(_) => {}
        }
        n.values.push(s);
        return Ok(());
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let seq = obj.cast::<PySequence>()?;
        let len = seq.len()?;
        if depth == n.shape.len() && n.values.is_empty() {
            n.shape.push(len);
        } else if depth >= n.shape.len() || n.shape[depth] != len {
            return Err(PyValueError::new_err("Initialization encountered non-uniform length."));
        }
        for item in seq.try_iter()? {
            walk(&item?, depth + 1, n)?;
        }
        return Ok(());
    }
    Err(PyValueError::new_err(format!("Invalid type {} received in array initialization.", type_name(obj))))
}

fn contains_array(obj: &Bound<'_, PyAny>) -> bool {
    if obj.cast::<PyArray>().is_ok() || is_numpy(obj) {
        return true;
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        if let Ok(mut it) = obj.try_iter() {
            if let Some(Ok(first)) = it.next() {
                return contains_array(&first);
            }
        }
    }
    false
}

fn from_nested(obj: &Bound<'_, PyAny>, dtype: Option<Dtype>) -> PyResult<Array> {
    if contains_array(obj) {
        // A list of arrays (or of lists of arrays): convert each element and stack.
        let parts: Vec<Array> = obj.try_iter()?.map(|x| to_array(&x?, None)).collect::<PyResult<_>>()?;
        let mut dt = None::<Dtype>;
        for p in &parts {
            dt = Some(dt.map_or(p.dtype(), |d| oxmx_core::promote_types(d, p.dtype())));
        }
        if let Some(d) = dt {
            let parts: Vec<Array> = parts.iter().map(|p| p.astype(d)).collect();
            let shape0 = parts[0].shape().to_vec();
            if parts.iter().any(|p| p.shape() != shape0.as_slice()) {
                return Err(PyValueError::new_err("Initialization encountered non-uniform length."));
            }
            let s = oxmx_core::stack(&parts, 0);
            return Ok(match dtype {
                Some(d) => s.astype(d),
                None => s,
            });
        }
    }
    let mut n = Nested::default();
    walk(obj, 0, &mut n)?;
    if n.values.is_empty() {
        // `[]`, `[[], []]`: shape as given (the innermost length is 0), float32 by default.
        let mut shape = n.shape.clone();
        if shape.is_empty() {
            shape.push(0);
        }
        return Ok(oxmx_core::zeros(&shape, dtype.unwrap_or(Dtype::Float32)));
    }
    let inferred = if n.any_complex {
        Dtype::Complex64
    } else if n.any_float {
        Dtype::Float32
    } else if n.any_int {
        if n.big_int {
            Dtype::Int64
        } else {
            Dtype::Int32
        }
    } else {
        Dtype::Bool
    };
    let target = dtype.unwrap_or(inferred);
    let shape = n.shape.clone();
    let a = if n.any_complex {
        let v: Vec<Complex32> = n
            .values
            .iter()
            .map(|s| match *s {
                Scalar::Complex(re, im) => Complex32::new(re, im),
                other => Complex32::new(other.as_f64() as f32, 0.0),
            })
            .collect();
        Array::from_slice(&v, &shape)
    } else if n.any_float || (target.is_inexact() && !target.is_complex()) {
        let v: Vec<f64> = n.values.iter().map(|s| s.as_f64()).collect();
        Array::from_slice(&v, &shape)
    } else if n.any_int {
        let v: Vec<i64> = n
            .values
            .iter()
            .map(|s| match *s {
                Scalar::Int(i) => i,
                Scalar::Bool(b) => b as i64,
                other => other.as_f64() as i64,
            })
            .collect();
        Array::from_slice(&v, &shape)
    } else {
        let v: Vec<bool> = n.values.iter().map(|s| matches!(s, Scalar::Bool(true))).collect();
        Array::from_slice(&v, &shape)
    };
    Ok(a.astype(target))
}

/// Any array-like Python object as an array: arrays, scalars (their default dtypes), NumPy
/// arrays and scalars, nested lists/tuples.
pub fn to_array(obj: &Bound<'_, PyAny>, dtype: Option<Dtype>) -> PyResult<Array> {
    if let Ok(a) = obj.cast::<PyArray>() {
        let a = a.borrow().a.clone();
        return Ok(match dtype {
            Some(d) if d != a.dtype() => a.astype(d),
            _ => a,
        });
    }
    if let Some(s) = py_scalar(obj)? {
        let d = dtype.unwrap_or(match s {
            Scalar::Int(i) if i < i32::MIN as i64 || i > i32::MAX as i64 => Dtype::Int64,
            _ => s.default_dtype(),
        });
        return Ok(oxmx_core::scalar_array(s, d));
    }
    if is_numpy(obj) {
        let a = from_numpy(obj)?;
        return Ok(match dtype {
            Some(d) => a.astype(d),
            None => a,
        });
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return from_nested(obj, dtype);
    }
    if obj.hasattr("__dlpack__")? && !obj.is_instance_of::<pyo3::types::PyType>() {
        // A DLPack producer (torch, jax, cupy on the host): NumPy reads it, then as above.
        let np = obj.py().import("numpy")?;
        let arr = np.call_method1("from_dlpack", (obj,))?;
        return to_array(&arr, dtype);
    }
    if obj.hasattr("__array__")? {
        let np = obj.py().import("numpy")?;
        let arr = np.call_method1("asarray", (obj,))?;
        return to_array(&arr, dtype);
    }
    Err(PyValueError::new_err(format!("Invalid type {} received in array initialization.", type_name(obj))))
}

/// An operand of a binary op: arrays as they are, Python scalars weakly typed.
pub fn to_operand(obj: &Bound<'_, PyAny>) -> PyResult<Operand> {
    if let Ok(a) = obj.cast::<PyArray>() {
        return Ok(Operand::Array(a.borrow().a.clone()));
    }
    if let Some(s) = py_scalar(obj)? {
        return Ok(Operand::Scalar(s));
    }
    Ok(Operand::Array(to_array(obj, None)?))
}

pub fn opt_array(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Array>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => Ok(Some(to_array(o, None)?)),
    }
}

pub fn dtype_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Dtype>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => match o.cast::<PyDtype>() {
            Ok(d) => Ok(Some(d.get().dt)),
            Err(_) => Err(PyTypeError::new_err(format!("Expected a Dtype, got {}", type_name(o)))),
        },
    }
}

/// A required dtype argument (`None` is a TypeError).
pub fn dtype_req(obj: &Bound<'_, PyAny>) -> PyResult<Dtype> {
    dtype_arg(Some(obj))?.ok_or_else(|| PyTypeError::new_err("Expected a Dtype, got None"))
}

fn int_of(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyInt>() || obj.hasattr("__index__")?) {
        return Err(PyTypeError::new_err(format!("Expected an int, got {}", type_name(obj))));
    }
    obj.extract::<i64>()
}

/// `int` or a sequence of ints, as signed values.
pub fn int_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        return Ok(vec![obj.extract()?]);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj.try_iter()?.map(|x| int_of(&x?)).collect();
    }
    Err(PyTypeError::new_err(format!("Expected an int or a sequence of ints, got {}", type_name(obj))))
}

/// A shape: `int` or a sequence of non-negative ints.
pub fn shape_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    int_list(obj)?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| PyValueError::new_err(format!("Negative dimensions are not allowed: {d}"))))
        .collect()
}

pub fn opt_shape(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<usize>>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => shape_arg(o).map(Some),
    }
}

pub fn isize_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<isize>> {
    Ok(int_list(obj)?.into_iter().map(|v| v as isize).collect())
}

/// `axis=None` (all), an int, or a sequence of ints.
pub fn axes_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Axes> {
    match obj {
        None => Ok(Axes::All),
        Some(o) if o.is_none() => Ok(Axes::All),
        Some(o) => Ok(Axes::List(isize_list(o)?)),
    }
}

/// A list of arrays from a Python sequence.
pub fn array_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Array>> {
    if obj.cast::<PyArray>().is_ok() {
        let a = obj.cast::<PyArray>()?.borrow().a.clone();
        return Ok(oxmx_core::unstack(&a, 0));
    }
    obj.try_iter()?.map(|x| to_array(&x?, None)).collect()
}

/// Row-major values of `a` as a Python object: nested lists of Python scalars (`tolist`).
pub fn to_pylist<'py>(py: Python<'py>, a: &Array) -> PyResult<Bound<'py, PyAny>> {
    let items: Vec<Bound<'py, PyAny>> = flat_pyvalues(py, a)?;
    fn nest<'py>(py: Python<'py>, shape: &[usize], items: &[Bound<'py, PyAny>]) -> PyResult<Bound<'py, PyAny>> {
        if shape.is_empty() {
            return Ok(items[0].clone());
        }
        let inner: usize = shape[1..].iter().product();
        let mut out = Vec::with_capacity(shape[0]);
        for i in 0..shape[0] {
            out.push(nest(py, &shape[1..], &items[i * inner..(i + 1) * inner])?);
        }
        Ok(PyList::new(py, out)?.into_any())
    }
    if a.size() == 0 {
        // Nested empty lists.
        fn empty<'py>(py: Python<'py>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
            if shape.is_empty() || shape[0] == 0 {
                return Ok(PyList::empty(py).into_any());
            }
            let v: Vec<_> = (0..shape[0]).map(|_| empty(py, &shape[1..])).collect::<PyResult<_>>()?;
            Ok(PyList::new(py, v)?.into_any())
        }
        return empty(py, a.shape());
    }
    nest(py, a.shape(), &items)
}

/// Each element as a Python scalar (bool, int, float or complex by dtype kind).
pub fn flat_pyvalues<'py>(py: Python<'py>, a: &Array) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let d = a.dtype();
    Ok(match d {
        Dtype::Bool => a.to_vec::<bool>().py()?.into_iter().map(|v| PyBool::new(py, v).to_owned().into_any()).collect(),
        Dtype::Uint64 => a.to_vec::<u64>().py()?.into_iter().map(|v| v.into_pyobject(py).unwrap().into_any()).collect(),
        d if d.is_integer() => a.to_vec::<i64>().py()?.into_iter().map(|v| v.into_pyobject(py).unwrap().into_any()).collect(),
        Dtype::Complex64 => {
            a.to_vec::<Complex32>().py()?.into_iter().map(|v| PyComplex::from_doubles(py, v.re as f64, v.im as f64).into_any()).collect()
        }
        _ => a.to_vec::<f64>().py()?.into_iter().map(|v| PyFloat::new(py, v).into_any()).collect(),
    })
}

/// The row-major bytes of `a` and their PEP 3118 format (bfloat16 has none; MLX exports it as
/// "bfloat16" all the same).
pub fn raw_bytes(a: &Array) -> PyResult<(Vec<u8>, &'static str)> {
    fn bytes_of<T: oxmx_core::Element + bytemuck::Pod>(a: &Array) -> PyResult<Vec<u8>> {
        Ok(bytemuck::cast_slice(&a.to_vec::<T>().py()?).to_vec())
    }
    Ok(match a.dtype() {
        Dtype::Bool => (a.to_vec::<bool>().py()?.into_iter().map(|b| b as u8).collect(), "?"),
        Dtype::Uint8 => (bytes_of::<u8>(a)?, "B"),
        Dtype::Uint16 => (bytes_of::<u16>(a)?, "H"),
        Dtype::Uint32 => (bytes_of::<u32>(a)?, "I"),
        Dtype::Uint64 => (bytes_of::<u64>(a)?, "Q"),
        Dtype::Int8 => (bytes_of::<i8>(a)?, "b"),
        Dtype::Int16 => (bytes_of::<i16>(a)?, "h"),
        Dtype::Int32 => (bytes_of::<i32>(a)?, "i"),
        Dtype::Int64 => (bytes_of::<i64>(a)?, "q"),
        Dtype::Float16 => (bytes_of::<half::f16>(a)?, "e"),
        Dtype::Float32 => (bytes_of::<f32>(a)?, "f"),
        Dtype::Float64 => (bytes_of::<f64>(a)?, "d"),
        Dtype::Complex64 => (bytes_of::<Complex32>(a)?, "Zf"),
        // Not a PEP 3118 format (NumPy refuses it, as with MLX's buffers), but memoryview works.
        Dtype::Bfloat16 => (bytes_of::<half::bf16>(a)?, "bfloat16"),
    })
}

/// `np.array(a)`: a writable NumPy array with the same dtype and shape.
pub fn to_numpy<'py>(py: Python<'py>, a: &Array) -> PyResult<Bound<'py, PyAny>> {
    if a.dtype() == Dtype::Bfloat16 {
        return Err(PyValueError::new_err("'bfloat16' is not a valid PEP 3118 buffer format string"));
    }
    let (bytes, _) = raw_bytes(a)?;
    let np = py.import("numpy")?;
    let buf = PyByteArray::new(py, &bytes);
    let flat = np.call_method1("frombuffer", (buf, a.dtype().name()))?;
    let shape = PyTuple::new(py, a.shape())?;
    flat.call_method1("reshape", (shape,))
}

/// `stream=`: a Device, a DeviceType or a Stream (anything with `.type`/`.index`, or `.name`
/// `cpu`/`gpu`). While the guard lives, ops are built on that device's default stream.
pub struct StreamGuard(Option<oxmx_core::Device>);

impl StreamGuard {
    pub fn enter(obj: Option<&Bound<'_, PyAny>>) -> PyResult<StreamGuard> {
        let Some(obj) = obj.filter(|o| !o.is_none()) else {
            return Ok(StreamGuard(None));
        };
        let obj = if obj.hasattr("device")? { obj.getattr("device")? } else { obj.clone() };
        let (kind, index): (String, usize) = if obj.hasattr("type")? && obj.hasattr("index")? {
            (obj.getattr("type")?.getattr("name")?.extract()?, obj.getattr("index")?.extract()?)
        } else if obj.hasattr("name")? {
            (obj.getattr("name")?.extract()?, 0)
        } else {
            return Err(PyTypeError::new_err(format!("stream must be a Device, DeviceType or Stream, got {}", type_name(&obj))));
        };
        let dev = match kind.as_str() {
            "cpu" => oxmx_core::Device::Cpu,
            "gpu" if oxmx_core::device::gpu_available() => oxmx_core::Device::Gpu(index),
            "gpu" => return Err(PyValueError::new_err("[stream] no GPU is available (oxmx found no CUDA device)")),
            other => return Err(PyValueError::new_err(format!("unknown device type {other}"))),
        };
        let old = oxmx_core::default_device();
        oxmx_core::set_default_device(dev);
        Ok(StreamGuard(Some(old)))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            oxmx_core::set_default_device(old);
        }
    }
}
