//! Transforms of Python callables: `grad`, `value_and_grad`, `vjp`, `jvp`, `vmap`, `compile`.
//! A Python function of array trees (arrays in nested lists, tuples and dicts) becomes a Rust
//! closure over its leaves; oxmx-core's transforms do the work.

use crate::array::PyArray;
use crate::convert::{ok, to_array, to_pyerr, IntoPyResult};
use oxmx_core::{Array, Error};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

/// The structure of a Python tree; leaves that are not arrays are kept as they are.
pub enum TreeDef {
    Leaf,
    Other(Py<PyAny>),
    List(Vec<TreeDef>),
    Tuple(Vec<TreeDef>),
    Dict(Vec<(Py<PyAny>, TreeDef)>),
}

impl TreeDef {
    fn describe(&self, out: &mut String) {
        match self {
            TreeDef::Leaf => out.push('*'),
            TreeDef::Other(_) => out.push('o'),
            TreeDef::List(v) | TreeDef::Tuple(v) => {
                out.push(if matches!(self, TreeDef::List(_)) { '[' } else { '(' });
                for d in v {
                    d.describe(out);
                    out.push(',');
                }
                out.push(']');
            }
            TreeDef::Dict(v) => {
                out.push('{');
                for (k, d) in v {
                    out.push_str(&k.to_string());
                    out.push(':');
                    d.describe(out);
                    out.push(',');
                }
                out.push('}');
            }
        }
    }
}

pub fn flatten(obj: &Bound<'_, PyAny>, out: &mut Vec<Array>) -> PyResult<TreeDef> {
    if let Ok(a) = obj.cast::<PyArray>() {
        out.push(a.borrow().a.clone());
        return Ok(TreeDef::Leaf);
    }
    if obj.is_instance_of::<PyList>() {
        return Ok(TreeDef::List(obj.try_iter()?.map(|x| flatten(&x?, out)).collect::<PyResult<_>>()?));
    }
    if obj.is_instance_of::<PyTuple>() {
        return Ok(TreeDef::Tuple(obj.try_iter()?.map(|x| flatten(&x?, out)).collect::<PyResult<_>>()?));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut v = vec![];
        for (k, x) in d.iter() {
            v.push((k.unbind(), flatten(&x, out)?));
        }
        return Ok(TreeDef::Dict(v));
    }
    Ok(TreeDef::Other(obj.clone().unbind()))
}

pub fn unflatten<'py>(py: Python<'py>, def: &TreeDef, leaves: &mut dyn Iterator<Item = Array>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match def {
        TreeDef::Leaf => {
            let a = leaves.next().ok_or_else(|| PyValueError::new_err("internal: too few leaves"))?;
            Bound::new(py, PyArray::new(a))?.into_any()
        }
        TreeDef::Other(o) => o.bind(py).clone(),
        TreeDef::List(v) => PyList::new(py, v.iter().map(|d| unflatten(py, d, leaves)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        TreeDef::Tuple(v) => PyTuple::new(py, v.iter().map(|d| unflatten(py, d, leaves)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        TreeDef::Dict(v) => {
            let d = PyDict::new(py);
            for (k, x) in v {
                d.set_item(k.bind(py), unflatten(py, x, leaves)?)?;
            }
            d.into_any()
        }
    })
}

/// A Python function over `args` whose leaves are replaced: `f(leaves) -> output leaves`,
/// remembering the output structure and the first Python error.
struct Wrapped<'py> {
    py: Python<'py>,
    fun: Bound<'py, PyAny>,
    defs: Vec<TreeDef>,
    kwargs: Option<Bound<'py, PyDict>>,
    out_def: RefCell<Option<TreeDef>>,
    error: RefCell<Option<PyErr>>,
}

impl<'py> Wrapped<'py> {
    fn call(&self, leaves: Vec<Array>) -> Vec<Array> {
        match self.try_call(leaves) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                if self.error.borrow().is_none() {
                    *self.error.borrow_mut() = Some(e);
                }
                vec![Array::error(Error::runtime(msg))]
            }
        }
    }
    fn try_call(&self, leaves: Vec<Array>) -> PyResult<Vec<Array>> {
        let mut it = leaves.into_iter();
        let args: Vec<Bound<'py, PyAny>> = self.defs.iter().map(|d| unflatten(self.py, d, &mut it)).collect::<PyResult<_>>()?;
        let out = self.fun.call(PyTuple::new(self.py, args)?, self.kwargs.as_ref())?;
        let mut leaves = vec![];
        let def = flatten(&out, &mut leaves)?;
        *self.out_def.borrow_mut() = Some(def);
        Ok(leaves)
    }
    fn raise_pending(&self) -> PyResult<()> {
        match self.error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn check_all(v: &[Array]) -> PyResult<()> {
    for a in v {
        a.check().map_err(to_pyerr)?;
    }
    Ok(())
}

/// `argnums` as a list, and whether it was a single int.
fn parse_argnums(argnums: Option<&Bound<'_, PyAny>>) -> PyResult<(Vec<usize>, bool)> {
    match argnums {
        None => Ok((vec![0], true)),
        Some(a) if a.is_none() => Ok((vec![0], true)),
        Some(a) if a.is_instance_of::<PyInt>() => {
            let i: i64 = a.extract()?;
            if i < 0 {
                return Err(PyValueError::new_err("[grad] argnums must be non-negative"));
            }
            Ok((vec![i as usize], true))
        }
        Some(a) => {
            let v: Vec<usize> = a.try_iter()?.map(|x| x?.extract::<usize>()).collect::<PyResult<_>>()?;
            Ok((v, false))
        }
    }
}

#[pyclass(name = "_ValueAndGrad", module = "oxmx.core")]
pub struct ValueAndGrad {
    fun: Py<PyAny>,
    argnums: Vec<usize>,
    single: bool,
    grad_only: bool,
}

#[pymethods]
impl ValueAndGrad {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = args.len();
        if let Some(&bad) = self.argnums.iter().find(|&&i| i >= n) {
            return Err(PyValueError::new_err(format!(
                "[grad] Can't compute the gradient of argument index {bad} because the function is called with only {n} positional arguments."
            )));
        }
        let mut arg_defs = Vec::with_capacity(n);
        let mut arg_leaves: Vec<Vec<Array>> = Vec::with_capacity(n);
        for a in args.iter() {
            let mut l = vec![];
            arg_defs.push(flatten(&a, &mut l)?);
            arg_leaves.push(l);
        }
        // Differentiated leaves in argnums order; the other arguments are constants.
        let diff: Vec<Array> = self.argnums.iter().flat_map(|&i| arg_leaves[i].iter().cloned()).collect();
        let w = Wrapped {
            py,
            fun: self.fun.bind(py).clone(),
            defs: arg_defs,
            kwargs: kwargs.cloned(),
            out_def: RefCell::new(None),
            error: RefCell::new(None),
        };
        let argnums = &self.argnums;
        let f = |x: Vec<Array>| -> Vec<Array> {
            let mut blocks = arg_leaves.clone();
            let mut off = 0;
            for &i in argnums {
                let c = arg_leaves[i].len();
                blocks[i] = x[off..off + c].to_vec();
                off += c;
            }
            w.call(blocks.concat())
        };
        let vg = oxmx_core::value_and_grad(f);
        let (outs, grads) = vg(diff);
        w.raise_pending()?;
        check_all(&outs)?;
        check_all(&grads)?;
        let mut it = grads.into_iter();
        let mut grad_objs = vec![];
        for &i in &self.argnums {
            let block: Vec<Array> = it.by_ref().take(arg_leaves[i].len()).collect();
            grad_objs.push(unflatten(py, &w.defs[i], &mut block.into_iter())?);
        }
        let grads_obj = if self.single { grad_objs.into_iter().next().unwrap() } else { PyTuple::new(py, grad_objs)?.into_any() };
        if self.grad_only {
            return Ok(grads_obj);
        }
        let out_def = w.out_def.borrow_mut().take().ok_or_else(|| PyValueError::new_err("[value_and_grad] no output"))?;
        let value = unflatten(py, &out_def, &mut outs.into_iter())?;
        Ok(PyTuple::new(py, [value, grads_obj])?.into_any())
    }
}

fn check_callable(fun: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if !fun.is_callable() {
        return Err(PyTypeError::new_err(format!("[{what}] expected a callable")));
    }
    Ok(())
}

#[pyfunction]
#[pyo3(signature = (fun, argnums=None, argnames=None))]
pub fn value_and_grad(
    fun: &Bound<'_, PyAny>,
    argnums: Option<&Bound<'_, PyAny>>,
    argnames: Option<&Bound<'_, PyAny>>,
) -> PyResult<ValueAndGrad> {
    check_callable(fun, "value_and_grad")?;
    if argnames.is_some_and(|a| !a.is_none()) {
        return Err(PyValueError::new_err("[value_and_grad] argnames is not supported yet"));
    }
    let (argnums, single) = parse_argnums(argnums)?;
    Ok(ValueAndGrad { fun: fun.clone().unbind(), argnums, single, grad_only: false })
}

#[pyfunction]
#[pyo3(signature = (fun, argnums=None, argnames=None))]
pub fn grad(fun: &Bound<'_, PyAny>, argnums: Option<&Bound<'_, PyAny>>, argnames: Option<&Bound<'_, PyAny>>) -> PyResult<ValueAndGrad> {
    check_callable(fun, "grad")?;
    if argnames.is_some_and(|a| !a.is_none()) {
        return Err(PyValueError::new_err("[grad] argnames is not supported yet"));
    }
    let (argnums, single) = parse_argnums(argnums)?;
    Ok(ValueAndGrad { fun: fun.clone().unbind(), argnums, single, grad_only: true })
}

fn arrays_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Array>> {
    obj.try_iter()?.map(|x| to_array(&x?, None)).collect()
}

fn pyarrays(v: Vec<Array>) -> PyResult<Vec<PyArray>> {
    v.into_iter().map(ok).collect()
}

/// `vjp(fun, primals, cotangents) -> (outputs, vjps)`; `fun` takes the primals as positional
/// arguments and returns an array or a list/tuple of arrays.
#[pyfunction]
pub fn vjp(
    py: Python<'_>,
    fun: &Bound<'_, PyAny>,
    primals: &Bound<'_, PyAny>,
    cotangents: &Bound<'_, PyAny>,
) -> PyResult<(Vec<PyArray>, Vec<PyArray>)> {
    with_primals(py, fun, primals, cotangents, "vjp", |f, p, c| oxmx_core::vjp(f, p, c))
}

/// `jvp(fun, primals, tangents) -> (outputs, jvps)`.
#[pyfunction]
pub fn jvp(
    py: Python<'_>,
    fun: &Bound<'_, PyAny>,
    primals: &Bound<'_, PyAny>,
    tangents: &Bound<'_, PyAny>,
) -> PyResult<(Vec<PyArray>, Vec<PyArray>)> {
    with_primals(py, fun, primals, tangents, "jvp", |f, p, t| oxmx_core::jvp(f, p, t))
}

/// `vjp`/`jvp`'s shared part: `fun` wrapped over its positional array arguments, `transform`
/// run on it with the primals and the second list, a Python error raised inside `fun` re-raised.
fn with_primals<'py>(
    py: Python<'py>,
    fun: &Bound<'py, PyAny>,
    primals: &Bound<'py, PyAny>,
    second: &Bound<'py, PyAny>,
    name: &str,
    transform: impl FnOnce(&dyn Fn(Vec<Array>) -> Vec<Array>, &Vec<Array>, &Vec<Array>) -> oxmx_core::Result<(Vec<Array>, Vec<Array>)>,
) -> PyResult<(Vec<PyArray>, Vec<PyArray>)> {
    check_callable(fun, name)?;
    let p = arrays_of(primals)?;
    let s = arrays_of(second)?;
    let w = Wrapped {
        py,
        fun: fun.clone(),
        defs: p.iter().map(|_| TreeDef::Leaf).collect(),
        kwargs: None,
        out_def: RefCell::new(None),
        error: RefCell::new(None),
    };
    let r = transform(&|x: Vec<Array>| w.call(x), &p, &s);
    w.raise_pending()?;
    let (outs, seconds) = r.py()?;
    Ok((pyarrays(outs)?, pyarrays(seconds)?))
}

#[pyclass(name = "_Vmapped", module = "oxmx.core")]
pub struct Vmapped {
    fun: Py<PyAny>,
    in_axes: Py<PyAny>,
    out_axes: Py<PyAny>,
}

fn axis_of(o: &Bound<'_, PyAny>) -> PyResult<Option<isize>> {
    if o.is_none() {
        Ok(None)
    } else {
        Ok(Some(o.extract::<isize>()?))
    }
}

#[pymethods]
impl Vmapped {
    #[pyo3(signature = (*args))]
    fn __call__<'py>(&self, py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let mut leaves = vec![];
        let mut defs = vec![];
        let mut leaf_axes: Vec<Option<isize>> = vec![];
        let in_axes = self.in_axes.bind(py);
        let per_arg: Vec<Option<isize>> = if in_axes.is_instance_of::<PyTuple>() || in_axes.is_instance_of::<PyList>() {
            let v: Vec<Option<isize>> = in_axes.try_iter()?.map(|x| axis_of(&x?)).collect::<PyResult<_>>()?;
            if v.len() != args.len() {
                return Err(PyValueError::new_err(format!(
                    "[vmap] The number of in axes ({}) must match the number of positional arguments ({}).",
                    v.len(),
                    args.len()
                )));
            }
            v
        } else {
            vec![axis_of(in_axes)?; args.len()]
        };
        for (i, a) in args.iter().enumerate() {
            let before = leaves.len();
            defs.push(flatten(&a, &mut leaves)?);
            leaf_axes.extend(std::iter::repeat_n(per_arg[i], leaves.len() - before));
        }
        let out_axes = self.out_axes.bind(py);
        let outs_spec: Vec<isize> = if out_axes.is_instance_of::<PyTuple>() || out_axes.is_instance_of::<PyList>() {
            out_axes.try_iter()?.map(|x| x?.extract::<isize>()).collect::<PyResult<_>>()?
        } else {
            vec![out_axes.extract::<isize>()?]
        };
        let w = Wrapped { py, fun: self.fun.bind(py).clone(), defs, kwargs: None, out_def: RefCell::new(None), error: RefCell::new(None) };
        let vf = oxmx_core::vmap(|x: Vec<Array>| w.call(x), &leaf_axes, &outs_spec);
        let outs = vf(leaves);
        w.raise_pending()?;
        check_all(&outs)?;
        let def = w.out_def.borrow_mut().take().ok_or_else(|| PyValueError::new_err("[vmap] no output"))?;
        unflatten(py, &def, &mut outs.into_iter())
    }
}

#[pyfunction]
#[pyo3(signature = (fun, in_axes=None, out_axes=None))]
pub fn vmap(
    py: Python<'_>,
    fun: &Bound<'_, PyAny>,
    in_axes: Option<&Bound<'_, PyAny>>,
    out_axes: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vmapped> {
    check_callable(fun, "vmap")?;
    let zero = || 0i64.into_pyobject(py).map(|o| o.into_any().unbind());
    Ok(Vmapped {
        fun: fun.clone().unbind(),
        in_axes: match in_axes {
            Some(a) => a.clone().unbind(),
            None => zero()?,
        },
        out_axes: match out_axes {
            Some(a) => a.clone().unbind(),
            None => zero()?,
        },
    })
}

type LeafFn = Box<dyn Fn(Vec<Array>) -> Vec<Array> + Send + Sync>;

/// The state a compiled call shares with the traced Python function.
struct CompileState {
    fun: Py<PyAny>,
    /// Input structure of the current call (set before calling the compiled function).
    in_defs: Mutex<Option<Vec<TreeDef>>>,
    /// Output structure per input signature.
    out_defs: Mutex<HashMap<String, TreeDef>>,
    current_key: Mutex<String>,
    error: Mutex<Option<PyErr>>,
}

#[pyclass(name = "_Compiled", module = "oxmx.core")]
pub struct Compiled {
    state: std::sync::Arc<CompileState>,
    compiled: oxmx_core::CompiledFn<LeafFn, Vec<Array>, Vec<Array>>,
}

#[pymethods]
impl Compiled {
    #[pyo3(signature = (*args))]
    fn __call__<'py>(&self, py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let mut leaves = vec![];
        let defs: Vec<TreeDef> = args.iter().map(|a| flatten(&a, &mut leaves)).collect::<PyResult<_>>()?;
        let mut key = String::new();
        for d in &defs {
            d.describe(&mut key);
        }
        for l in &leaves {
            key.push_str(&format!("{:?}{:?};", l.shape(), l.dtype()));
        }
        *self.state.current_key.lock().unwrap() = key.clone();
        *self.state.in_defs.lock().unwrap() = Some(defs);
        let outs = self.compiled.call(leaves);
        *self.state.in_defs.lock().unwrap() = None;
        if let Some(e) = self.state.error.lock().unwrap().take() {
            return Err(e);
        }
        check_all(&outs)?;
        let map = self.state.out_defs.lock().unwrap();
        let def = map.get(&key).ok_or_else(|| PyValueError::new_err("[compile] no output structure recorded"))?;
        unflatten(py, def, &mut outs.into_iter())
    }
}

#[pyfunction]
#[pyo3(signature = (fun, inputs=None, outputs=None, shapeless=false))]
pub fn compile(
    fun: &Bound<'_, PyAny>,
    inputs: Option<&Bound<'_, PyAny>>,
    outputs: Option<&Bound<'_, PyAny>>,
    shapeless: bool,
) -> PyResult<Compiled> {
    check_callable(fun, "compile")?;
    if inputs.is_some_and(|a| !a.is_none()) || outputs.is_some_and(|a| !a.is_none()) {
        return Err(PyValueError::new_err("[compile] captured inputs/outputs are not supported yet"));
    }
    let state = std::sync::Arc::new(CompileState {
        fun: fun.clone().unbind(),
        in_defs: Mutex::new(None),
        out_defs: Mutex::new(HashMap::new()),
        current_key: Mutex::new(String::new()),
        error: Mutex::new(None),
    });
    let st = state.clone();
    let f: LeafFn = Box::new(move |x: Vec<Array>| -> Vec<Array> {
        Python::attach(|py| {
            let run = || -> PyResult<Vec<Array>> {
                let guard = st.in_defs.lock().unwrap();
                let defs = guard.as_ref().ok_or_else(|| PyValueError::new_err("internal: no input structure"))?;
                let mut it = x.into_iter();
                let args: Vec<Bound<'_, PyAny>> = defs.iter().map(|d| unflatten(py, d, &mut it)).collect::<PyResult<_>>()?;
                drop(guard);
                let out = st.fun.bind(py).call1(PyTuple::new(py, args)?)?;
                let mut leaves = vec![];
                let def = flatten(&out, &mut leaves)?;
                let key = st.current_key.lock().unwrap().clone();
                st.out_defs.lock().unwrap().insert(key, def);
                Ok(leaves)
            };
            match run() {
                Ok(v) => v,
                Err(e) => {
                    let msg = e.to_string();
                    st.error.lock().unwrap().get_or_insert(e);
                    vec![Array::error(Error::runtime(msg))]
                }
            }
        })
    });
    let compiled = if shapeless { oxmx_core::compile_shapeless(f) } else { oxmx_core::compile(f) };
    Ok(Compiled { state, compiled })
}

#[pyfunction]
pub fn disable_compile() {
    oxmx_core::disable_compile()
}
#[pyfunction]
pub fn enable_compile() {
    oxmx_core::enable_compile()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ValueAndGrad>()?;
    m.add_class::<Vmapped>()?;
    m.add_class::<Compiled>()?;
    m.add_function(wrap_pyfunction!(grad, m)?)?;
    m.add_function(wrap_pyfunction!(value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(vjp, m)?)?;
    m.add_function(wrap_pyfunction!(jvp, m)?)?;
    m.add_function(wrap_pyfunction!(vmap, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(disable_compile, m)?)?;
    m.add_function(wrap_pyfunction!(enable_compile, m)?)?;
    Ok(())
}
