//! Gradient checkpointing of the transformer blocks (mlx-lm's `--grad-checkpoint`, which wraps
//! the block class's `__call__` in `mx.checkpoint`): while [`enabled`] on this thread, a block
//! run without a KV cache keeps only its input and output for the backward pass and recomputes
//! its intermediates there. The block's trainable parameters are inputs of the checkpointed
//! function, so their gradients flow through it.

use crate::cache::KvCache;
use crate::models::base::Layer;
use oxmx_core::Array;
use oxmx_nn::Params;
use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// Whether blocks are checkpointed on this thread.
pub fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Turns checkpointing on or off for this thread until the guard drops (the old value returns).
pub fn scoped(on: bool) -> Guard {
    Guard(ENABLED.with(|c| c.replace(on)))
}

pub struct Guard(bool);

impl Drop for Guard {
    fn drop(&mut self) {
        ENABLED.with(|c| c.set(self.0));
    }
}

/// A block's forward pass, checkpointed when [`enabled`] and there is no cache.
pub fn layer_forward<L: Layer>(layer: &L, h: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
    if cache.is_some() || !enabled() {
        return layer.forward(h, cache);
    }
    let params = layer.trainable_parameters();
    let names: Vec<String> = params.keys().cloned().collect();
    let n = names.len();
    let mut inputs: Vec<Array> = params.into_values().collect();
    inputs.push(h.clone());
    let template = layer.clone();
    let f = oxmx_core::checkpoint(move |xs: &[Array]| {
        let mut l = template.clone();
        let p: Params = names.iter().cloned().zip(xs[..n].iter().cloned()).collect();
        l.update(&p)?;
        Ok(vec![l.forward(&xs[n], None)])
    });
    match f(&inputs) {
        Ok(mut out) if !out.is_empty() => out.swap_remove(0),
        Ok(_) => Array::error(oxmx_core::Error::invalid("[checkpoint] the block returned nothing")),
        Err(e) => Array::error(e),
    }
}
