//! Clipping gradients by their global norm.

use crate::params::Params;
use oxmx_core::prelude::*;

/// MLX's `clip_grad_norm`: scales all gradients by `min(max_norm / (norm + 1e-6), 1)`, where
/// `norm` is the 2-norm of all gradients together. Returns the (lazy) clipped gradients and the
/// total norm before clipping.
///
/// float16 squares are summed in float32 so they cannot overflow; floating gradients keep their
/// dtype. A negative (or NaN) `max_norm` is an error.
pub fn clip_grad_norm(grads: &Params, max_norm: f32) -> Result<(Params, Array)> {
    if !(max_norm >= 0.0) {
        return Err(Error::invalid(format!("[clip_grad_norm] max_norm should be >=0, {max_norm} was provided instead")));
    }
    let mut norm_squared: Option<Array> = None;
    for (key, g) in grads {
        g.check().map_err(|e| e.context(format!("[clip_grad_norm] gradient '{key}'")))?;
        let g = if g.dtype() == Dtype::Float16 { g.astype(Dtype::Float32) } else { g.clone() };
        let sq = ops::sum(&ops::square(&g), Axes::All, false);
        norm_squared = Some(match norm_squared {
            // MLX starts its reduction from the Python float 0.0, which makes integer sums float.
            None => &sq + 0.0,
            Some(acc) => &acc + &sq,
        });
    }
    let total_norm = ops::sqrt(&norm_squared.unwrap_or_else(|| Array::scalar(0.0f32)));
    let normalizer = ops::minimum(max_norm as f64 / &(&total_norm + 1e-6), 1.0);
    let clipped = grads
        .iter()
        .map(|(k, g)| {
            let scaled = g * &normalizer;
            // Cast after scaling, so that a small normalizer cannot underflow in float16.
            let scaled = if g.dtype().is_float() && scaled.dtype() != g.dtype() { scaled.astype(g.dtype()) } else { scaled };
            (k.clone(), scaled)
        })
        .collect();
    Ok((clipped, total_norm))
}
