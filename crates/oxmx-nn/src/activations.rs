//! Activation functions with MLX's definitions (`mlx.nn`), built from ops so they differentiate,
//! vmap and compile like any other function.

use oxmx_core::{ops, Array};

pub fn relu(x: &Array) -> Array {
    ops::maximum(x, 0.0)
}
pub fn relu6(x: &Array) -> Array {
    ops::minimum(ops::maximum(x, 0.0), 6.0)
}
pub fn leaky_relu(x: &Array, negative_slope: f64) -> Array {
    ops::maximum(x * negative_slope, x)
}
/// `max(0, x) + alpha * min(0, x)`; `alpha` broadcasts (per channel in `PReLU`).
pub fn prelu(x: &Array, alpha: &Array) -> Array {
    ops::maximum(x, 0.0) + alpha * &ops::minimum(x, 0.0)
}
pub fn elu(x: &Array, alpha: f64) -> Array {
    ops::where_(ops::greater(x, 0.0), x, &(ops::expm1(x) * alpha))
}
pub fn selu(x: &Array) -> Array {
    elu(x, 1.67326319217681884765625) * 1.05070102214813232421875
}
pub fn celu(x: &Array, alpha: f64) -> Array {
    ops::maximum(x, 0.0) + ops::expm1(&(ops::minimum(x, 0.0) / alpha)) * alpha
}
/// Exact GELU: `x * (1 + erf(x / sqrt 2)) / 2`.
pub fn gelu(x: &Array) -> Array {
    x * &(ops::erf(&(x * std::f64::consts::FRAC_1_SQRT_2)) + 1.0) / 2.0
}
/// The tanh approximation.
pub fn gelu_approx(x: &Array) -> Array {
    let inner = (x + &(ops::power(x, 3.0) * 0.044715)) * (2.0 / std::f64::consts::PI).sqrt();
    x * 0.5 * (ops::tanh(&inner) + 1.0)
}
/// `x * sigmoid(1.702 x)`.
pub fn gelu_fast_approx(x: &Array) -> Array {
    x * &ops::sigmoid(&(x * 1.702))
}
pub fn silu(x: &Array) -> Array {
    x * &ops::sigmoid(x)
}
pub fn mish(x: &Array) -> Array {
    x * &ops::tanh(&softplus(x))
}
pub fn hardswish(x: &Array) -> Array {
    x * &ops::minimum(ops::maximum(x + 3.0, 0.0), 6.0) / 6.0
}
pub fn hard_tanh(x: &Array, min_val: f64, max_val: f64) -> Array {
    ops::minimum(ops::maximum(x, min_val), max_val)
}
pub fn hard_shrink(x: &Array, lambd: f64) -> Array {
    ops::where_(ops::greater(ops::abs(x), lambd), x, 0.0)
}
pub fn softplus(x: &Array) -> Array {
    ops::logaddexp(x, 0.0)
}
pub fn softsign(x: &Array) -> Array {
    x / &(ops::abs(x) + 1.0)
}
pub fn softshrink(x: &Array, lambd: f64) -> Array {
    ops::where_(ops::greater(ops::abs(x), lambd), x - &(ops::sign(x) * lambd), 0.0)
}
pub fn sigmoid(x: &Array) -> Array {
    ops::sigmoid(x)
}
pub fn log_sigmoid(x: &Array) -> Array {
    -softplus(&-x)
}
pub fn tanh(x: &Array) -> Array {
    ops::tanh(x)
}
/// Splits `axis` in two halves `a, b` and returns `a * sigmoid(b)`.
pub fn glu(x: &Array, axis: isize) -> Array {
    let parts = ops::split_equal(x, 2, axis);
    match parts.as_slice() {
        [a, b] => a * &ops::sigmoid(b),
        _ => parts.into_iter().next().unwrap_or_else(|| x.clone()),
    }
}
/// 1 where `x > threshold`, else 0 (in x's dtype).
pub fn step(x: &Array, threshold: f64) -> Array {
    ops::where_(ops::greater(x, threshold), 1.0, 0.0).astype(x.dtype())
}
pub fn softmax(x: &Array, axis: isize) -> Array {
    ops::softmax(x, axis, false)
}
pub fn log_softmax(x: &Array, axis: isize) -> Array {
    x - &ops::logsumexp(x, axis, true)
}
pub fn softmin(x: &Array, axis: isize) -> Array {
    ops::softmax(&-x, axis, false)
}
