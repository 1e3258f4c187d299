//! `oxmx.core.distributed` (MLX's `mx.distributed`): `init`, `Group` and the collectives.

use crate::array::PyArray;
use crate::convert::{dtype_arg, ok, opt_shape, to_array, IntoPyResult, StreamGuard};
use oxmx_core::distributed::{self as dist, Group};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type Obj<'a, 'py> = &'a Bound<'py, PyAny>;
type OptObj<'a, 'py> = Option<&'a Bound<'py, PyAny>>;

/// A group of ranks (`mx.distributed.Group`).
#[pyclass(name = "Group", module = "oxmx.core.distributed", frozen)]
#[derive(Clone)]
pub struct PyGroup {
    pub g: Group,
}

#[pymethods]
impl PyGroup {
    fn rank(&self) -> usize {
        self.g.rank()
    }
    fn size(&self) -> usize {
        self.g.size()
    }
    /// The ranks passing the same `color` form a new group ordered by `key` (-1: by rank).
    #[pyo3(signature = (color, key=-1))]
    fn split(&self, color: i32, key: i32) -> PyResult<PyGroup> {
        Ok(PyGroup { g: self.g.split(color, (key >= 0).then_some(key)).py()? })
    }
    fn __repr__(&self) -> String {
        format!("Group(rank={}, size={}, backend={})", self.g.rank(), self.g.size(), self.g.backend())
    }
}

fn group(g: Option<PyRef<PyGroup>>) -> Option<Group> {
    g.map(|g| g.g.clone())
}

#[pyfunction]
#[pyo3(signature = (backend="any"))]
fn is_available(backend: &str) -> bool {
    dist::is_available(backend)
}

#[pyfunction]
#[pyo3(signature = (strict=false, backend="any"))]
fn init(strict: bool, backend: &str) -> PyResult<PyGroup> {
    Ok(PyGroup { g: dist::init(strict, backend).py()? })
}

macro_rules! collective {
    ($name:ident, $f:path) => {
        #[pyfunction]
        #[pyo3(signature = (x, *, group=None, stream=None))]
        fn $name(x: Obj, group: Option<PyRef<PyGroup>>, stream: OptObj) -> PyResult<PyArray> {
            let _s = StreamGuard::enter(stream)?;
            let g = self::group(group);
            ok($f(&to_array(x, None)?, g.as_ref()))
        }
    };
}
collective!(all_sum, dist::all_sum);
collective!(all_max, dist::all_max);
collective!(all_min, dist::all_min);
collective!(all_gather, dist::all_gather);
collective!(sum_scatter, dist::sum_scatter);

#[pyfunction]
#[pyo3(signature = (x, dst, *, group=None, stream=None))]
fn send(x: Obj, dst: usize, group: Option<PyRef<PyGroup>>, stream: OptObj) -> PyResult<PyArray> {
    let _s = StreamGuard::enter(stream)?;
    let g = self::group(group);
    ok(dist::send(&to_array(x, None)?, dst, g.as_ref()))
}

#[pyfunction]
#[pyo3(signature = (shape, dtype, src, *, group=None, stream=None))]
fn recv(shape: Obj, dtype: Obj, src: usize, group: Option<PyRef<PyGroup>>, stream: OptObj) -> PyResult<PyArray> {
    let _s = StreamGuard::enter(stream)?;
    let shape = opt_shape(Some(shape))?.ok_or_else(|| PyValueError::new_err("[recv] shape is required"))?;
    let dt = dtype_arg(Some(dtype))?.ok_or_else(|| PyValueError::new_err("[recv] dtype is required"))?;
    let g = self::group(group);
    ok(dist::recv(&shape, dt, src, g.as_ref()))
}

#[pyfunction]
#[pyo3(signature = (x, src, *, group=None, stream=None))]
fn recv_like(x: Obj, src: usize, group: Option<PyRef<PyGroup>>, stream: OptObj) -> PyResult<PyArray> {
    let _s = StreamGuard::enter(stream)?;
    let g = self::group(group);
    ok(dist::recv_like(&to_array(x, None)?, src, g.as_ref()))
}

pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let m = PyModule::new(parent.py(), "distributed")?;
    m.add_class::<PyGroup>()?;
    for f in [
        wrap_pyfunction!(is_available, &m)?,
        wrap_pyfunction!(init, &m)?,
        wrap_pyfunction!(all_sum, &m)?,
        wrap_pyfunction!(all_max, &m)?,
        wrap_pyfunction!(all_min, &m)?,
        wrap_pyfunction!(all_gather, &m)?,
        wrap_pyfunction!(sum_scatter, &m)?,
        wrap_pyfunction!(send, &m)?,
        wrap_pyfunction!(recv, &m)?,
        wrap_pyfunction!(recv_like, &m)?,
    ] {
        m.add_function(f)?;
    }
    parent.add_submodule(&m)
}
