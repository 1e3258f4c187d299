//! The public transforms: `vjp`, `jvp`, `grad`, `value_and_grad` (whole-tree or `argnums`),
//! `stop_gradient`, `custom_function` and `checkpoint`. Functions take and return `Tree`s;
//! `grad`/`value_and_grad` return plain functions (errors travel inside the returned arrays, as
//! everywhere in oxmx), so transforms nest: `grad(grad(f))`, `vmap(grad(f))`, `jvp(vjp ...)`.

use super::autodiff::{backprop, forward, tracer};
use super::tree::{tree_flatten, tree_structure, tree_unflatten, Tree};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::graph::trace;
use crate::ops as o;
use crate::primitives::custom::{CustomOp, ForwardFn, JvpFn, VjpFn, VmapFn};
use crate::primitives::{Primitive, ShapeOp};
use std::panic::Location;
use std::sync::Arc;

/// Runs `body` in a trace, then (outermost only) clears the tapes behind what it returns.
fn traced<R>(body: impl FnOnce() -> Result<R>, returned: impl Fn(&R) -> Vec<Array>) -> Result<R> {
    let r = trace::tracing(body)?;
    trace::release_tapes(&returned(&r));
    Ok(r)
}

fn check_leaves(what: &str, leaves: &[Array]) -> Result<()> {
    for (i, a) in leaves.iter().enumerate() {
        a.check().map_err(|e| Error::new(e.kind(), format!("[{what}] input leaf {i} carries an error: {e}")))?;
    }
    Ok(())
}

fn check_like(what: &str, role: &str, expected: &[Array], got: &[Array]) -> Result<()> {
    if expected.len() != got.len() {
        crate::bail!("[{what}] expected {} {role} (one per leaf), got {}", expected.len(), got.len());
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if e.shape() != g.shape() {
            crate::bail!("[{what}] {role} {i} has shape {:?} but its primal has shape {:?}", g.shape(), e.shape());
        }
    }
    Ok(())
}

/// Vector-Jacobian product: `(f(primals), cotangentsᵀ · ∂f/∂primals)`.
pub fn vjp<I: Tree, O: Tree>(f: impl FnOnce(I) -> O, primals: &I, cotangents: &O) -> Result<(O, I)> {
    let p = tree_flatten(primals);
    check_leaves("vjp", &p)?;
    let c = tree_flatten(cotangents);
    let (outs, grads) = traced(
        || {
            let tr: Vec<Array> = p.iter().map(tracer).collect();
            let out = f(tree_unflatten(primals, tr.clone())?);
            let outs = tree_flatten(&out);
            check_like("vjp", "cotangents", &outs, &c)?;
            let grads = backprop(&tr, &outs, &c)?;
            Ok((out, grads))
        },
        |(out, g)| tree_flatten(out).into_iter().chain(g.iter().cloned()).collect(),
    )?;
    Ok((outs, tree_unflatten(primals, grads)?))
}

/// Jacobian-vector product: `(f(primals), ∂f/∂primals · tangents)`.
pub fn jvp<I: Tree, O: Tree>(f: impl FnOnce(I) -> O, primals: &I, tangents: &I) -> Result<(O, O)> {
    let p = tree_flatten(primals);
    check_leaves("jvp", &p)?;
    let t = tree_flatten(tangents);
    check_like("jvp", "tangents", &p, &t)?;
    let (out, tans) = traced(
        || {
            let tr: Vec<Array> = p.iter().map(tracer).collect();
            let out = f(tree_unflatten(primals, tr.clone())?);
            let tans = forward(&tr, &t, &tree_flatten(&out))?;
            Ok((out, tans))
        },
        |(out, t)| tree_flatten(out).into_iter().chain(t.iter().cloned()).collect(),
    )?;
    let tans = tree_unflatten(&out, tans)?;
    Ok((out, tans))
}

/// `(f(x), ∂loss/∂x)` where the loss is the first leaf of `f`'s output (a scalar); the other
/// leaves are auxiliary outputs returned untouched.
fn value_and_grad_impl<I: Tree, O: Tree>(f: &dyn Fn(I) -> O, x: &I, select: Option<&[usize]>) -> Result<(O, Vec<Array>)> {
    let p = tree_flatten(x);
    check_leaves("value_and_grad", &p)?;
    let wanted: Vec<usize> = match select {
        None => (0..p.len()).collect(),
        Some(a) => {
            if let Some(&bad) = a.iter().find(|&&i| i >= p.len()) {
                return Err(Error::invalid(format!(
                    "[value_and_grad] Can't compute the gradient of argument index {bad} because the function is called with only {} arguments.",
                    p.len()
                )));
            }
            a.to_vec()
        }
    };
    traced(
        || {
            let tr: Vec<Array> = p.iter().enumerate().map(|(i, a)| if wanted.contains(&i) { tracer(a) } else { a.clone() }).collect();
            let out = f(tree_unflatten(x, tr.clone())?);
            let outs = tree_flatten(&out);
            let Some(loss) = outs.first() else {
                crate::bail!(
                    "[value_and_grad] The function must return an array (its first output is the loss), got {}",
                    tree_structure(&out)
                );
            };
            loss.check()?;
            if loss.size() != 1 {
                crate::bail!("[value_and_grad] The loss (the first output) must be a scalar array, got shape {:?}.", loss.shape());
            }
            let seed = o::ones_like(loss);
            let sel: Vec<Array> = wanted.iter().map(|&i| tr[i].clone()).collect();
            let grads = backprop(&sel, &[loss.clone()], &[seed])?;
            Ok((out, grads))
        },
        |(out, g)| tree_flatten(out).into_iter().chain(g.iter().cloned()).collect(),
    )
}

/// Leaves that carry `e` in place of every leaf of `like`.
pub(super) fn error_tree<T: Tree>(like: &T, e: &Error) -> T {
    let n = tree_flatten(like).len();
    tree_unflatten(like, (0..n).map(|_| Array::error(e.clone())).collect()).expect("same leaf count")
}

/// `value_and_grad(f)(x) = (f(x), ∂f(x)[0]/∂x)`, the gradient shaped like `x`. Errors (a
/// non-scalar loss, a failing rule) are carried by the returned arrays.
pub fn value_and_grad<I: Tree, O: Tree>(f: impl Fn(I) -> O) -> impl Fn(I) -> (O, I) {
    move |x: I| match value_and_grad_impl(&f, &x, None).and_then(|(o, g)| Ok((o, tree_unflatten(&x, g)?))) {
        Ok(r) => r,
        Err(e) => {
            let e = e.at(Location::caller());
            let out = error_out(&f, &x, &e);
            (out, error_tree(&x, &e))
        }
    }
}

/// On failure the value is unknown too; the output structure comes from running `f` plainly.
pub(super) fn error_out<I: Tree, O: Tree>(f: &dyn Fn(I) -> O, x: &I, e: &Error) -> O {
    error_tree(&f(tree_unflatten(x, tree_flatten(x)).expect("same tree")), e)
}

/// The gradient of a scalar-valued `f`, shaped like its input.
pub fn grad<I: Tree>(f: impl Fn(I) -> Array) -> impl Fn(I) -> I {
    let vg = value_and_grad(f);
    move |x: I| vg(x).1
}

/// MLX's `argnums`: differentiate only with respect to the arguments at `argnums`; the
/// returned gradients follow `argnums`' order.
pub fn value_and_grad_argnums<O: Tree>(f: impl Fn(Vec<Array>) -> O, argnums: &[usize]) -> impl Fn(Vec<Array>) -> (O, Vec<Array>) {
    let argnums = argnums.to_vec();
    move |x: Vec<Array>| match value_and_grad_impl(&f, &x, Some(&argnums)) {
        Ok(r) => r,
        Err(e) => {
            let out = error_out(&f, &x, &e);
            (out, argnums.iter().map(|_| Array::error(e.clone())).collect())
        }
    }
}

/// `grad` with `argnums` (see [`value_and_grad_argnums`]).
pub fn grad_argnums(f: impl Fn(Vec<Array>) -> Array, argnums: &[usize]) -> impl Fn(Vec<Array>) -> Vec<Array> {
    let vg = value_and_grad_argnums(f, argnums);
    move |x| vg(x).1
}

/// The identity whose derivative is zero.
#[track_caller]
pub fn stop_gradient(a: &Array) -> Array {
    Array::from_op(Primitive::Shape(ShapeOp::StopGradient), vec![a.clone()])
}

/// A function with user-supplied derivative and batching rules (MLX's `custom_function`).
/// Unset rules fall back: jvp through the vjp, vmap by batching the forward function.
pub struct CustomFunction {
    name: String,
    forward: ForwardFn,
    vjp: Option<VjpFn>,
    jvp: Option<JvpFn>,
    vmap: Option<VmapFn>,
}

/// Starts a custom function from its forward computation over a list of arrays.
pub fn custom_function(name: &str, forward: impl Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static) -> CustomFunction {
    CustomFunction { name: name.to_string(), forward: Arc::new(forward), vjp: None, jvp: None, vmap: None }
}

impl CustomFunction {
    /// `(primals, outputs, output cotangents) -> primal cotangents`.
    pub fn vjp(mut self, f: impl Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static) -> Self {
        self.vjp = Some(Arc::new(f));
        self
    }
    /// `(primals, tangents) -> output tangents`.
    pub fn jvp(mut self, f: impl Fn(&[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static) -> Self {
        self.jvp = Some(Arc::new(f));
        self
    }
    /// `(inputs, batch axis per input) -> (outputs, batch axis per output)`.
    pub fn vmap(
        mut self,
        f: impl Fn(&[Array], &[Option<usize>]) -> Result<(Vec<Array>, Vec<Option<usize>>)> + Send + Sync + 'static,
    ) -> Self {
        self.vmap = Some(Arc::new(f));
        self
    }

    /// Applies the function. The forward runs outside any trace (transforms see only this node
    /// and call the rules), which is also what lets `checkpoint` free its intermediates.
    pub fn call(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        check_leaves(&self.name, inputs)?;
        let outs = trace::untraced(|| (self.forward)(inputs))?;
        let op = CustomOp {
            name: self.name.clone(),
            n_primals: inputs.len(),
            forward: self.forward.clone(),
            vjp: self.vjp.clone(),
            jvp: self.jvp.clone(),
            vmap: self.vmap.clone(),
        };
        let n = outs.len();
        let mut ins = inputs.to_vec();
        ins.extend(outs);
        let res = Array::from_op_multi(Primitive::Custom(op), ins, n);
        for r in &res {
            r.check()?;
        }
        Ok(res)
    }
}

/// `f` whose backward pass recomputes `f`'s intermediates instead of keeping them alive
/// between the forward and backward passes: peak memory for compute.
pub fn checkpoint(f: impl Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static) -> impl Fn(&[Array]) -> Result<Vec<Array>> {
    let f = Arc::new(f);
    let fv = f.clone();
    let cf = custom_function("checkpoint", move |x| f(x)).vjp(move |primals, _outs, cots| {
        let g = fv.clone();
        let (_, grads) = vjp(move |p: Vec<Array>| g(&p).unwrap_or_else(|e| vec![Array::error(e)]), &primals.to_vec(), &cots.to_vec())?;
        Ok(grads)
    });
    move |x: &[Array]| cf.call(x)
}
