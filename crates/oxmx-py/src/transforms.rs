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
    /// How many array leaves the tree holds.
    fn leaf_count(&self) -> usize {
        match self {
            TreeDef::Leaf => 1,
            TreeDef::Other(_) => 0,
            TreeDef::List(v) | TreeDef::Tuple(v) => v.iter().map(TreeDef::leaf_count).sum(),
            TreeDef::Dict(v) => v.iter().map(|(_, d)| d.leaf_count()).sum(),
        }
    }

    /// A cache key for the structure: containers, dict keys, and the value of every constant
    /// leaf (a compiled function is retraced when a Python constant changes, as in MLX).
    fn describe(&self, py: Python<'_>, out: &mut String) {
        match self {
            TreeDef::Leaf => out.push('*'),
            TreeDef::Other(o) => {
                let o = o.bind(py);
                // Type and repr: `1` and `1.0` and `True` are different constants.
                let ty = o.get_type().name().map(|n| n.to_string()).unwrap_or_default();
                let text = o.repr().map(|r| r.to_string()).unwrap_or_default();
                out.push_str(&format!("<{ty}:{text}>"));
            }
            TreeDef::List(v) | TreeDef::Tuple(v) => {
                out.push(if matches!(self, TreeDef::List(_)) { '[' } else { '(' });
                for d in v {
                    d.describe(py, out);
                    out.push(',');
                }
                out.push(']');
            }
            TreeDef::Dict(v) => {
                out.push('{');
                for (k, d) in v {
                    out.push_str(&k.to_string());
                    out.push(':');
                    d.describe(py, out);
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
    /// Arguments passed to `fun` as the caller's own objects (as MLX passes the arguments it
    /// does not differentiate: a dict subclass stays that class); `None` entries are rebuilt
    /// from their leaves. Empty: every argument is rebuilt.
    keep: Vec<Option<Bound<'py, PyAny>>>,
    kwargs: Option<Bound<'py, PyDict>>,
    /// Keyword arguments rebuilt from leaves that follow the positional ones (`argnames`).
    kw_diff: Vec<(String, TreeDef)>,
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
        let mut args: Vec<Bound<'py, PyAny>> = Vec::with_capacity(self.defs.len());
        for (i, d) in self.defs.iter().enumerate() {
            match self.keep.get(i) {
                Some(Some(orig)) => {
                    it.by_ref().take(d.leaf_count()).for_each(drop);
                    args.push(orig.clone());
                }
                _ => args.push(unflatten(self.py, d, &mut it)?),
            }
        }
        let kwargs = match &self.kwargs {
            Some(k) if !self.kw_diff.is_empty() => {
                let k = k.copy()?;
                for (name, d) in &self.kw_diff {
                    k.set_item(name, unflatten(self.py, d, &mut it)?)?;
                }
                Some(k)
            }
            k => k.clone(),
        };
        let out = self.fun.call(PyTuple::new(self.py, args)?, kwargs.as_ref())?;
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

/// `argnums` and `argnames` as MLX resolves them: neither given differentiates argument 0;
/// only `argnames` given differentiates only those keywords; both empty is an error.
fn parse_arguments(
    argnums: Option<&Bound<'_, PyAny>>,
    argnames: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<(Vec<usize>, Vec<String>)> {
    let names: Vec<String> = match argnames {
        None => vec![],
        Some(a) if a.is_none() => vec![],
        Some(a) if a.is_instance_of::<pyo3::types::PyString>() => vec![a.extract()?],
        Some(a) => a.try_iter()?.map(|x| x?.extract::<String>()).collect::<PyResult<_>>()?,
    };
    let nums: Vec<usize> = match argnums {
        None => {
            if names.is_empty() {
                vec![0]
            } else {
                vec![]
            }
        }
        Some(a) if a.is_none() => {
            if names.is_empty() {
                vec![0]
            } else {
                vec![]
            }
        }
        Some(a) if a.is_instance_of::<PyInt>() => vec![a.extract::<i64>()?],
        Some(a) => a.try_iter()?.map(|x| x?.extract::<i64>()).collect::<PyResult<_>>()?,
    }
    .into_iter()
    .map(|i| {
        usize::try_from(i)
            .map_err(|_| PyValueError::new_err(format!("[{what}] Can't compute the gradient of negative argument index {i}.")))
    })
    .collect::<PyResult<_>>()?;
    if nums.is_empty() && names.is_empty() {
        return Err(PyValueError::new_err(format!("[{what}] Gradient wrt no argument requested")));
    }
    Ok((nums, names))
}

#[pyclass(name = "_ValueAndGrad", module = "oxmx.core")]
pub struct ValueAndGrad {
    fun: Py<PyAny>,
    argnums: Vec<usize>,
    argnames: Vec<String>,
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
        let what = if self.grad_only { "grad" } else { "value_and_grad" };
        let n = args.len();
        if let Some(&bad) = self.argnums.iter().find(|&&i| i >= n) {
            return Err(PyValueError::new_err(format!(
                "[{what}] Can't compute the gradient of argument index {bad} because the function is called with only {n} positional arguments."
            )));
        }
        let mut arg_defs = Vec::with_capacity(n);
        let mut arg_leaves: Vec<Vec<Array>> = Vec::with_capacity(n);
        for a in args.iter() {
            let mut l = vec![];
            arg_defs.push(flatten(&a, &mut l)?);
            arg_leaves.push(l);
        }
        // Differentiated keyword arguments: their leaves follow the positional ones.
        let mut kw_diff = Vec::with_capacity(self.argnames.len());
        let mut kw_leaves: Vec<Array> = vec![];
        for name in &self.argnames {
            let value = match kwargs {
                Some(k) => k.get_item(name)?,
                None => None,
            };
            let Some(value) = value else {
                let called: String = kwargs.map(|k| k.keys().iter().map(|x| format!("{x},")).collect()).unwrap_or_default();
                return Err(PyValueError::new_err(format!(
                    "[{what}] Can't compute the gradient of keyword argument '{name}' because the function is called with the following keyword arguments {{{called}}}"
                )));
            };
            let start = kw_leaves.len();
            kw_diff.push((name.clone(), flatten(&value, &mut kw_leaves)?, kw_leaves.len() - start));
        }
        // Differentiated leaves in argnums order, then argnames order; the rest are constants.
        let mut diff: Vec<Array> = self.argnums.iter().flat_map(|&i| arg_leaves[i].iter().cloned()).collect();
        diff.extend(kw_leaves.iter().cloned());
        let keep = args.iter().enumerate().map(|(i, a)| (!self.argnums.contains(&i)).then_some(a)).collect();
        let kw_counts: Vec<usize> = kw_diff.iter().map(|(_, _, c)| *c).collect();
        let w = Wrapped {
            py,
            fun: self.fun.bind(py).clone(),
            defs: arg_defs,
            keep,
            kwargs: kwargs.cloned(),
            kw_diff: kw_diff.into_iter().map(|(name, d, _)| (name, d)).collect(),
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
            let mut all = blocks.concat();
            all.extend(x[off..].iter().cloned());
            w.call(all)
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
        // MLX: one argument index gives its gradient alone, several a tuple.
        let positional = match grad_objs.len() {
            0 => py.None().into_bound(py),
            1 => grad_objs.pop().unwrap(),
            _ => PyTuple::new(py, grad_objs)?.into_any(),
        };
        let grads_obj = if self.argnames.is_empty() {
            positional
        } else {
            let d = PyDict::new(py);
            for ((name, def), count) in w.kw_diff.iter().zip(kw_counts) {
                let block: Vec<Array> = it.by_ref().take(count).collect();
                d.set_item(name, unflatten(py, def, &mut block.into_iter())?)?;
            }
            PyTuple::new(py, [positional, d.into_any()])?.into_any()
        };
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
    let (argnums, argnames) = parse_arguments(argnums, argnames, "value_and_grad")?;
    Ok(ValueAndGrad { fun: fun.clone().unbind(), argnums, argnames, grad_only: false })
}

#[pyfunction]
#[pyo3(signature = (fun, argnums=None, argnames=None))]
pub fn grad(fun: &Bound<'_, PyAny>, argnums: Option<&Bound<'_, PyAny>>, argnames: Option<&Bound<'_, PyAny>>) -> PyResult<ValueAndGrad> {
    check_callable(fun, "grad")?;
    let (argnums, argnames) = parse_arguments(argnums, argnames, "grad")?;
    Ok(ValueAndGrad { fun: fun.clone().unbind(), argnums, argnames, grad_only: true })
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
        keep: vec![],
        kwargs: None,
        kw_diff: vec![],
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
        let w = Wrapped {
            py,
            fun: self.fun.bind(py).clone(),
            defs,
            keep: vec![],
            kwargs: None,
            kw_diff: vec![],
            out_def: RefCell::new(None),
            error: RefCell::new(None),
        };
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
    /// Input structure of the current call (set before calling the compiled function): the
    /// positional arguments and the keyword arguments as one dict, if any.
    in_defs: Mutex<Option<(Vec<TreeDef>, Option<TreeDef>)>>,
    /// Output structure per input signature.
    out_defs: Mutex<HashMap<String, TreeDef>>,
    current_key: Mutex<String>,
    error: Mutex<Option<PyErr>>,
}

type CompiledLeaves = oxmx_core::CompiledFn<LeafFn, Vec<Array>, Vec<Array>>;

#[pyclass(name = "_Compiled", module = "oxmx.core")]
pub struct Compiled {
    state: std::sync::Arc<CompileState>,
    shapeless: bool,
    /// One compiled function per structure and set of Python constants (non-array leaves):
    /// oxmx-core's cache sees only the arrays, and a constant is baked into the trace.
    by_constants: Mutex<HashMap<String, CompiledLeaves>>,
}

impl Compiled {
    fn leaf_fn(&self) -> LeafFn {
        let st = self.state.clone();
        Box::new(move |x: Vec<Array>| -> Vec<Array> {
            Python::attach(|py| {
                let run = || -> PyResult<Vec<Array>> {
                    let guard = st.in_defs.lock().unwrap();
                    let (defs, kw_def) = guard.as_ref().ok_or_else(|| PyValueError::new_err("internal: no input structure"))?;
                    let mut it = x.into_iter();
                    let args: Vec<Bound<'_, PyAny>> = defs.iter().map(|d| unflatten(py, d, &mut it)).collect::<PyResult<_>>()?;
                    let kwargs = match kw_def {
                        Some(d) => Some(unflatten(py, d, &mut it)?.cast_into::<PyDict>()?),
                        None => None,
                    };
                    drop(guard);
                    let out = st.fun.bind(py).call(PyTuple::new(py, args)?, kwargs.as_ref())?;
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
        })
    }
}

#[pymethods]
impl Compiled {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut leaves = vec![];
        let defs: Vec<TreeDef> = args.iter().map(|a| flatten(&a, &mut leaves)).collect::<PyResult<_>>()?;
        let kw_def = match kwargs {
            Some(k) if !k.is_empty() => Some(flatten(k.as_any(), &mut leaves)?),
            _ => None,
        };
        let mut structure = String::new();
        for d in defs.iter().chain(kw_def.iter()) {
            d.describe(py, &mut structure);
        }
        let mut key = structure.clone();
        for l in &leaves {
            key.push_str(&format!("{:?}{:?};", l.shape(), l.dtype()));
        }
        let compiled = {
            let mut map = self.by_constants.lock().unwrap();
            map.entry(structure)
                .or_insert_with(|| {
                    let f = self.leaf_fn();
                    if self.shapeless {
                        oxmx_core::compile_shapeless(f)
                    } else {
                        oxmx_core::compile(f)
                    }
                })
                .clone()
        };
        *self.state.current_key.lock().unwrap() = key.clone();
        *self.state.in_defs.lock().unwrap() = Some((defs, kw_def));
        let outs = compiled.call(leaves);
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

/// `compile(fun, shapeless=False)`. MLX's state capture (`inputs=`, `outputs=`) is layered on
/// this in Python (`oxmx/core/_compile.py`).
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
        return Err(PyValueError::new_err("[compile] captured inputs/outputs are handled by oxmx.core.compile"));
    }
    let state = std::sync::Arc::new(CompileState {
        fun: fun.clone().unbind(),
        in_defs: Mutex::new(None),
        out_defs: Mutex::new(HashMap::new()),
        current_key: Mutex::new(String::new()),
        error: Mutex::new(None),
    });
    Ok(Compiled { state, shapeless, by_constants: Mutex::new(HashMap::new()) })
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
