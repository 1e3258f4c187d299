//! `Linear`, `Identity` and `Embedding`, as in `mlx.nn`. `Linear` and `Embedding` are also
//! MLX's `QuantizedLinear` / `QuantizedEmbedding`: see `crate::quantize` for the design.

use super::lora::LoraSpec;
use crate::quantize::QuantSpec;
use crate::{init, Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype};

/// `y = x W^T + b` with `weight: [output_dims, input_dims]` (PyTorch's and MLX's layout).
/// Quantized (`quant` set, see `crate::quantize`), `weight` holds the packed `uint32` matrix
/// and `scales`/`biases` its group parameters, under MLX's `QuantizedLinear` keys.
/// With an adapter (`lora` set, see `layers/lora.rs`), `lora_a`/`lora_b` (and DoRA's `m`) are
/// mlx-lm's `LoRALinear`/`DoRALinear` parameters under mlx-lm's adapter keys.
#[derive(Module, Clone, Debug)]
#[module(quantizable)]
pub struct Linear {
    pub weight: Array,
    pub scales: Option<Array>,
    pub biases: Option<Array>,
    pub bias: Option<Array>,
    pub lora_a: Option<Array>,
    pub lora_b: Option<Array>,
    pub m: Option<Array>,
    #[module(skip)]
    pub quant: Option<QuantSpec>,
    #[module(skip)]
    pub lora: Option<LoraSpec>,
    /// Tensor parallelism: this rank's slice of the layer and the communication its forward
    /// adds (`crate::distributed::shard_linear`).
    #[module(skip)]
    pub shard: Option<crate::distributed::ShardSpec>,
    pub state: ModuleState,
}

impl Linear {
    /// Weight and bias drawn from U(-1/sqrt(in), 1/sqrt(in)), as MLX.
    pub fn new(input_dims: usize, output_dims: usize, bias: bool) -> Linear {
        let scale = (1.0 / input_dims as f64).sqrt();
        Linear::from_weights(
            init::uniform(&[output_dims, input_dims], Dtype::Float32, -scale, scale),
            bias.then(|| init::uniform(&[output_dims], Dtype::Float32, -scale, scale)),
        )
    }

    pub fn from_weights(weight: Array, bias: Option<Array>) -> Linear {
        Linear {
            weight,
            bias,
            scales: None,
            biases: None,
            lora_a: None,
            lora_b: None,
            m: None,
            quant: None,
            lora: None,
            shard: None,
            state: ModuleState::default(),
        }
    }

    /// MLX's `QuantizedLinear.from_linear` / `Linear.to_quantized`: a quantized copy.
    pub fn to_quantized(&self, group_size: usize, bits: usize, mode: &str) -> oxmx_core::Result<Linear> {
        let mut q = self.clone();
        crate::Quantizable::quantize_in_place(&mut q, &QuantSpec::new(group_size, bits, mode))?;
        Ok(q)
    }
}

/// `x @ Wᵀ` with W packed: the product of `Linear` and of `Embedding::as_linear` when quantized.
/// A missing `scales` (a malformed module) reaches `quantized_matmul`, whose error names it.
fn packed_matmul_t(x: &Array, w: &Array, scales: Option<&Array>, biases: Option<&Array>, q: &QuantSpec) -> Array {
    ops::quantized_matmul(x, w, scales.unwrap_or(w), biases, true, Some(q.group_size), Some(q.bits), &q.mode)
}

impl UnaryModule for Linear {
    fn forward(&self, x: &Array) -> Array {
        if let Some(shard) = &self.shard {
            return crate::distributed::sharded_forward(self, shard, x);
        }
        self.forward_unsharded(x)
    }
}

impl Linear {
    /// The layer's own product (with its adapter, if any), without tensor-parallel communication.
    pub(crate) fn forward_unsharded(&self, x: &Array) -> Array {
        match (&self.lora, &self.lora_a, &self.lora_b) {
            (Some(spec), Some(a), Some(b)) => self.forward_lora(x, spec, a, b),
            _ => self.forward_base(x),
        }
    }
}

impl Linear {
    /// The layer without its adapter.
    pub(crate) fn forward_base(&self, x: &Array) -> Array {
        if let Some(q) = &self.quant {
            let y = packed_matmul_t(x, &self.weight, self.scales.as_ref(), self.biases.as_ref(), q);
            return match &self.bias {
                Some(b) => ops::add(&y, b),
                None => y,
            };
        }
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
/// Quantized (`quant` set), `weight` is packed and rows are dequantized on lookup, as MLX's
/// `QuantizedEmbedding`.
#[derive(Module, Clone, Debug)]
#[module(quantizable)]
pub struct Embedding {
    pub weight: Array,
    pub scales: Option<Array>,
    pub biases: Option<Array>,
    #[module(skip)]
    pub quant: Option<QuantSpec>,
    pub state: ModuleState,
}

impl Embedding {
    /// Weight drawn from N(0, 1/dims), as MLX.
    pub fn new(num_embeddings: usize, dims: usize) -> Embedding {
        let scale = (1.0 / dims as f64).sqrt();
        Embedding::from_weight(init::normal(&[num_embeddings, dims], Dtype::Float32, 0.0, scale))
    }

    pub fn from_weight(weight: Array) -> Embedding {
        Embedding { weight, scales: None, biases: None, quant: None, state: ModuleState::default() }
    }

    /// A quantized copy (MLX's `QuantizedEmbedding.from_embedding`).
    pub fn to_quantized(&self, group_size: usize, bits: usize, mode: &str) -> oxmx_core::Result<Embedding> {
        let mut q = self.clone();
        crate::Quantizable::quantize_in_place(&mut q, &QuantSpec::new(group_size, bits, mode))?;
        Ok(q)
    }

    /// `x @ weight^T`: the tied output projection of a language model.
    pub fn as_linear(&self, x: &Array) -> Array {
        if let Some(q) = &self.quant {
            return packed_matmul_t(x, &self.weight, self.scales.as_ref(), self.biases.as_ref(), q);
        }
        ops::matmul(x, &ops::swapaxes(&self.weight, -1, -2))
    }
}

impl UnaryModule for Embedding {
    fn forward(&self, x: &Array) -> Array {
        if let Some(q) = &self.quant {
            let take = |a: &Array| ops::take(a, x, Some(0));
            let s = self.scales.as_ref().unwrap_or(&self.weight);
            return ops::dequantize(
                &take(&self.weight),
                &take(s),
                self.biases.as_ref().map(take).as_ref(),
                Some(q.group_size),
                Some(q.bits),
                &q.mode,
                None,
            );
        }
        ops::take(&self.weight, x, Some(0))
    }
}
