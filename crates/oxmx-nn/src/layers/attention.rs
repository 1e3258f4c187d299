//! `MultiHeadAttention` as in `mlx.nn`, and the attention it computes.

use super::linear::Linear;
use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{finfo, ops, Array, Dtype, Error, Result};

/// `softmax(q kᵀ · scale + mask) v` over `[B, H, L, D]` queries and `[B, H, S, D]` keys/values,
/// built from ops (MLX's `scaled_dot_product_attention` reference path). The mask is additive
/// (floating point, broadcastable to `[B, H, L, S]`) or boolean (`true` = attend). The softmax is
/// computed in float32 for half-precision inputs.
pub fn scaled_dot_product_attention(queries: &Array, keys: &Array, values: &Array, scale: f64, mask: Option<&Array>) -> Array {
    let q = queries * scale;
    let mut scores = ops::matmul(&q, &ops::swapaxes(keys, -1, -2));
    if let Some(m) = mask {
        scores = if m.dtype() == Dtype::Bool {
            let min = finfo(scores.dtype()).map_or(f64::NEG_INFINITY, |f| f.min);
            ops::where_(m, &scores, min)
        } else {
            &scores + m
        };
    }
    let probs = ops::softmax(&scores, -1isize, true);
    ops::matmul(&probs, values)
}

/// Attention with `num_heads` heads and linear projections of the queries, keys, values and
/// output (`query_proj`, `key_proj`, `value_proj`, `out_proj`), without biases by default.
#[derive(Module, Clone, Debug)]
pub struct MultiHeadAttention {
    pub query_proj: Linear,
    pub key_proj: Linear,
    pub value_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
    pub state: ModuleState,
}

/// Builder for MLX's optional dimensions (each defaults as in MLX when `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MultiHeadAttentionOptions {
    pub query_input_dims: Option<usize>,
    pub key_input_dims: Option<usize>,
    /// Defaults to `key_input_dims`.
    pub value_input_dims: Option<usize>,
    pub value_dims: Option<usize>,
    pub value_output_dims: Option<usize>,
    pub bias: bool,
}

impl MultiHeadAttention {
    /// All dimensions `dims`, no biases. Errors if `num_heads` does not divide `dims`.
    pub fn new(dims: usize, num_heads: usize) -> Result<MultiHeadAttention> {
        MultiHeadAttention::with_options(dims, num_heads, MultiHeadAttentionOptions::default())
    }

    pub fn with_options(dims: usize, num_heads: usize, o: MultiHeadAttentionOptions) -> Result<MultiHeadAttention> {
        if num_heads == 0 || dims % num_heads != 0 {
            return Err(Error::invalid(format!(
                "[MultiHeadAttention] The input feature dimensions should be divisible by the number of heads ({dims} % {num_heads}) != 0"
            )));
        }
        let query_input_dims = o.query_input_dims.unwrap_or(dims);
        let key_input_dims = o.key_input_dims.unwrap_or(dims);
        let value_input_dims = o.value_input_dims.unwrap_or(key_input_dims);
        let value_dims = o.value_dims.unwrap_or(dims);
        let value_output_dims = o.value_output_dims.unwrap_or(dims);
        if value_dims % num_heads != 0 {
            return Err(Error::invalid(format!(
                "[MultiHeadAttention] value_dims ({value_dims}) should be divisible by the number of heads ({num_heads})"
            )));
        }
        Ok(MultiHeadAttention {
            query_proj: Linear::new(query_input_dims, dims, o.bias),
            key_proj: Linear::new(key_input_dims, dims, o.bias),
            value_proj: Linear::new(value_input_dims, value_dims, o.bias),
            out_proj: Linear::new(value_dims, value_output_dims, o.bias),
            num_heads,
            state: ModuleState::default(),
        })
    }

    fn check_input(&self, what: &str, x: &Array, proj: &Linear) -> std::result::Result<(), Array> {
        x.check().map_err(Array::error)?;
        let d = proj.weight.shape().get(1).copied().unwrap_or(0);
        if x.ndim() != 3 || x.shape()[2] != d {
            return Err(Array::error(Error::invalid(format!(
                "[MultiHeadAttention] expected {what} of shape [B, L, {d}], got shape {:?}",
                x.shape()
            ))));
        }
        Ok(())
    }

    /// `[B, L, H * d]` -> `[B, H, L, d]`.
    fn heads(&self, x: &Array) -> Array {
        let s = x.shape();
        let (b, l) = (s[0] as isize, s[1] as isize);
        ops::transpose(&ops::reshape(x, &[b, l, self.num_heads as isize, -1]), &[0, 2, 1, 3])
    }

    /// `queries: [B, L, query_input_dims]`, `keys: [B, S, key_input_dims]`,
    /// `values: [B, S, value_input_dims]`; the optional mask is additive or boolean and
    /// broadcastable to `[B, num_heads, L, S]`. Returns `[B, L, value_output_dims]`.
    pub fn forward(&self, queries: &Array, keys: &Array, values: &Array, mask: Option<&Array>) -> Array {
        for (what, x, p) in [("queries", queries, &self.query_proj), ("keys", keys, &self.key_proj), ("values", values, &self.value_proj)] {
            if let Err(e) = self.check_input(what, x, p) {
                return e;
            }
        }
        if keys.shape()[..2] != values.shape()[..2] || keys.shape()[0] != queries.shape()[0] {
            return Array::error(Error::invalid(format!(
                "[MultiHeadAttention] queries {:?}, keys {:?} and values {:?} must share the batch size, and keys and values the length",
                queries.shape(),
                keys.shape(),
                values.shape()
            )));
        }
        let q = self.heads(&self.query_proj.forward(queries));
        let k = self.heads(&self.key_proj.forward(keys));
        let v = self.heads(&self.value_proj.forward(values));
        let scale = (1.0 / q.shape()[3] as f64).sqrt();
        let o = scaled_dot_product_attention(&q, &k, &v, scale, mask);
        let s = o.shape();
        let o = ops::reshape(&ops::transpose(&o, &[0, 2, 1, 3]), &[s[0] as isize, s[2] as isize, -1]);
        self.out_proj.forward(&o)
    }

    /// `[n, n]` with `0` on and below the diagonal and the dtype's lowest finite value above it
    /// (MLX uses `finfo(dtype).min`, not `-inf`).
    pub fn create_additive_causal_mask(n: usize) -> Array {
        MultiHeadAttention::create_additive_causal_mask_dtype(n, Dtype::Float32)
    }

    pub fn create_additive_causal_mask_dtype(n: usize, dtype: Dtype) -> Array {
        let Some(f) = finfo(dtype) else {
            return Array::error(Error::invalid(format!("[create_additive_causal_mask] dtype {dtype} is not floating point")));
        };
        let idx = ops::arange_n(n, Some(Dtype::Int32));
        let above = ops::less(&ops::expand_dims(&idx, &[1]), &ops::expand_dims(&idx, &[0]));
        &above.astype(dtype) * f.min
    }
}
