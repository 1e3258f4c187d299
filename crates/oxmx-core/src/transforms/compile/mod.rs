//! `compile`: trace a function once per input signature, simplify and fuse the traced graph,
//! and replay it on later calls (MLX's `mx.compile`).
//!
//! Tracing runs the function on tracers of the inputs (their data is never read: the traced
//! graph is recorded as a `Tape` and dropped unevaluated). The tape is cached under the tree
//! structure and each leaf's dtype and shape (`shapeless`: dtype and rank), so a call with a
//! known signature only rebuilds nodes (`replay`). Arrays the function closes over are
//! captured as constants when traced; state that must change between calls (an RNG key, a
//! counter, model or optimizer state) is passed in the input tree and returned in the output
//! tree.
//!
//! Files: `tape` (recording), `simplify` (constant merge, no-op removal, CSE), `fuse`
//! (element-wise regions into `Fused` nodes), `replay` (rebuilding nodes, shapeless
//! re-inference), `enabled` (the global switch).

mod enabled;
mod fuse;
mod replay;
mod simplify;
mod tape;

pub use enabled::{compile_enabled, disable_compile, enable_compile, set_compile_enabled};

use super::autodiff::tracer;
use super::tree::{tree_flatten, tree_map, tree_structure, tree_unflatten, Tree};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::trace;
use std::collections::HashMap;
use std::fmt::Write;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tape::Tape;

/// What the passes did to the most recently traced signature.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Instructions recorded from the trace.
    pub traced: usize,
    /// After constant merge, no-op removal and CSE.
    pub simplified: usize,
    /// After fusion (what a call replays).
    pub fused: usize,
    /// Fused regions made.
    pub regions: usize,
}

struct Entry<O> {
    tape: Tape,
    /// The output tree's structure (its leaves are placeholders).
    template: O,
}

struct Inner<F, O> {
    f: F,
    shapeless: bool,
    cache: Mutex<HashMap<String, Arc<Entry<O>>>>,
    traces: AtomicUsize,
    stats: Mutex<Option<CompileStats>>,
}

/// A compiled function: call it with [`CompiledFn::call`] (or turn it into a closure with
/// [`CompiledFn::as_fn`]). Cloning shares the cache.
pub struct CompiledFn<F, I, O> {
    inner: Arc<Inner<F, O>>,
    _in: PhantomData<fn(I)>,
}

impl<F, I, O> Clone for CompiledFn<F, I, O> {
    fn clone(&self) -> Self {
        CompiledFn { inner: self.inner.clone(), _in: PhantomData }
    }
}

/// Compiles `f`: traced once per tree structure, leaf shapes and dtypes.
pub fn compile<I: Tree, O: Tree, F: Fn(I) -> O>(f: F) -> CompiledFn<F, I, O> {
    new(f, false)
}

/// Compiles `f` for any leaf shapes: traced once per tree structure, leaf dtypes and ranks
/// (MLX's `shapeless=True`). Primitives whose parameters fix shapes (reshape, slice, explicit
/// broadcasts, ...) make a call with new shapes fail with an error.
pub fn compile_shapeless<I: Tree, O: Tree, F: Fn(I) -> O>(f: F) -> CompiledFn<F, I, O> {
    new(f, true)
}

fn new<F, I, O>(f: F, shapeless: bool) -> CompiledFn<F, I, O> {
    let inner = Inner { f, shapeless, cache: Mutex::new(HashMap::new()), traces: AtomicUsize::new(0), stats: Mutex::new(None) };
    CompiledFn { inner: Arc::new(inner), _in: PhantomData }
}

impl<F: Fn(I) -> O, I: Tree, O: Tree> CompiledFn<F, I, O> {
    /// Calls the compiled function. Errors (a failing trace, shapeless replay of a
    /// shape-fixing primitive) are carried by the returned arrays.
    #[track_caller]
    pub fn call(&self, x: I) -> O {
        let inner = &*self.inner;
        if !compile_enabled() {
            return (inner.f)(x);
        }
        let leaves = tree_flatten(&x);
        if leaves.iter().any(|a| a.check().is_err()) {
            // Errors flow through the plain function exactly as through any op.
            return (inner.f)(x);
        }
        let key = signature(&x, &leaves, inner.shapeless);
        let cached = inner.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let entry = match cached {
            Some(e) => e,
            None => match self.trace(&x, &leaves) {
                Ok(e) => {
                    inner.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, e.clone());
                    e
                }
                Err(out) => return out,
            },
        };
        match replay::replay(&entry.tape, &leaves, inner.shapeless) {
            Ok(outs) => tree_unflatten(&entry.template, outs).unwrap_or_else(|e| error_tree(&entry.template, &e)),
            Err(e) => error_tree(&entry.template, &e.at(Location::caller())),
        }
    }

    /// `self.call` as a closure (for `grad(compiled.as_fn())` and the like).
    pub fn as_fn(&self) -> impl Fn(I) -> O + Clone {
        let c = self.clone();
        move |x| c.call(x)
    }

    /// How many times the function was traced (once per new signature).
    pub fn trace_count(&self) -> usize {
        self.inner.traces.load(Ordering::Relaxed)
    }

    /// What the passes did to the most recently traced signature.
    pub fn stats(&self) -> Option<CompileStats> {
        *self.inner.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Instructions a call replays for the most recently traced signature.
    pub fn tape_len(&self) -> Option<usize> {
        self.stats().map(|s| s.fused)
    }

    /// Traces `f` on tracers of `leaves` and prepares its tape; a trace whose outputs carry an
    /// error returns those outputs (nothing is cached).
    fn trace(&self, x: &I, leaves: &[Array]) -> std::result::Result<Arc<Entry<O>>, O> {
        let inner = &*self.inner;
        inner.traces.fetch_add(1, Ordering::Relaxed);
        let traced = trace::tracing(|| -> Result<std::result::Result<(Tape, O), O>> {
            let tracers: Vec<Array> = leaves.iter().map(tracer).collect();
            let out = (inner.f)(tree_unflatten(x, tracers.clone())?);
            let outs = tree_flatten(&out);
            if outs.iter().any(|a| a.check().is_err()) {
                return Ok(Err(out));
            }
            let tape = Tape::record(&tracers, &outs);
            let template = tree_map(&out, |_| placeholder())?;
            Ok(Ok((tape, template)))
        });
        let (mut tape, template) = match traced {
            Ok(Ok(t)) => t,
            Ok(Err(out)) => return Err(out),
            // Only unflattening can fail here, and a tree always takes its own leaves back.
            Err(_) => return Err((inner.f)(tree_unflatten(x, leaves.to_vec()).expect("same tree"))),
        };
        let mut stats = CompileStats { traced: tape.instrs.len(), ..Default::default() };
        simplify::simplify(&mut tape);
        stats.simplified = tape.instrs.len();
        stats.regions = fuse::fuse(&mut tape);
        stats.fused = tape.instrs.len();
        if inner.shapeless {
            replay::mark_passthrough(&mut tape);
        }
        *inner.stats.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
        Ok(Arc::new(Entry { tape, template }))
    }
}

/// A leaf of an output template (never read).
fn placeholder() -> Array {
    Array::error(Error::runtime("[compile] internal: template leaf"))
}

fn error_tree<T: Tree>(like: &T, e: &Error) -> T {
    tree_map(like, |_| Array::error(e.clone())).unwrap_or_else(|_| tree_unflatten(like, tree_flatten(like)).expect("same tree"))
}

/// The cache key: tree structure and, per leaf, dtype and shape (or rank when shapeless).
fn signature<I: Tree>(x: &I, leaves: &[Array], shapeless: bool) -> String {
    let mut k = tree_structure(x);
    for a in leaves {
        if shapeless {
            let _ = write!(k, "|{}:{}", a.dtype(), a.ndim());
        } else {
            let _ = write!(k, "|{}:{:?}", a.dtype(), a.shape());
        }
    }
    k
}
