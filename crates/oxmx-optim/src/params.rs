//! Named parameter maps and the checks every optimizer runs on its inputs.

use oxmx_core::prelude::*;
use std::collections::BTreeMap;

/// Arrays by dotted parameter path (`"layers.0.weight"`): parameters, gradients and optimizer
/// state all use this form. A `BTreeMap` so that iteration (and so graph construction and
/// saved files) is in a stable order.
pub type Params = BTreeMap<String, Array>;

/// Checks that every gradient has a floating-point parameter of the same shape and that neither
/// carries an error, so that an optimizer can refuse bad input before it changes any state.
pub(crate) fn check_pairs(grads: &Params, params: &Params, who: &str) -> Result<()> {
    for (key, g) in grads {
        let Some(p) = params.get(key) else {
            return Err(Error::invalid(format!("[{who}] gradient '{key}' has no matching parameter")));
        };
        if g.shape() != p.shape() {
            return Err(Error::invalid(format!(
                "[{who}] gradient '{key}' has shape {:?} but the parameter has shape {:?}",
                g.shape(),
                p.shape()
            )));
        }
        if !p.dtype().is_float() {
            return Err(Error::invalid(format!(
                "[{who}] parameter '{key}' has dtype {}; optimizers update floating-point parameters only",
                p.dtype()
            )));
        }
        if !g.dtype().is_float() {
            return Err(Error::invalid(format!("[{who}] gradient '{key}' has dtype {}; expected a floating-point gradient", g.dtype())));
        }
        p.check().map_err(|e| e.context(format!("[{who}] parameter '{key}'")))?;
        g.check().map_err(|e| e.context(format!("[{who}] gradient '{key}'")))?;
    }
    Ok(())
}
