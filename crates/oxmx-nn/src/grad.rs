//! `value_and_grad` over a module: differentiate a loss with respect to the module's trainable
//! parameters, as `mlx.nn.value_and_grad` does (the parameters are swapped in, traced, restored).

use crate::module::{Module, Params};
use oxmx_core::transforms::Tree;
use oxmx_core::Result;
use std::cell::RefCell;

/// Evaluates `loss(model)` and its gradient with respect to `model.trainable_parameters()`.
/// The gradients are keyed by parameter path, ready for an optimizer.
pub fn value_and_grad<M: Module + ?Sized, O: Tree>(model: &mut M, loss: impl Fn(&M) -> O) -> Result<(O, Params)> {
    let params = model.trainable_parameters();
    let cell = RefCell::new(&mut *model);
    let f = |p: Params| {
        let mut m = cell.borrow_mut();
        // The keys come from the model itself, so this cannot fail.
        let _ = m.update(&p);
        loss(&**m)
    };
    let (value, grads) = oxmx_core::value_and_grad(f)(params.clone());
    model.update(&params)?;
    Ok((value, grads))
}
