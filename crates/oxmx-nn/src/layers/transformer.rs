//! The Transformer of `mlx.nn`: `TransformerEncoderLayer`, `TransformerEncoder`,
//! `TransformerDecoderLayer`, `TransformerDecoder` and `Transformer`, with MLX's parameter names
//! (`encoder.layers.0.attention.query_proj.weight`, `ln1`, `linear1`, ..., `encoder.ln`).

use super::attention::MultiHeadAttention;
use super::dropout::Dropout;
use super::linear::Linear;
use super::norm::LayerNorm;
use crate::{activations, Module, ModuleState, Params, UnaryModule};
use oxmx_core::{Array, Result};
use std::fmt;
use std::sync::Arc;

/// A element-wise function held by a layer (a Transformer's MLP activation, an RNN's
/// nonlinearity): MLX's `Callable` argument.
#[derive(Clone)]
pub struct ActivationFn(pub Arc<dyn Fn(&Array) -> Array + Send + Sync>);

impl ActivationFn {
    pub fn new(f: impl Fn(&Array) -> Array + Send + Sync + 'static) -> ActivationFn {
        ActivationFn(Arc::new(f))
    }
    pub fn call(&self, x: &Array) -> Array {
        (self.0)(x)
    }
    pub fn relu() -> ActivationFn {
        ActivationFn::new(activations::relu)
    }
    pub fn tanh() -> ActivationFn {
        ActivationFn::new(activations::tanh)
    }
}

impl fmt::Debug for ActivationFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActivationFn")
    }
}

impl From<fn(&Array) -> Array> for ActivationFn {
    fn from(f: fn(&Array) -> Array) -> ActivationFn {
        ActivationFn::new(f)
    }
}

/// Shared options of the Transformer blocks (MLX's keyword arguments and defaults).
#[derive(Clone, Debug)]
pub struct TransformerOptions {
    /// Hidden size of the MLP; `None` is `4 * dims`.
    pub mlp_dims: Option<usize>,
    pub dropout: f64,
    /// Default: ReLU.
    pub activation: ActivationFn,
    /// Pre-norm (`true`, MLX's default) or post-norm.
    pub norm_first: bool,
    /// Recompute each layer in the backward pass (gradient checkpointing).
    pub checkpoint: bool,
}

impl Default for TransformerOptions {
    fn default() -> Self {
        TransformerOptions { mlp_dims: None, dropout: 0.0, activation: ActivationFn::relu(), norm_first: true, checkpoint: false }
    }
}

/// Runs `run(layer, inputs)` under `oxmx_core::checkpoint`, passing the layer's trainable
/// parameters as explicit inputs so their gradients flow (MLX's `nn.utils.checkpoint`).
fn checkpointed<L>(layer: &L, inputs: Vec<Array>, run: impl Fn(&L, &[Array]) -> Array + Send + Sync + 'static) -> Array
where
    L: Module + Clone + Send + Sync + 'static,
{
    let params = layer.trainable_parameters();
    let names: Vec<String> = params.keys().cloned().collect();
    let n = names.len();
    let template = layer.clone();
    let f = oxmx_core::checkpoint(move |args: &[Array]| {
        let mut l = template.clone();
        let map: Params = names.iter().cloned().zip(args[..n].iter().cloned()).collect();
        l.update(&map)?;
        Ok(vec![run(&l, &args[n..])])
    });
    let mut args: Vec<Array> = params.into_values().collect();
    args.extend(inputs);
    match f(&args) {
        Ok(mut v) => v.pop().unwrap_or_else(|| Array::error(oxmx_core::Error::runtime("[checkpoint] no output"))),
        Err(e) => Array::error(e),
    }
}

/// Appends the optional masks to a checkpoint's inputs; `Some(i)` is each one's position.
fn push_masks(inputs: &mut Vec<Array>, masks: &[Option<&Array>]) -> Vec<Option<usize>> {
    masks
        .iter()
        .map(|m| {
            m.map(|m| {
                inputs.push(m.clone());
                inputs.len() - 1
            })
        })
        .collect()
}

/// Self-attention and an MLP, each with a residual connection and a LayerNorm.
#[derive(Module, Clone, Debug)]
pub struct TransformerEncoderLayer {
    pub attention: MultiHeadAttention,
    pub ln1: LayerNorm,
    pub ln2: LayerNorm,
    pub linear1: Linear,
    pub linear2: Linear,
    pub dropout1: Dropout,
    pub dropout2: Dropout,
    #[module(skip)]
    pub activation: ActivationFn,
    pub norm_first: bool,
    pub state: ModuleState,
}

impl TransformerEncoderLayer {
    pub fn new(dims: usize, num_heads: usize) -> Result<TransformerEncoderLayer> {
        TransformerEncoderLayer::with_options(dims, num_heads, &TransformerOptions::default())
    }

    pub fn with_options(dims: usize, num_heads: usize, o: &TransformerOptions) -> Result<TransformerEncoderLayer> {
        let mlp_dims = o.mlp_dims.unwrap_or(dims * 4);
        Ok(TransformerEncoderLayer {
            attention: MultiHeadAttention::new(dims, num_heads)?,
            ln1: LayerNorm::new(dims),
            ln2: LayerNorm::new(dims),
            linear1: Linear::new(dims, mlp_dims, true),
            linear2: Linear::new(mlp_dims, dims, true),
            dropout1: Dropout::new(o.dropout)?,
            dropout2: Dropout::new(o.dropout)?,
            activation: o.activation.clone(),
            norm_first: o.norm_first,
            state: ModuleState::default(),
        })
    }

    /// `x: [B, L, dims]`, `mask` additive or boolean, broadcastable to `[B, heads, L, L]`.
    pub fn forward(&self, x: &Array, mask: Option<&Array>) -> Array {
        let mlp = |y: &Array| self.linear2.forward(&self.dropout2.forward(&self.activation.call(&self.linear1.forward(y))));
        if self.norm_first {
            let y = self.ln1.forward(x);
            let y = self.dropout1.forward(&self.attention.forward(&y, &y, &y, mask));
            let x = x + &y;
            let y = mlp(&self.ln2.forward(&x));
            &x + &y
        } else {
            let y = self.dropout1.forward(&self.attention.forward(x, x, x, mask));
            let x = self.ln1.forward(&(x + &y));
            let y = mlp(&x);
            self.ln2.forward(&(&x + &y))
        }
    }
}

/// `num_layers` encoder layers (`layers.<i>`) and a final LayerNorm (`ln`).
#[derive(Module, Clone, Debug)]
pub struct TransformerEncoder {
    pub layers: Vec<TransformerEncoderLayer>,
    pub ln: LayerNorm,
    pub checkpoint: bool,
    pub state: ModuleState,
}

impl TransformerEncoder {
    pub fn new(num_layers: usize, dims: usize, num_heads: usize) -> Result<TransformerEncoder> {
        TransformerEncoder::with_options(num_layers, dims, num_heads, &TransformerOptions::default())
    }

    pub fn with_options(num_layers: usize, dims: usize, num_heads: usize, o: &TransformerOptions) -> Result<TransformerEncoder> {
        Ok(TransformerEncoder {
            layers: (0..num_layers).map(|_| TransformerEncoderLayer::with_options(dims, num_heads, o)).collect::<Result<_>>()?,
            ln: LayerNorm::new(dims),
            checkpoint: o.checkpoint,
            state: ModuleState::default(),
        })
    }

    pub fn forward(&self, x: &Array, mask: Option<&Array>) -> Array {
        let mut x = x.clone();
        for layer in &self.layers {
            x = if self.checkpoint {
                let mut inputs = vec![x];
                let at = push_masks(&mut inputs, &[mask]);
                checkpointed(layer, inputs, move |l, a| l.forward(&a[0], at[0].map(|i| &a[i])))
            } else {
                layer.forward(&x, mask)
            };
        }
        self.ln.forward(&x)
    }
}

/// Self-attention, cross-attention over the encoder's output, and an MLP.
#[derive(Module, Clone, Debug)]
pub struct TransformerDecoderLayer {
    pub self_attention: MultiHeadAttention,
    pub cross_attention: MultiHeadAttention,
    pub ln1: LayerNorm,
    pub ln2: LayerNorm,
    pub ln3: LayerNorm,
    pub linear1: Linear,
    pub linear2: Linear,
    pub dropout1: Dropout,
    pub dropout2: Dropout,
    pub dropout3: Dropout,
    #[module(skip)]
    pub activation: ActivationFn,
    pub norm_first: bool,
    pub state: ModuleState,
}

impl TransformerDecoderLayer {
    pub fn new(dims: usize, num_heads: usize) -> Result<TransformerDecoderLayer> {
        TransformerDecoderLayer::with_options(dims, num_heads, &TransformerOptions::default())
    }

    pub fn with_options(dims: usize, num_heads: usize, o: &TransformerOptions) -> Result<TransformerDecoderLayer> {
        let mlp_dims = o.mlp_dims.unwrap_or(dims * 4);
        Ok(TransformerDecoderLayer {
            self_attention: MultiHeadAttention::new(dims, num_heads)?,
            cross_attention: MultiHeadAttention::new(dims, num_heads)?,
            ln1: LayerNorm::new(dims),
            ln2: LayerNorm::new(dims),
            ln3: LayerNorm::new(dims),
            linear1: Linear::new(dims, mlp_dims, true),
            linear2: Linear::new(mlp_dims, dims, true),
            dropout1: Dropout::new(o.dropout)?,
            dropout2: Dropout::new(o.dropout)?,
            dropout3: Dropout::new(o.dropout)?,
            activation: o.activation.clone(),
            norm_first: o.norm_first,
            state: ModuleState::default(),
        })
    }

    /// MLX's argument order: `(x, memory, x_mask, memory_mask)`.
    pub fn forward(&self, x: &Array, memory: &Array, x_mask: Option<&Array>, memory_mask: Option<&Array>) -> Array {
        let mlp = |y: &Array| self.linear2.forward(&self.dropout3.forward(&self.activation.call(&self.linear1.forward(y))));
        if self.norm_first {
            let y = self.ln1.forward(x);
            let y = self.dropout1.forward(&self.self_attention.forward(&y, &y, &y, x_mask));
            let x = x + &y;
            let y = self.ln2.forward(&x);
            let y = self.dropout2.forward(&self.cross_attention.forward(&y, memory, memory, memory_mask));
            let x = &x + &y;
            let y = mlp(&self.ln3.forward(&x));
            &x + &y
        } else {
            let y = self.dropout1.forward(&self.self_attention.forward(x, x, x, x_mask));
            let x = self.ln1.forward(&(x + &y));
            let y = self.dropout2.forward(&self.cross_attention.forward(&x, memory, memory, memory_mask));
            let x = self.ln2.forward(&(&x + &y));
            let y = mlp(&x);
            self.ln3.forward(&(&x + &y))
        }
    }
}

/// `num_layers` decoder layers (`layers.<i>`) and a final LayerNorm (`ln`).
#[derive(Module, Clone, Debug)]
pub struct TransformerDecoder {
    pub layers: Vec<TransformerDecoderLayer>,
    pub ln: LayerNorm,
    pub checkpoint: bool,
    pub state: ModuleState,
}

impl TransformerDecoder {
    pub fn new(num_layers: usize, dims: usize, num_heads: usize) -> Result<TransformerDecoder> {
        TransformerDecoder::with_options(num_layers, dims, num_heads, &TransformerOptions::default())
    }

    pub fn with_options(num_layers: usize, dims: usize, num_heads: usize, o: &TransformerOptions) -> Result<TransformerDecoder> {
        Ok(TransformerDecoder {
            layers: (0..num_layers).map(|_| TransformerDecoderLayer::with_options(dims, num_heads, o)).collect::<Result<_>>()?,
            ln: LayerNorm::new(dims),
            checkpoint: o.checkpoint,
            state: ModuleState::default(),
        })
    }

    pub fn forward(&self, x: &Array, memory: &Array, x_mask: Option<&Array>, memory_mask: Option<&Array>) -> Array {
        let mut x = x.clone();
        for layer in &self.layers {
            x = if self.checkpoint {
                let mut inputs = vec![x, memory.clone()];
                let at = push_masks(&mut inputs, &[x_mask, memory_mask]);
                checkpointed(layer, inputs, move |l, a| l.forward(&a[0], &a[1], at[0].map(|i| &a[i]), at[1].map(|i| &a[i])))
            } else {
                layer.forward(&x, memory, x_mask, memory_mask)
            };
        }
        self.ln.forward(&x)
    }
}

/// An encoder and a decoder (MLX's defaults: `dims = 512`, 8 heads, 6 + 6 layers).
#[derive(Module, Clone, Debug)]
pub struct Transformer {
    pub encoder: TransformerEncoder,
    pub decoder: TransformerDecoder,
    pub state: ModuleState,
}

impl Transformer {
    /// MLX's defaults: `Transformer(512, 8, 6, 6)`.
    pub fn default_config() -> Result<Transformer> {
        Transformer::new(512, 8, 6, 6)
    }

    pub fn new(dims: usize, num_heads: usize, num_encoder_layers: usize, num_decoder_layers: usize) -> Result<Transformer> {
        Transformer::with_options(dims, num_heads, num_encoder_layers, num_decoder_layers, &TransformerOptions::default())
    }

    pub fn with_options(
        dims: usize,
        num_heads: usize,
        num_encoder_layers: usize,
        num_decoder_layers: usize,
        o: &TransformerOptions,
    ) -> Result<Transformer> {
        Ok(Transformer {
            encoder: TransformerEncoder::with_options(num_encoder_layers, dims, num_heads, o)?,
            decoder: TransformerDecoder::with_options(num_decoder_layers, dims, num_heads, o)?,
            state: ModuleState::default(),
        })
    }

    /// MLX's argument order: `(src, tgt, src_mask, tgt_mask, memory_mask)`.
    pub fn forward(
        &self,
        src: &Array,
        tgt: &Array,
        src_mask: Option<&Array>,
        tgt_mask: Option<&Array>,
        memory_mask: Option<&Array>,
    ) -> Array {
        let memory = self.encoder.forward(src, src_mask);
        self.decoder.forward(tgt, &memory, tgt_mask, memory_mask)
    }
}
