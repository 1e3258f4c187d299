//! Initialisers with MLX's definitions (`mlx.nn.init`): each returns a fresh array of the given
//! shape and dtype drawn from the global random key (or a constant).

use oxmx_core::{ops, random, Array, Dtype, Error};

/// MLX's fan computation: the last axis is the input, the first the output, and the axes in
/// between (a convolution's spatial axes) multiply both.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape.len() {
        0 => (1, 1),
        1 => (shape[0], shape[0]),
        n => {
            let receptive: usize = shape[1..n - 1].iter().product();
            (shape[n - 1] * receptive, shape[0] * receptive)
        }
    }
}

pub fn constant(shape: &[usize], dtype: Dtype, value: f64) -> Array {
    ops::full(shape, value, Some(dtype))
}

pub fn normal(shape: &[usize], dtype: Dtype, mean: f64, std: f64) -> Array {
    random::normal(shape, dtype, mean, std, None)
}

pub fn uniform(shape: &[usize], dtype: Dtype, low: f64, high: f64) -> Array {
    random::uniform(low, high, shape, dtype, None)
}

/// The identity matrix; MLX requires a square 2-D shape.
pub fn identity(shape: &[usize], dtype: Dtype) -> Array {
    if shape.len() != 2 || shape[0] != shape[1] {
        return Array::error(Error::invalid(format!("[identity] the shape must be square 2-D, got {shape:?}")));
    }
    ops::eye(shape[0], None, 0, dtype)
}

pub fn glorot_normal(shape: &[usize], dtype: Dtype, gain: f64) -> Array {
    let (fan_in, fan_out) = fans(shape);
    normal(shape, dtype, 0.0, gain * (2.0 / (fan_in + fan_out) as f64).sqrt())
}

pub fn glorot_uniform(shape: &[usize], dtype: Dtype, gain: f64) -> Array {
    let (fan_in, fan_out) = fans(shape);
    let limit = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
    uniform(shape, dtype, -limit, limit)
}

/// Which fan `he_*` scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
}

fn fan(shape: &[usize], mode: FanMode) -> f64 {
    let (fan_in, fan_out) = fans(shape);
    (if mode == FanMode::FanIn { fan_in } else { fan_out }) as f64
}

pub fn he_normal(shape: &[usize], dtype: Dtype, mode: FanMode, gain: f64) -> Array {
    normal(shape, dtype, 0.0, gain / fan(shape, mode).sqrt())
}

pub fn he_uniform(shape: &[usize], dtype: Dtype, mode: FanMode, gain: f64) -> Array {
    let limit = gain * (3.0 / fan(shape, mode)).sqrt();
    uniform(shape, dtype, -limit, limit)
}
