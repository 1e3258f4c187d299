//! `oxmx.core.Dtype`: the dtype objects (`mx.float32`, `mx.bool_`, …), `finfo`, `iinfo`.

use oxmx_core::Dtype;
use pyo3::prelude::*;

/// The attribute name in `oxmx.core` (`bool_` for bool, as MLX).
pub fn attr_name(d: Dtype) -> &'static str {
    if d == Dtype::Bool {
        "bool_"
    } else {
        d.name()
    }
}

#[pyclass(name = "Dtype", module = "oxmx.core", frozen, eq, hash, from_py_object)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PyDtype {
    pub dt: Dtype,
}

#[pymethods]
impl PyDtype {
    /// Bytes per element.
    #[getter]
    fn size(&self) -> usize {
        self.dt.size()
    }
    fn __repr__(&self) -> String {
        format!("oxmx.core.{}", self.dt.name())
    }
    fn __str__(&self) -> String {
        self.__repr__()
    }
    fn __reduce__(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, (String,))> {
        let f = py.import("oxmx.core")?.getattr("_dtype_from_name")?;
        Ok((f.unbind(), (self.dt.name().to_string(),)))
    }
}

#[pyfunction]
pub fn _dtype_from_name(name: &str) -> PyResult<PyDtype> {
    Dtype::from_name(name).map(|dt| PyDtype { dt }).ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("Unknown dtype {name}")))
}

#[pyclass(name = "finfo", module = "oxmx.core", frozen)]
pub struct PyFinfo {
    #[pyo3(get)]
    min: f64,
    #[pyo3(get)]
    max: f64,
    #[pyo3(get)]
    eps: f64,
    #[pyo3(get)]
    tiny: f64,
    #[pyo3(get)]
    dtype: PyDtype,
}

#[pymethods]
impl PyFinfo {
    #[new]
    fn new(dtype: &Bound<'_, PyAny>) -> PyResult<Self> {
        let dt = crate::convert::dtype_req(dtype)?;
        let f = oxmx_core::finfo(dt)
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("[finfo] dtype {} is not inexact.", dt.name())))?;
        Ok(PyFinfo { min: f.min, max: f.max, eps: f.eps, tiny: f.tiny, dtype: PyDtype { dt } })
    }
    fn __repr__(&self) -> String {
        format!("finfo(min={}, max={}, dtype={})", self.min, self.max, self.dtype.dt.name())
    }
}

#[pyclass(name = "iinfo", module = "oxmx.core", frozen)]
pub struct PyIinfo {
    #[pyo3(get)]
    min: i128,
    #[pyo3(get)]
    max: i128,
    #[pyo3(get)]
    dtype: PyDtype,
}

#[pymethods]
impl PyIinfo {
    #[new]
    fn new(dtype: &Bound<'_, PyAny>) -> PyResult<Self> {
        let dt = crate::convert::dtype_req(dtype)?;
        let f = oxmx_core::iinfo(dt)
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("[iinfo] dtype {} is not integral.", dt.name())))?;
        Ok(PyIinfo { min: f.min as i128, max: f.max as i128, dtype: PyDtype { dt } })
    }
    fn __repr__(&self) -> String {
        format!("iinfo(min={}, max={}, dtype={})", self.min, self.max, self.dtype.dt.name())
    }
}
