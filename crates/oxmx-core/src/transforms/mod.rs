//! Function transformations over `Tree`s: automatic differentiation (`vjp`, `jvp`, `grad`,
//! `value_and_grad`, `checkpoint`, `custom_function`, `stop_gradient`), `vmap` and `compile`.

mod api;
mod autodiff;
pub mod compile;
pub(crate) mod rules;
pub mod tree;
mod vmap;
mod vmap_rules;

pub use api::{
    checkpoint, custom_function, grad, grad_argnums, jvp, stop_gradient, value_and_grad, value_and_grad_argnums, vjp, CustomFunction,
};
pub use compile::{
    compile, compile_enabled, compile_shapeless, disable_compile, enable_compile, set_compile_enabled, CompileStats, CompiledFn,
};
pub use tree::{tree_flatten, tree_map, tree_structure, tree_unflatten, Tree};
pub use vmap::vmap;

/// Whether `a` depends on the input of a transform that is tracing right now (a `compile`,
/// `grad`, `vjp`, `jvp` or `vmap` function's argument, or anything computed from one). Reading
/// such an array on the host (`item`, `to_vec`) gives its value for this trace only: a compiled
/// function would bake it in as a constant. Code that turns state into host numbers (an
/// optimizer's step count) checks this and keeps the array instead.
pub fn is_traced(a: &crate::array::Array) -> bool {
    crate::graph::trace::is_tracing() && crate::graph::trace::traced_op(a).is_some()
}
