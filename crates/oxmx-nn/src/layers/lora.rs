//! LoRA and DoRA adapters on `Linear`, with mlx-lm's `LoRALinear` / `DoRALinear` semantics.
//!
//! Design. Rust fields have static types, so a model's `Linear` field cannot become a
//! `LoRALinear` (the same reason quantization lives inside `Linear`, see `crate::quantize`).
//! Instead `Linear` carries optional `lora_a: [in, r]`, `lora_b: [r, out]` and, for DoRA, the
//! magnitude `m: [out]`, plus the plain settings in [`LoraSpec`]. Their parameter paths are then
//! exactly the keys mlx-lm writes to `adapters.safetensors` (`…q_proj.lora_a`, `…q_proj.lora_b`,
//! `…q_proj.m`); only the base weight's own path differs (`q_proj.weight` here, where mlx-lm's
//! wrapper has `q_proj.linear.weight`), and adapter files never hold base weights.
//!
//! * LoRA: `y = base(x) + scale · (dropout(x) @ A) @ B` (the scale is a plain multiplier, not
//!   alpha / r). The base may be quantized: that is QLoRA.
//! * DoRA: `y = (x Wᵀ + scale · (dropout(x) @ A) @ B) · m / ‖W + scale · Bᵀ Aᵀ‖_row (+ bias)`, the
//!   norm under `stop_gradient`, `W` dequantized when the base is quantized.

use crate::layers::linear::Linear;
use crate::quantize::Quantizable;
use crate::{init, Dropout, Module, ModuleState, UnaryModule};
use oxmx_core::{ops, stop_gradient, Array, Dtype, Error, Result};

/// The non-parameter settings of an adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    /// Multiplies the low-rank product (mlx-lm's `scale`, default 20).
    pub scale: f64,
    /// Dropout on the adapter's input, training mode only.
    pub dropout: f64,
    /// DoRA: the output is rescaled by the learned row magnitudes `m`.
    pub dora: bool,
}

impl Linear {
    /// The input width, also when the weight is packed (`in · bits / 32` words per row).
    pub fn input_dims(&self) -> usize {
        let cols = self.weight.shape().get(1).copied().unwrap_or(0);
        match &self.quant {
            Some(q) if q.bits > 0 => cols * 32 / q.bits,
            _ => cols,
        }
    }

    pub fn output_dims(&self) -> usize {
        self.weight.shape().first().copied().unwrap_or(0)
    }

    /// The weight as a float `[out, in]` matrix (dequantized when packed).
    pub fn dense_weight(&self) -> Array {
        match &self.quant {
            Some(q) => {
                let s = self.scales.as_ref().unwrap_or(&self.weight);
                ops::dequantize(&self.weight, s, self.biases.as_ref(), Some(q.group_size), Some(q.bits), &q.mode, None)
            }
            None => self.weight.clone(),
        }
    }

    /// Attaches a fresh adapter as mlx-lm initialises one: `lora_a` uniform in ±1/√in, `lora_b`
    /// zeros (so the layer's output is unchanged), and for DoRA `m` = the row norms of the
    /// (dequantized) weight. Replaces any adapter already there.
    pub fn add_lora(&mut self, spec: LoraSpec) -> Result<()> {
        if spec.rank == 0 {
            return Err(Error::invalid("[lora] the rank must be at least 1"));
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(Error::invalid(format!("[lora] dropout must be in [0, 1), got {}", spec.dropout)));
        }
        if !spec.scale.is_finite() {
            return Err(Error::invalid(format!("[lora] the scale must be finite, got {}", spec.scale)));
        }
        if self.weight.ndim() != 2 {
            return Err(Error::invalid(format!("[lora] the weight must be a matrix, got shape {:?}", self.weight.shape())));
        }
        let (inp, out) = (self.input_dims(), self.output_dims());
        let bound = 1.0 / (inp as f64).sqrt();
        self.lora_a = Some(init::uniform(&[inp, spec.rank], Dtype::Float32, -bound, bound));
        self.lora_b = Some(ops::zeros(&[spec.rank, out], Dtype::Float32));
        self.m = spec.dora.then(|| row_norms(&self.dense_weight().astype(Dtype::Float32)));
        self.lora = Some(spec);
        Ok(())
    }

    /// Drops the adapter (the layer is its base again).
    pub fn remove_lora(&mut self) {
        self.lora_a = None;
        self.lora_b = None;
        self.m = None;
        self.lora = None;
    }

    /// `scale · Bᵀ Aᵀ`: the `[out, in]` update the adapter adds to the weight (in float32).
    pub fn lora_delta(&self) -> Option<Array> {
        let (spec, a, b) = (self.lora.as_ref()?, self.lora_a.as_ref()?, self.lora_b.as_ref()?);
        Some(ops::matmul(&(ops::swapaxes(b, 0, 1) * spec.scale), &ops::swapaxes(a, 0, 1)))
    }

    /// mlx-lm's `fuse`: a plain `Linear` whose weight includes the adapter (DoRA: rescaled to
    /// the learned row norms), re-quantized with the same parameters when the base was quantized
    /// unless `dequantize`. A layer without an adapter is returned as it is (dequantized if asked).
    pub fn fuse_lora(&self, dequantize: bool) -> Result<Linear> {
        let w = self.dense_weight();
        let mut weight = match self.lora_delta() {
            Some(delta) => &w + &delta.astype(w.dtype()),
            None if self.quant.is_some() && dequantize => w.clone(),
            None => return Ok(self.clone()),
        };
        if let (Some(m), true) = (&self.m, self.lora.as_ref().is_some_and(|s| s.dora)) {
            let scale = m / &row_norms(&weight);
            weight = (&ops::expand_dims(&scale, &[1]) * &weight).astype(w.dtype());
        }
        weight.check()?;
        let mut fused = Linear::from_weights(weight, self.bias.clone());
        if let (Some(q), false) = (&self.quant, dequantize) {
            fused.quantize_in_place(q)?;
        }
        Ok(fused)
    }

    /// The forward pass of a layer with an adapter (called by `Linear::forward`).
    pub(crate) fn forward_lora(&self, x: &Array, spec: &LoraSpec, a: &Array, b: &Array) -> Array {
        let xd = if spec.dropout > 0.0 && self.training() {
            let d = Dropout { p: spec.dropout, state: ModuleState::default() };
            d.forward(x)
        } else {
            x.clone()
        };
        let z = (ops::matmul(&ops::matmul(&xd, a), b) * spec.scale).astype(x.dtype());
        match (&self.m, spec.dora) {
            (Some(m), true) => {
                let w = self.dense_weight();
                let y = &ops::matmul(x, &ops::swapaxes(&w, 0, 1)) + &z;
                let adapted = match self.lora_delta() {
                    Some(d) => &w + &d,
                    None => w,
                };
                let denom = stop_gradient(&row_norms(&adapted));
                let out = &(m / &denom).astype(x.dtype()) * &y;
                match &self.bias {
                    Some(bias) => &out + bias,
                    None => out,
                }
            }
            _ => &self.forward_base(x) + &z,
        }
    }
}

/// The Euclidean norm of each row of `w: [out, in]`.
fn row_norms(w: &Array) -> Array {
    ops::sqrt(&ops::sum(&ops::square(w), 1isize, false))
}
