//! `Linear`, `Identity` and `Embedding`, as in `mlx.nn`.

use crate::{init, Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype};

/// `y = x W^T + b` with `weight: [output_dims, input_dims]` (PyTorch's and MLX's layout).
#[derive(Module, Clone, Debug)]
pub struct Linear {
    pub weight: Array,
    pub bias: Option<Array>,
    pub state: ModuleState,
}

impl Linear {
    /// Weight and bias drawn from U(-1/sqrt(in), 1/sqrt(in)), as MLX.
    pub fn new(input_dims: usize, output_dims: usize, bias: bool) -> Linear {
        let scale = (1.0 / input_dims as f64).sqrt();
        Linear {
            weight: init::uniform(&[output_dims, input_dims], Dtype::Float32, -scale, scale),
            bias: bias.then(|| init::uniform(&[output_dims], Dtype::Float32, -scale, scale)),
            state: ModuleState::default(),
        }
    }

    pub fn from_weights(weight: Array, bias: Option<Array>) -> Linear {
        Linear { weight, bias, state: ModuleState::default() }
    }
}

impl UnaryModule for Linear {
    fn forward(&self, x: &Array) -> Array {
        let wt = ops::swapaxes(&self.weight, -1, -2);
        match &self.bias {
            Some(b) => ops::addmm(b, x, &wt, 1.0, 1.0),
            None => ops::matmul(x, &wt),
        }
    }
}

/// Passes its input through.
#[derive(Module, Clone, Debug, Default)]
pub struct Identity;

impl UnaryModule for Identity {
    fn forward(&self, x: &Array) -> Array {
        x.clone()
    }
}

/// A lookup table `weight: [num_embeddings, dims]` indexed by integer arrays.
#[derive(Module, Clone, Debug)]
pub struct Embedding {
    pub weight: Array,
    pub state: ModuleState,
}

impl Embedding {
    /// Weight drawn from N(0, 1/dims), as MLX.
    pub fn new(num_embeddings: usize, dims: usize) -> Embedding {
        let scale = (1.0 / dims as f64).sqrt();
        Embedding { weight: init::normal(&[num_embeddings, dims], Dtype::Float32, 0.0, scale), state: ModuleState::default() }
    }

    /// `x @ weight^T`: the tied output projection of a language model.
    pub fn as_linear(&self, x: &Array) -> Array {
        ops::matmul(x, &ops::swapaxes(&self.weight, -1, -2))
    }
}

impl UnaryModule for Embedding {
    fn forward(&self, x: &Array) -> Array {
        ops::take(&self.weight, x, Some(0))
    }
}
