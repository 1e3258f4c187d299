//! `LayerNorm` and `RMSNorm` over the last axis, as in `mlx.nn` (statistics in float32 for
//! half-precision inputs, as MLX's fused kernels do).

use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype};

/// Upcasts half precision to float32 for the statistics.
pub(crate) fn stats_dtype(x: &Array) -> Array {
    match x.dtype() {
        Dtype::Float16 | Dtype::Bfloat16 => x.astype(Dtype::Float32),
        _ => x.clone(),
    }
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last axis.
#[derive(Module, Clone, Debug)]
pub struct LayerNorm {
    pub weight: Option<Array>,
    pub bias: Option<Array>,
    #[module(skip)]
    pub eps: f64,
    pub state: ModuleState,
}

impl LayerNorm {
    /// MLX's defaults: `eps = 1e-5`, `affine = true`, `bias = true`.
    pub fn new(dims: usize) -> LayerNorm {
        LayerNorm::with_options(dims, 1e-5, true, true)
    }
    pub fn with_options(dims: usize, eps: f64, affine: bool, bias: bool) -> LayerNorm {
        LayerNorm {
            weight: affine.then(|| ops::ones(&[dims], Dtype::Float32)),
            bias: (affine && bias).then(|| ops::zeros(&[dims], Dtype::Float32)),
            eps,
            state: ModuleState::default(),
        }
    }
}

/// Layer normalisation as a function (MLX's `mx.fast.layer_norm` semantics).
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f64) -> Array {
    let xf = stats_dtype(x);
    let mean = ops::mean(&xf, -1isize, true);
    let centered = &xf - &mean;
    let var = ops::mean(&ops::square(&centered), -1isize, true);
    let mut y = (&centered * &ops::rsqrt(&(var + eps))).astype(x.dtype());
    if let Some(w) = weight {
        y = &y * w;
    }
    if let Some(b) = bias {
        y = &y + b;
    }
    y
}

impl UnaryModule for LayerNorm {
    fn forward(&self, x: &Array) -> Array {
        layer_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}

/// `x / sqrt(mean(x^2) + eps) * weight` over the last axis.
#[derive(Module, Clone, Debug)]
pub struct RMSNorm {
    pub weight: Array,
    #[module(skip)]
    pub eps: f64,
    pub state: ModuleState,
}

impl RMSNorm {
    /// MLX's default `eps = 1e-5`.
    pub fn new(dims: usize) -> RMSNorm {
        RMSNorm::with_eps(dims, 1e-5)
    }
    pub fn with_eps(dims: usize, eps: f64) -> RMSNorm {
        RMSNorm { weight: ops::ones(&[dims], Dtype::Float32), eps, state: ModuleState::default() }
    }
}

/// RMS normalisation as a function (MLX's `mx.fast.rms_norm` semantics).
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f64) -> Array {
    let xf = stats_dtype(x);
    let ms = ops::mean(&ops::square(&xf), -1isize, true);
    let y = (&xf * &ops::rsqrt(&(ms + eps))).astype(x.dtype());
    match weight {
        Some(w) => &y * w,
        None => y,
    }
}

impl UnaryModule for RMSNorm {
    fn forward(&self, x: &Array) -> Array {
        rms_norm(x, Some(&self.weight), self.eps)
    }
}
