//! Quantizing a model in place, as MLX's `nn.quantize`.
//!
//! Design. Rust fields have static types, so a model's `Linear` field cannot become a
//! `QuantizedLinear`. Instead `Linear` and `Embedding` carry both representations: dense
//! (`weight` float, `quant: None`) or quantized (`weight` the packed `uint32` matrix, `scales`
//! and — for affine — `biases` set, `quant: Some(spec)`). Their parameter paths are then
//! exactly MLX's `QuantizedLinear`/`QuantizedEmbedding` keys (`weight`, `scales`, `biases`,
//! `bias`), so an mlx-community checkpoint loads with `load_weights` after the model is built
//! dense and quantized with the checkpoint's config (shapes then match). The forward passes
//! switch on `quant`. `#[module(quantizable)]` on the struct makes the derive expose the layer
//! through `Module::quantizable`, which `quantize` calls while walking `apply_to_modules`;
//! any other module type can opt in the same way by implementing [`Quantizable`].
//! As in MLX, the packed weights, scales and biases are frozen (not trainable); `bias` stays
//! trainable.

use crate::layers::{Embedding, Linear};
use crate::Module;
use oxmx_core::{ops, Error, Result};

/// Per-layer quantization parameters (MLX's `group_size`, `bits`, `mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantSpec {
    pub group_size: usize,
    pub bits: usize,
    pub mode: String,
}

impl QuantSpec {
    pub fn new(group_size: usize, bits: usize, mode: &str) -> QuantSpec {
        QuantSpec { group_size, bits, mode: mode.to_string() }
    }
}

/// A layer that can swap its dense weight for a quantized one.
pub trait Quantizable {
    /// Whether the layer can take this spec (MLX's default predicate: the weight's last axis
    /// divides into groups).
    fn can_quantize(&self, spec: &QuantSpec) -> bool;
    /// Packs the weight with `spec`, adds scales (and biases) and freezes them.
    fn quantize_in_place(&mut self, spec: &QuantSpec) -> Result<()>;
    fn quant_spec(&self) -> Option<&QuantSpec>;
    /// The concrete layer, for code that needs more than quantization (LoRA reaches `Linear`
    /// through this while walking a model); `None` unless the type opts in.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

fn pack(weight: &oxmx_core::Array, spec: &QuantSpec) -> Result<(oxmx_core::Array, oxmx_core::Array, Option<oxmx_core::Array>)> {
    let (wq, s, b) = ops::quantize(weight, Some(spec.group_size), Some(spec.bits), &spec.mode);
    wq.check()?;
    s.check()?;
    if let Some(b) = &b {
        b.check()?;
    }
    Ok((wq, s, b))
}

macro_rules! quantizable {
    ($t:ty) => {
        impl Quantizable for $t {
            fn can_quantize(&self, spec: &QuantSpec) -> bool {
                self.quant.is_none() && self.weight.ndim() == 2 && spec.group_size > 0 && self.weight.shape()[1] % spec.group_size == 0
            }
            fn quantize_in_place(&mut self, spec: &QuantSpec) -> Result<()> {
                if self.quant.is_some() {
                    return Err(Error::invalid(format!("[quantize] this {} is already quantized", stringify!($t))));
                }
                let (wq, s, b) = pack(&self.weight, spec)?;
                self.weight = wq;
                self.scales = Some(s);
                self.biases = b;
                self.quant = Some(spec.clone());
                let mut frozen = vec!["weight", "scales"];
                if self.biases.is_some() {
                    frozen.push("biases");
                }
                self.freeze_paths(&frozen)
            }
            fn quant_spec(&self) -> Option<&QuantSpec> {
                self.quant.as_ref()
            }
            fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
                Some(self)
            }
        }
    };
}
quantizable!(Linear);
quantizable!(Embedding);

/// MLX's `nn.quantize(model, group_size, bits, mode, class_predicate)`: quantizes every
/// quantizable layer (`Linear`, `Embedding`, or any module implementing [`Quantizable`]).
/// `predicate(path, module)` chooses per layer: `None` skips it, `Some(spec)` quantizes it with
/// `spec` (per-layer bits/group size, as MLX's dict-returning predicate); without a predicate
/// every layer whose input axis divides into groups of `group_size` is quantized. Layers whose
/// shapes do not fit the chosen spec are skipped, as in MLX.
pub fn quantize(
    model: &mut dyn Module,
    group_size: usize,
    bits: usize,
    mode: &str,
    predicate: Option<&dyn Fn(&str, &dyn Module) -> Option<QuantSpec>>,
) -> Result<()> {
    let default = QuantSpec::new(group_size, bits, mode);
    let mut result = Ok(());
    model.apply_to_modules(&mut |path, m| {
        if result.is_err() {
            return;
        }
        let spec = match predicate {
            Some(p) => match p(path, &*m) {
                Some(s) => s,
                None => return,
            },
            None => default.clone(),
        };
        if let Some(q) = m.quantizable() {
            if q.can_quantize(&spec) {
                result = q.quantize_in_place(&spec).map_err(|e| Error::invalid(format!("[quantize] layer `{path}`: {e}")));
            }
        }
    });
    result
}
