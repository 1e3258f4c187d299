//! `mx.custom_function` (a function with Python-defined `vjp`, `jvp` and `vmap` rules) and
//! `mx.checkpoint`, over oxmx-core's `custom_function` and `checkpoint`. The Python callables run
//! inside the Rust rules (taking the GIL); a Python exception raised there is kept and re-raised
//! as itself when the transform reports the failure (see `convert::to_pyerr`).

use crate::convert::to_pyerr;
use crate::transforms::{flatten, unflatten, TreeDef};
use oxmx_core::{Array, Error};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};
use std::sync::{Arc, Mutex};

/// The Python exception a callback raised last, with the message the Rust error carries.
static PENDING: Mutex<Option<(String, PyErr)>> = Mutex::new(None);

/// Keeps `e` to be re-raised in place of the Rust error made from it; returns that error.
pub fn keep_pyerr(py: Python<'_>, e: PyErr, what: &str) -> Error {
    let msg = format!("[{what}] {}", e.value(py));
    *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = Some((msg.clone(), e));
    Error::runtime(msg)
}

/// The kept Python exception when `msg` is (or contains) its message.
pub fn take_pending(msg: &str) -> Option<PyErr> {
    let mut g = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if g.as_ref().is_some_and(|(m, _)| msg.contains(m.as_str())) {
        return g.take().map(|(_, e)| e);
    }
    None
}

/// One call's structure: the Python function, its argument trees and keyword arguments, and
/// the output structure the forward pass produced.
struct CallCtx {
    fun: Py<PyAny>,
    defs: Vec<TreeDef>,
    kwargs: Option<Py<PyDict>>,
    out_def: Mutex<Option<TreeDef>>,
    name: &'static str,
}

impl CallCtx {
    fn args<'py>(&self, py: Python<'py>, leaves: &[Array]) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut it = leaves.to_vec().into_iter();
        self.defs.iter().map(|d| unflatten(py, d, &mut it)).collect()
    }
    /// MLX hands the rules the single argument itself, several as a tuple.
    fn packed<'py>(&self, py: Python<'py>, leaves: &[Array]) -> PyResult<Bound<'py, PyAny>> {
        let mut v = self.args(py, leaves)?;
        if v.len() == 1 {
            return Ok(v.remove(0));
        }
        Ok(PyTuple::new(py, v)?.into_any())
    }
    fn outputs<'py>(&self, py: Python<'py>, leaves: &[Array]) -> PyResult<Bound<'py, PyAny>> {
        let g = self.out_def.lock().unwrap_or_else(|p| p.into_inner());
        let def = g.as_ref().ok_or_else(|| PyValueError::new_err("internal: the forward pass has not run"))?;
        unflatten(py, def, &mut leaves.to_vec().into_iter())
    }
    fn forward(&self, x: &[Array]) -> oxmx_core::Result<Vec<Array>> {
        Python::attach(|py| {
            let run = || -> PyResult<Vec<Array>> {
                let args = PyTuple::new(py, self.args(py, x)?)?;
                let out = self.fun.bind(py).call(args, self.kwargs.as_ref().map(|k| k.bind(py)))?;
                let mut leaves = vec![];
                let def = flatten(&out, &mut leaves)?;
                if leaves.is_empty() {
                    return Err(PyValueError::new_err(format!("[{}] the function must return arrays", self.name)));
                }
                *self.out_def.lock().unwrap_or_else(|p| p.into_inner()) = Some(def);
                Ok(leaves)
            };
            run().map_err(|e| keep_pyerr(py, e, self.name))
        })
    }
}

/// Leaves of a rule's result; `expected` of them.
fn result_leaves(obj: &Bound<'_, PyAny>, expected: usize, what: &str) -> PyResult<Vec<Array>> {
    let mut leaves = vec![];
    flatten(obj, &mut leaves)?;
    if leaves.len() != expected {
        return Err(PyValueError::new_err(format!(
            "[custom_function] the {what} returned {} arrays but {expected} were expected",
            leaves.len()
        )));
    }
    Ok(leaves)
}

/// An axis per leaf, as the Python tree of the arguments (`None` for an unbatched leaf).
fn axes_tree<'py>(py: Python<'py>, def: &TreeDef, axes: &mut dyn Iterator<Item = Option<usize>>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match def {
        TreeDef::Leaf => match axes.next().flatten() {
            Some(a) => a.into_pyobject(py)?.into_any(),
            None => py.None().into_bound(py),
        },
        TreeDef::Other(o) => o.bind(py).clone(),
        TreeDef::List(v) => PyList::new(py, v.iter().map(|d| axes_tree(py, d, axes)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        TreeDef::Tuple(v) => PyTuple::new(py, v.iter().map(|d| axes_tree(py, d, axes)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        TreeDef::Dict(v) => {
            let d = PyDict::new(py);
            for (k, x) in v {
                d.set_item(k.bind(py), axes_tree(py, x, axes)?)?;
            }
            d.into_any()
        }
    })
}

fn axis_item(o: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if o.is_none() {
        return Ok(None);
    }
    let a: i64 = o.extract().map_err(|_| PyTypeError::new_err("[custom_function] vmap output axes must be ints or None"))?;
    if a < 0 {
        return Err(PyValueError::new_err("[custom_function] vmap output axes must be non-negative"));
    }
    Ok(Some(a as usize))
}

#[pyclass(name = "custom_function", module = "oxmx.core")]
pub struct PyCustomFunction {
    fun: Py<PyAny>,
    vjp: Option<Py<PyAny>>,
    jvp: Option<Py<PyAny>>,
    vmap: Option<Py<PyAny>>,
}

fn check_callable(f: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if !f.is_callable() {
        return Err(PyTypeError::new_err(format!("[{what}] expected a callable")));
    }
    Ok(())
}

/// Flattens a call's arguments: the leaves and the per-call context.
fn prepare(
    fun: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    name: &'static str,
) -> PyResult<(Vec<Array>, Arc<CallCtx>)> {
    let mut leaves = vec![];
    let defs: Vec<TreeDef> = args.iter().map(|a| flatten(&a, &mut leaves)).collect::<PyResult<_>>()?;
    let ctx = CallCtx { fun: fun.clone().unbind(), defs, kwargs: kwargs.map(|k| k.clone().unbind()), out_def: Mutex::new(None), name };
    Ok((leaves, Arc::new(ctx)))
}

/// Runs `f` and turns its outputs back into the function's output structure.
fn finish<'py>(py: Python<'py>, ctx: &CallCtx, r: oxmx_core::Result<Vec<Array>>) -> PyResult<Bound<'py, PyAny>> {
    let outs = r.map_err(to_pyerr)?;
    for o in &outs {
        o.check().map_err(to_pyerr)?;
    }
    ctx.outputs(py, &outs)
}

#[pymethods]
impl PyCustomFunction {
    #[new]
    fn new(f: &Bound<'_, PyAny>) -> PyResult<Self> {
        check_callable(f, "custom_function")?;
        Ok(PyCustomFunction { fun: f.clone().unbind(), vjp: None, jvp: None, vmap: None })
    }
    /// Sets the vjp rule `f(primals, cotangents, outputs) -> cotangents of the primals`.
    fn vjp(&mut self, f: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        check_callable(f, "custom_function.vjp")?;
        self.vjp = Some(f.clone().unbind());
        Ok(f.clone().unbind())
    }
    /// Sets the jvp rule `f(primals, tangents) -> output tangents`.
    fn jvp(&mut self, f: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        check_callable(f, "custom_function.jvp")?;
        self.jvp = Some(f.clone().unbind());
        Ok(f.clone().unbind())
    }
    /// Sets the vmap rule `f(inputs, axes) -> (outputs, output axes)`.
    fn vmap(&mut self, f: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        check_callable(f, "custom_function.vmap")?;
        self.vmap = Some(f.clone().unbind());
        Ok(f.clone().unbind())
    }
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.fun.clone_ref(py)
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (leaves, ctx) = prepare(self.fun.bind(py), args, kwargs, "custom_function")?;
        let c = ctx.clone();
        let mut cf = oxmx_core::custom_function("custom_function", move |x| c.forward(x));
        if let Some(v) = &self.vjp {
            let (c, v) = (ctx.clone(), v.clone_ref(py));
            let n = leaves.len();
            cf = cf.vjp(move |primals, outs, cots| {
                Python::attach(|py| {
                    let run = || -> PyResult<Vec<Array>> {
                        let r = v.bind(py).call1((c.packed(py, primals)?, c.outputs(py, cots)?, c.outputs(py, outs)?))?;
                        result_leaves(&r, n, "vjp")
                    };
                    run().map_err(|e| keep_pyerr(py, e, "custom_function"))
                })
            });
        }
        if self.vjp.is_none() {
            // MLX's default: differentiate the forward function itself.
            let c = ctx.clone();
            cf = cf.vjp(move |primals, _outs, cots| {
                let f = c.clone();
                let g = move |p: Vec<Array>| f.forward(&p).unwrap_or_else(|e| vec![Array::error(e)]);
                Ok(oxmx_core::vjp(g, &primals.to_vec(), &cots.to_vec())?.1)
            });
        }
        if let Some(j) = &self.jvp {
            let (c, j) = (ctx.clone(), j.clone_ref(py));
            cf = cf.jvp(move |primals, tangents| {
                Python::attach(|py| {
                    let run = || -> PyResult<Vec<Array>> {
                        let r = j.bind(py).call1((c.packed(py, primals)?, c.packed(py, tangents)?))?;
                        let mut leaves = vec![];
                        flatten(&r, &mut leaves)?;
                        Ok(leaves)
                    };
                    run().map_err(|e| keep_pyerr(py, e, "custom_function"))
                })
            });
        }
        if let Some(vm) = &self.vmap {
            let (c, vm) = (ctx.clone(), vm.clone_ref(py));
            cf = cf.vmap(move |inputs, axes| {
                Python::attach(|py| {
                    let run = || -> PyResult<(Vec<Array>, Vec<Option<usize>>)> {
                        let mut it = axes.iter().copied();
                        let trees: Vec<Bound<'_, PyAny>> = c.defs.iter().map(|d| axes_tree(py, d, &mut it)).collect::<PyResult<_>>()?;
                        let axes_obj =
                            if trees.len() == 1 { trees.into_iter().next().unwrap() } else { PyTuple::new(py, trees)?.into_any() };
                        let r = vm.bind(py).call1((c.packed(py, inputs)?, axes_obj))?;
                        let r = r
                            .cast::<PyTuple>()
                            .map_err(|_| PyTypeError::new_err("[custom_function] the vmap rule must return (outputs, axes)"))?;
                        if r.len() != 2 {
                            return Err(PyTypeError::new_err("[custom_function] the vmap rule must return (outputs, axes)"));
                        }
                        let mut outs = vec![];
                        flatten(&r.get_item(0)?, &mut outs)?;
                        let ax = r.get_item(1)?;
                        let out_axes: Vec<Option<usize>> = if ax.is_none() || ax.is_instance_of::<PyInt>() {
                            vec![axis_item(&ax)?; outs.len()]
                        } else {
                            ax.try_iter()?.map(|a| axis_item(&a?)).collect::<PyResult<_>>()?
                        };
                        if out_axes.len() != outs.len() {
                            return Err(PyValueError::new_err(format!(
                                "[custom_function] the vmap rule returned {} outputs but {} axes",
                                outs.len(),
                                out_axes.len()
                            )));
                        }
                        Ok((outs, out_axes))
                    };
                    run().map_err(|e| keep_pyerr(py, e, "custom_function"))
                })
            });
        }
        let r = cf.call(&leaves);
        finish(py, &ctx, r)
    }
}

/// `mx.checkpoint(fun)`: `fun` whose intermediates are recomputed in the backward pass.
#[pyclass(name = "_Checkpointed", module = "oxmx.core")]
pub struct PyCheckpointed {
    fun: Py<PyAny>,
}

#[pymethods]
impl PyCheckpointed {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (leaves, ctx) = prepare(self.fun.bind(py), args, kwargs, "checkpoint")?;
        let c = ctx.clone();
        let f = oxmx_core::checkpoint(move |x: &[Array]| c.forward(x));
        let r = f(&leaves);
        finish(py, &ctx, r)
    }
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.fun.clone_ref(py)
    }
}

#[pyfunction]
pub fn checkpoint(fun: &Bound<'_, PyAny>) -> PyResult<PyCheckpointed> {
    check_callable(fun, "checkpoint")?;
    Ok(PyCheckpointed { fun: fun.clone().unbind() })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCustomFunction>()?;
    m.add_class::<PyCheckpointed>()?;
    m.add_function(wrap_pyfunction!(checkpoint, m)?)?;
    Ok(())
}
