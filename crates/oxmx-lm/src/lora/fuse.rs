//! Merging adapters into the base weights (mlx-lm's `fuse`): every `Linear` with an adapter
//! becomes a plain layer whose weight includes it, re-quantized with its own parameters when it
//! was quantized unless `dequantize`. `convert` then writes the model as an MLX folder.

use oxmx_core::{Error, Result};
use oxmx_nn::{Linear, Module};

/// Fuses every adapter of `model` in place; returns how many layers were fused.
pub fn fuse_model(model: &mut dyn Module, dequantize: bool) -> Result<usize> {
    let mut fused = 0;
    let mut result = Ok(());
    model.apply_to_modules(&mut |path, m| {
        if result.is_err() {
            return;
        }
        let Some(lin) = m.quantizable().and_then(|q| q.as_any_mut()).and_then(|a| a.downcast_mut::<Linear>()) else { return };
        if lin.lora.is_none() {
            return;
        }
        match lin.fuse_lora(dequantize) {
            Ok(f) => {
                *lin = f;
                fused += 1;
            }
            Err(e) => result = Err(Error::invalid(format!("[fuse] layer `{path}`: {e}"))),
        }
    });
    result.map(|_| fused)
}
