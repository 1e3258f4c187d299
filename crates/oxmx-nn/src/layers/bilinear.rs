//! `Bilinear` as in `mlx.nn`: `y_i = x2ᵀ W_i x1 + b_i` with `weight: [output_dims, input2_dims,
//! input1_dims]` (PyTorch's `nn.Bilinear` stores `[out, in1, in2]`: swap the last two axes).

use crate::{init, Module, ModuleState};
use oxmx_core::{ops, Array, Dtype, Error};

#[derive(Module, Clone, Debug)]
pub struct Bilinear {
    /// `[output_dims, input2_dims, input1_dims]`.
    pub weight: Array,
    /// `[output_dims]`.
    pub bias: Option<Array>,
    pub state: ModuleState,
}

impl Bilinear {
    /// Weight and bias drawn from U(-1/sqrt(input1_dims), 1/sqrt(input1_dims)), as MLX.
    pub fn new(input1_dims: usize, input2_dims: usize, output_dims: usize, bias: bool) -> Bilinear {
        let scale = (1.0 / input1_dims as f64).sqrt();
        Bilinear {
            weight: init::uniform(&[output_dims, input2_dims, input1_dims], Dtype::Float32, -scale, scale),
            bias: bias.then(|| init::uniform(&[output_dims], Dtype::Float32, -scale, scale)),
            state: ModuleState::default(),
        }
    }

    /// `x1: [..., input1_dims]`, `x2: [..., input2_dims]` with the same leading shape ->
    /// `[..., output_dims]`.
    pub fn forward(&self, x1: &Array, x2: &Array) -> Array {
        for a in [x1, x2, &self.weight] {
            if let Err(e) = a.check() {
                return Array::error(e);
            }
        }
        let ws = self.weight.shape();
        let (out, in2, in1) = (ws[0], ws[1], ws[2]);
        let ok = x1.ndim() >= 1
            && x2.ndim() == x1.ndim()
            && x1.shape().last() == Some(&in1)
            && x2.shape().last() == Some(&in2)
            && x1.shape()[..x1.ndim() - 1] == x2.shape()[..x2.ndim() - 1];
        if !ok {
            return Array::error(Error::invalid(format!(
                "[Bilinear] expected x1 [..., {in1}] and x2 [..., {in2}] with the same leading shape, got shapes {:?} and {:?}",
                x1.shape(),
                x2.shape()
            )));
        }
        let lead: Vec<isize> = x1.shape()[..x1.ndim() - 1].iter().map(|&d| d as isize).collect();
        let a = ops::reshape(x1, &[-1, in1 as isize]);
        let b = ops::reshape(x2, &[-1, 1, in2 as isize]);
        let w = ops::reshape(&self.weight, &[(out * in2) as isize, in1 as isize]);
        // [B, out * in2] -> [B, in2, out]
        let y = ops::swapaxes(&ops::reshape(&ops::matmul(&a, &ops::swapaxes(&w, -1, -2)), &[-1, out as isize, in2 as isize]), -2, -1);
        let y = ops::squeeze(&ops::matmul(&b, &y), &[1]);
        let mut shape = lead;
        shape.push(out as isize);
        let y = ops::reshape(&y, &shape);
        match &self.bias {
            Some(bias) => &y + bias,
            None => y,
        }
    }
}
