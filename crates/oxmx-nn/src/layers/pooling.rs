//! Max and average pooling over 1, 2 or 3 spatial axes, channels last, as in `mlx.nn`:
//! the input is padded (with `-inf` for max pooling, `0` for average pooling, so padded zeros
//! count in the average) and the windows are a strided view of it.

use super::conv::IntoDims;
use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Error, Result};

/// Which reduction a pooling layer applies to each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolKind {
    Max,
    Avg,
}

fn check_config(layer: &str, kernel_size: &[usize], stride: &[usize]) -> Result<()> {
    for (name, v) in [("kernel_size", kernel_size), ("stride", stride)] {
        if v.iter().any(|&d| d == 0) {
            return Err(Error::invalid(format!("[{layer}] '{name}' must be positive but got {v:?}.")));
        }
    }
    Ok(())
}

/// `[N, *spatial, C]` -> `[N, *out, *window, C]`: MLX's `_sliding_windows` (a reshape when the
/// windows tile the input exactly, an `as_strided` view otherwise).
fn sliding_windows(x: &Array, window: &[usize], stride: &[usize]) -> Array {
    let shape = x.shape().to_vec();
    let nd = shape.len();
    let sp = &shape[1..nd - 1];
    if sp.iter().zip(window).zip(stride).all(|((&s, &w), &st)| w == st && s % w == 0) {
        let mut new_shape: Vec<isize> = vec![shape[0] as isize];
        for (&s, &w) in sp.iter().zip(window) {
            new_shape.push((s / w) as isize);
            new_shape.push(w as isize);
        }
        new_shape.push(shape[nd - 1] as isize);
        let last = new_shape.len() - 1;
        let mut order: Vec<isize> = vec![0];
        order.extend((1..last).step_by(2).map(|a| a as isize));
        order.extend((2..last).step_by(2).map(|a| a as isize));
        order.push(last as isize);
        return ops::transpose(&ops::reshape(x, &new_shape), &order);
    }
    // Row-major element strides of x.
    let mut strides = vec![1isize; nd];
    for i in (0..nd - 1).rev() {
        strides[i] = strides[i + 1] * shape[i + 1] as isize;
    }
    let mut final_shape = vec![shape[0]];
    final_shape.extend(sp.iter().zip(window).zip(stride).map(|((&s, &w), &st)| (s - w) / st + 1));
    final_shape.extend_from_slice(window);
    final_shape.push(shape[nd - 1]);
    let mut final_strides = vec![strides[0]];
    final_strides.extend(strides[1..nd - 1].iter().zip(stride).map(|(&s, &st)| s * st as isize));
    final_strides.extend_from_slice(&strides[1..nd - 1]);
    final_strides.push(strides[nd - 1]);
    ops::as_strided(x, &final_shape, &final_strides, 0)
}

fn pool(layer: &str, kind: PoolKind, x: &Array, kernel: &[usize], stride: &[usize], padding: &[usize]) -> Array {
    if let Err(e) = x.check() {
        return Array::error(e);
    }
    let n = kernel.len();
    let layout = ["[N, L, C]", "[N, H, W, C]", "[N, D, H, W, C]"][n - 1];
    if x.ndim() != n + 2 {
        return Array::error(Error::invalid(format!(
            "[{layer}] expected a {}-d input {layout} (channels last), got shape {:?}",
            n + 2,
            x.shape()
        )));
    }
    let mut x = x.clone();
    if padding.iter().any(|&p| p > 0) {
        let mut widths = vec![(0, 0)];
        widths.extend(padding.iter().map(|&p| (p, p)));
        widths.push((0, 0));
        x = match kind {
            PoolKind::Max => ops::pad_constant(&x, &widths, f64::NEG_INFINITY),
            PoolKind::Avg => ops::pad_constant(&x, &widths, 0.0),
        };
    }
    let sp = &x.shape()[1..n + 1];
    if let Some(i) = (0..n).find(|&i| sp[i] < kernel[i]) {
        return Array::error(Error::invalid(format!(
            "[{layer}] the padded input is smaller than the kernel along spatial axis {i}: input shape {:?} with padding {padding:?}, kernel_size {kernel:?}",
            x.shape()
        )));
    }
    let w = sliding_windows(&x, kernel, stride);
    let axes: Vec<isize> = (0..n as isize).map(|i| -(n as isize) - 1 + i).collect();
    match kind {
        PoolKind::Max => ops::max(&w, axes, false),
        PoolKind::Avg => ops::mean(&w, axes, false),
    }
}

macro_rules! pool_layer {
    ($(#[$doc:meta])* $name:ident, $n:literal, $kind:expr) => {
        $(#[$doc])*
        #[derive(Module, Clone, Debug)]
        pub struct $name {
            pub kernel_size: [usize; $n],
            pub stride: [usize; $n],
            /// Applied on both sides of each spatial axis.
            pub padding: [usize; $n],
            pub state: ModuleState,
        }

        impl $name {
            /// `stride = kernel_size`, no padding (MLX's defaults). Errors on a zero kernel size.
            pub fn new(kernel_size: impl IntoDims<$n>) -> Result<$name> {
                let k = kernel_size.into_dims();
                Self::with_options(k, k, 0usize)
            }

            /// Explicit stride and padding (MLX's `stride=None` is [`Self::new`]'s `stride = kernel_size`).
            pub fn with_options(kernel_size: impl IntoDims<$n>, stride: impl IntoDims<$n>, padding: impl IntoDims<$n>) -> Result<$name> {
                let (kernel_size, stride, padding) = (kernel_size.into_dims(), stride.into_dims(), padding.into_dims());
                check_config(stringify!($name), &kernel_size, &stride)?;
                Ok($name { kernel_size, stride, padding, state: ModuleState::default() })
            }
        }

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                pool(stringify!($name), $kind, x, &self.kernel_size, &self.stride, &self.padding)
            }
        }
    };
}

pool_layer!(
    /// Max over sliding windows of `[N, L, C]`; padding uses `-inf`.
    MaxPool1d, 1, PoolKind::Max);
pool_layer!(
    /// Max over sliding windows of `[N, H, W, C]`; padding uses `-inf`.
    MaxPool2d, 2, PoolKind::Max);
pool_layer!(
    /// Max over sliding windows of `[N, D, H, W, C]`; padding uses `-inf`.
    MaxPool3d, 3, PoolKind::Max);
pool_layer!(
    /// Mean over sliding windows of `[N, L, C]`; zero padding counts in the mean.
    AvgPool1d, 1, PoolKind::Avg);
pool_layer!(
    /// Mean over sliding windows of `[N, H, W, C]`; zero padding counts in the mean.
    AvgPool2d, 2, PoolKind::Avg);
pool_layer!(
    /// Mean over sliding windows of `[N, D, H, W, C]`; zero padding counts in the mean.
    AvgPool3d, 3, PoolKind::Avg);
