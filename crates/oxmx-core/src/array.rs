//! `Array`: a cheap, thread-safe handle to a node of the lazy graph.

use crate::dtype::{cast, Dtype, Element};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::node::{Node, Op, Spec, State};
use crate::graph::{scheduler, Data};
use crate::primitives::Primitive;
use crate::shape;
use std::panic::Location;
use std::sync::{Arc, OnceLock};

/// A lazily evaluated n-dimensional array. Cloning is cheap (an `Arc`); ops build graph nodes and
/// work happens in [`Array::eval`], [`crate::eval`], or when data is read.
#[derive(Clone)]
pub struct Array(pub(crate) Arc<Node>);

impl Array {
    /// An array holding `values` (row-major) with `shape`.
    #[track_caller]
    pub fn from_slice<T: Element>(values: &[T], shape: &[usize]) -> Array {
        match Data::from_slice(values, shape.to_vec()) {
            Ok(d) => Array::from_data(d),
            Err(e) => Array::error(e.at(Location::caller())),
        }
    }

    /// A 0-d array.
    #[track_caller]
    pub fn scalar<T: Element>(value: T) -> Array {
        Array::from_slice(&[value], &[])
    }

    /// A 1-d array of `values`.
    #[track_caller]
    pub fn vec<T: Element>(values: &[T]) -> Array {
        Array::from_slice(values, &[values.len()])
    }

    /// Wraps already evaluated data.
    pub fn from_data(data: Data) -> Array {
        let (dtype, shape) = (data.dtype, data.shape.clone());
        Array(Arc::new(Node::new(dtype, shape, 0, State::Ready(data))))
    }

    /// An array that carries `error`; every op on it passes the error on.
    pub fn error(error: Error) -> Array {
        Array(Arc::new(Node::new(Dtype::Float32, vec![], 0, State::Failed(error))))
    }

    /// Runs an op body that may fail; errors raised inside oxmx's own code are attributed to the
    /// caller of the public op (through `#[track_caller]`), errors carried in from inputs keep
    /// their origin.
    #[track_caller]
    pub(crate) fn build(f: impl FnOnce() -> Result<Array>) -> Array {
        let loc = Location::caller();
        match f() {
            Ok(a) => match a.construction_error() {
                Err(e) if is_internal(&e) => Array::error(e.at(loc)),
                _ => a,
            },
            Err(e) if is_internal(&e) => Array::error(e.at(loc)),
            Err(e) => Array::error(e),
        }
    }

    /// Builds a single-output node. Output shape and dtype come from the primitive, so validation
    /// lives in one place (and shapeless compile can re-infer them).
    #[track_caller]
    pub(crate) fn from_op(prim: Primitive, inputs: Vec<Array>) -> Array {
        match Array::try_from_op(prim, inputs, Location::caller()) {
            Ok(mut v) if v.len() == 1 => v.pop().unwrap(),
            Ok(_) => Array::error(Error::runtime("internal: single-output op produced several outputs")),
            Err(e) => Array::error(e),
        }
    }

    /// Builds a multi-output node (all outputs share the op).
    #[allow(dead_code)]
    #[track_caller]
    pub(crate) fn from_op_multi(prim: Primitive, inputs: Vec<Array>, n_expected: usize) -> Vec<Array> {
        match Array::try_from_op(prim, inputs, Location::caller()) {
            Ok(v) => v,
            Err(e) => (0..n_expected).map(|_| Array::error(e.clone())).collect(),
        }
    }

    fn try_from_op(prim: Primitive, inputs: Vec<Array>, loc: &'static Location<'static>) -> Result<Vec<Array>> {
        for a in &inputs {
            a.construction_error()?;
        }
        let in_specs: Vec<Spec> = inputs.iter().map(|a| (a.shape().to_vec(), a.dtype())).collect();
        let specs = prim.output_specs(&in_specs).map_err(|e| e.at(loc))?;
        let stream = crate::stream::default_stream();
        let op = Arc::new(Op { prim, inputs, stream, specs: specs.clone(), outputs: OnceLock::new() });
        let nodes: Vec<Arc<Node>> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (shape, dtype))| Arc::new(Node::new(dtype, shape, i, State::Pending(op.clone()))))
            .collect();
        let _ = op.outputs.set(nodes.iter().map(Arc::downgrade).collect());
        Ok(nodes.into_iter().map(Array).collect())
    }

    /// The error an op recorded when this array was built (or when it was evaluated and failed).
    fn construction_error(&self) -> Result<()> {
        match &*self.0.lock() {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn dtype(&self) -> Dtype {
        self.0.dtype
    }
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }
    pub fn size(&self) -> usize {
        shape::size_of(&self.0.shape)
    }
    pub fn itemsize(&self) -> usize {
        self.0.dtype.size()
    }
    pub fn nbytes(&self) -> usize {
        self.size() * self.itemsize()
    }
    /// The size of dimension `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> usize {
        let nd = self.ndim() as isize;
        let a = if axis < 0 { axis + nd } else { axis };
        if a < 0 || a >= nd {
            0
        } else {
            self.0.shape[a as usize]
        }
    }
    /// A unique id of the underlying node (stable while the array lives).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Surfaces an error recorded by any op that built this array, without evaluating.
    pub fn check(&self) -> Result<()> {
        self.construction_error()
    }
    /// The recorded error, if any.
    pub fn error_value(&self) -> Option<Error> {
        self.construction_error().err()
    }
    /// Whether the array holds computed data.
    pub fn is_evaluated(&self) -> bool {
        matches!(&*self.0.lock(), State::Ready(_))
    }

    /// Computes this array (and what it depends on). Evaluated graphs drop their inputs.
    pub fn eval(&self) -> Result<()> {
        scheduler::eval(&[self])
    }

    /// The evaluated data (evaluates first).
    pub fn data(&self) -> Result<Data> {
        self.eval()?;
        match &*self.0.lock() {
            State::Ready(d) => Ok(d.clone()),
            State::Failed(e) => Err(e.clone()),
            _ => Err(Error::runtime("internal: array not ready after eval")),
        }
    }

    /// The single element, cast to `T` (evaluates first).
    #[track_caller]
    pub fn item<T: Element>(&self) -> Result<T> {
        let d = self.data()?;
        if d.size() != 1 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("[item] item can only be called on arrays of size 1, got shape {:?}", d.shape),
            ));
        }
        Ok(d.get_as::<T>(0))
    }

    /// All elements in row-major order, cast to `T` (evaluates first).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let d = self.data()?;
        crate::dispatch!(d.dtype, S => Ok(d.row_major::<S>().iter().map(|x| cast::<S, T>(*x)).collect()))
    }
}

impl std::fmt::Display for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::print::format_array(self, f)
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::print::format_array(self, f)
    }
}

fn is_internal(e: &Error) -> bool {
    e.location().is_none_or(|l| l.file().replace('\\', "/").contains("oxmx-core/src/"))
}

/// Evaluates several arrays together.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    scheduler::eval(arrays)
}

/// Starts evaluating several arrays and returns at once.
pub fn async_eval(arrays: &[&Array]) {
    scheduler::async_eval(arrays)
}

/// Convenience: `array!([1.0, 2.0])`, `array!(3i32)`.
pub trait IntoArray {
    fn into_array(self) -> Array;
}
impl IntoArray for Array {
    fn into_array(self) -> Array {
        self
    }
}
impl IntoArray for &Array {
    fn into_array(self) -> Array {
        self.clone()
    }
}
impl<T: Element> IntoArray for Vec<T> {
    fn into_array(self) -> Array {
        Array::vec(&self)
    }
}
impl<T: Element> IntoArray for &[T] {
    fn into_array(self) -> Array {
        Array::vec(self)
    }
}
impl<T: Element, const N: usize> IntoArray for [T; N] {
    fn into_array(self) -> Array {
        Array::vec(&self)
    }
}
