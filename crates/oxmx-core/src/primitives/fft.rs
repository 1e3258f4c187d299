//! The fft family: one-axis discrete Fourier transforms. The op layer composes n-d transforms
//! from these (the axes are separable), pads/truncates inputs to the requested sizes and casts
//! to the dtypes each variant expects, so every node here is a single batched 1-d transform.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum FftOp {
    /// complex64 -> complex64 along `axis`; the inverse is scaled by `1/n` (MLX's "backward").
    Fft { axis: usize, inverse: bool },
    /// float32 -> complex64: the `n/2 + 1` non-negative frequencies of a length-`n` real signal.
    Rfft { axis: usize },
    /// complex64 (`n/2 + 1` bins along `axis`) -> float32 of length `n`, scaled by `1/n`.
    Irfft { axis: usize, n: usize },
}

impl FftOp {
    pub fn name(&self) -> String {
        match self {
            FftOp::Fft { inverse: false, .. } => "FFT".into(),
            FftOp::Fft { inverse: true, .. } => "IFFT".into(),
            FftOp::Rfft { .. } => "RFFT".into(),
            FftOp::Irfft { .. } => "IRFFT".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, dt) = &inputs[0];
        let axis = match self {
            FftOp::Fft { axis, .. } | FftOp::Rfft { axis } | FftOp::Irfft { axis, .. } => *axis,
        };
        if axis >= shape.len() {
            return Err(Error::invalid(format!("[{}] axis {axis} out of range for shape {shape:?}", self.name())));
        }
        let want = if matches!(self, FftOp::Rfft { .. }) { Dtype::Float32 } else { Dtype::Complex64 };
        if *dt != want {
            return Err(Error::invalid(format!("[{}] expected a {want} input, got {dt}", self.name())));
        }
        let mut out = shape.clone();
        match self {
            FftOp::Fft { .. } => Ok(vec![(out, Dtype::Complex64)]),
            FftOp::Rfft { .. } => {
                out[axis] = shape[axis] / 2 + 1;
                Ok(vec![(out, Dtype::Complex64)])
            }
            FftOp::Irfft { n, .. } => {
                if shape[axis] != n / 2 + 1 {
                    return Err(Error::invalid(format!(
                        "[IRFFT] expected {} bins along axis {axis} for n = {n}, got {shape:?}",
                        n / 2 + 1
                    )));
                }
                out[axis] = *n;
                Ok(vec![(out, Dtype::Float32)])
            }
        }
    }
}
