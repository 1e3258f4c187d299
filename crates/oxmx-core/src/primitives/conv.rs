//! The conv family: MLX's `conv_general` on channels-last data. Input `(N, *spatial, C_in)`,
//! weight `(C_out, *kernel, C_in / groups)`, output `(N, *spatial_out, C_out)`. The op layer
//! promotes both operands to one float dtype and expands per-axis parameters to full length, so
//! this node only checks geometry (shapeless re-inference goes through the same code).

use crate::error::{Error, Result};
use crate::graph::Spec;

/// Per-spatial-axis parameters of a convolution (all vectors have one entry per spatial axis).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    pub stride: Vec<usize>,
    /// Padding before/after each axis; negative values crop (MLX accepts them).
    pub pad_lo: Vec<isize>,
    pub pad_hi: Vec<isize>,
    pub kernel_dilation: Vec<usize>,
    pub input_dilation: Vec<usize>,
    pub groups: usize,
    /// Convolution (true) rather than cross-correlation (false): the kernel is read reversed.
    pub flip: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConvOp {
    Conv(ConvParams),
}

impl ConvOp {
    pub fn name(&self) -> String {
        match self {
            ConvOp::Conv(_) => "Convolution".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 2)?;
        let ConvOp::Conv(p) = self;
        let ((si, di), (sw, dw)) = (&inputs[0], &inputs[1]);
        if di != dw || !di.is_float() {
            return Err(Error::invalid(format!("[conv] expected input and weight of one floating point dtype, got {di} and {dw}")));
        }
        Ok(vec![(conv_output_shape(si, sw, p)?, *di)])
    }
}

/// The output shape of a convolution, with MLX's checks and messages.
pub fn conv_output_shape(input: &[usize], weight: &[usize], p: &ConvParams) -> Result<Vec<usize>> {
    let nd = input.len();
    if nd < 3 || weight.len() != nd {
        return Err(Error::invalid(format!(
            "[conv] input and weight must have the same rank >= 3 ([N, ..., C] and [C_out, ..., C_in]), got shapes {input:?} and {weight:?}"
        )));
    }
    let sp = nd - 2;
    let lens = [p.stride.len(), p.pad_lo.len(), p.pad_hi.len(), p.kernel_dilation.len(), p.input_dilation.len()];
    if lens.iter().any(|&l| l != sp) {
        return Err(Error::invalid(format!("[conv] expected {sp} entries per parameter for {sp}D convolution, got {lens:?}")));
    }
    if p.stride.iter().any(|&s| s == 0) {
        return Err(Error::invalid(format!("[conv] Stride sizes must be positive. Got strides {:?}.", p.stride)));
    }
    if p.kernel_dilation.iter().any(|&s| s == 0) {
        return Err(Error::invalid(format!("[conv] Kernel dilation sizes must be positive. Got {:?}.", p.kernel_dilation)));
    }
    if p.input_dilation.iter().any(|&s| s == 0) {
        return Err(Error::invalid(format!("[conv] Input dilation sizes must be positive. Got {:?}.", p.input_dilation)));
    }
    let (c_in, c_out, cw) = (input[nd - 1], weight[0], weight[nd - 1]);
    if p.groups == 0 || c_in % p.groups != 0 {
        return Err(Error::invalid(format!(
            "[conv] The input channels must be divisible by the number of groups. Got input with shape {input:?} and {} groups.",
            p.groups
        )));
    }
    if p.groups > 1 && c_out % p.groups != 0 {
        return Err(Error::invalid(format!(
            "[conv] If groups > 1, the output channels must be divisible by the number of groups. Got {c_out} output channels and {} groups.",
            p.groups
        )));
    }
    if cw * p.groups != c_in {
        return Err(Error::invalid(format!(
            "[conv] Expect the input channels in the input and weight array to match but got shapes - input: {input:?} and weight: {weight:?}"
        )));
    }
    let mut out = vec![input[0]];
    for i in 0..sp {
        let dilated_in = if input[i + 1] == 0 { 0 } else { (input[i + 1] as isize - 1) * p.input_dilation[i] as isize + 1 };
        let padded = dilated_in + p.pad_lo[i] + p.pad_hi[i];
        let k = weight[i + 1] as isize;
        let dilated_k = if k == 0 { 0 } else { (k - 1) * p.kernel_dilation[i] as isize + 1 };
        if padded < dilated_k {
            return Err(Error::invalid(format!(
                "[conv] Spatial dimensions of input after padding cannot be smaller than weight spatial dimensions. Got error at axis {} for input with shape {input:?}, padding low {:?}, padding high {:?}, and weight of shape {weight:?}.",
                i + 1,
                p.pad_lo,
                p.pad_hi
            )));
        }
        out.push(((padded - dilated_k) / p.stride[i] as isize + 1) as usize);
    }
    out.push(c_out);
    Ok(out)
}
