//! Convolutions as in `mlx.nn`: `Conv1d/2d/3d` and `ConvTranspose1d/2d/3d`, channels last
//! (`NLC`, `NHWC`, `NDHWC`) with weights `[out_channels, *kernel_size, in_channels / groups]`.

use crate::{init, Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype, Error, Result};

/// An int-or-tuple argument (MLX's `Union[int, tuple]`): one value for every spatial axis, or
/// one per axis.
pub trait IntoDims<const N: usize> {
    fn into_dims(self) -> [usize; N];
}

impl<const N: usize> IntoDims<N> for usize {
    fn into_dims(self) -> [usize; N] {
        [self; N]
    }
}

impl<const N: usize> IntoDims<N> for [usize; N] {
    fn into_dims(self) -> [usize; N] {
        self
    }
}

impl IntoDims<2> for (usize, usize) {
    fn into_dims(self) -> [usize; 2] {
        [self.0, self.1]
    }
}

impl IntoDims<3> for (usize, usize, usize) {
    fn into_dims(self) -> [usize; 3] {
        [self.0, self.1, self.2]
    }
}

/// Checks a channels-last input of `N` spatial axes (batch required, as MLX's convolutions) and
/// its channel count.
pub(crate) fn check_channels_last(layer: &str, x: &Array, spatial: usize, channels: usize) -> std::result::Result<(), Array> {
    if let Err(e) = x.check() {
        return Err(Array::error(e));
    }
    let layout = match spatial {
        1 => "[N, L, C]",
        2 => "[N, H, W, C]",
        _ => "[N, D, H, W, C]",
    };
    if x.ndim() != spatial + 2 {
        return Err(Array::error(Error::invalid(format!(
            "[{layer}] expected a {}-d input {layout} (channels last), got shape {:?}",
            spatial + 2,
            x.shape()
        ))));
    }
    let c = x.shape()[x.ndim() - 1];
    if c != channels {
        return Err(Array::error(Error::invalid(format!(
            "[{layer}] expected {channels} input channels in the last axis of {layout}, got shape {:?}",
            x.shape()
        ))));
    }
    Ok(())
}

/// The (padded) input must hold the dilated kernel along every spatial axis.
fn check_kernel_fits(layer: &str, x: &Array, weight: &Array, padding: &[usize], dilation: &[usize]) -> std::result::Result<(), Array> {
    let n = padding.len();
    for i in 0..n {
        let size = x.shape()[i + 1] + 2 * padding[i];
        let k = weight.shape().get(i + 1).copied().unwrap_or(1);
        let span = dilation[i] * (k.max(1) - 1) + 1;
        if size < span {
            return Err(Array::error(Error::invalid(format!(
                "[{layer}] input of shape {:?} with padding {padding:?} is smaller than the kernel (spatial size {k}, dilation {}) along spatial axis {i}",
                x.shape(),
                dilation[i]
            ))));
        }
    }
    Ok(())
}

fn check_groups(layer: &str, in_channels: usize, out_channels: usize, groups: usize) -> Result<()> {
    if groups == 0 || in_channels % groups != 0 {
        return Err(Error::invalid(format!(
            "[{layer}] The number of input channels ({in_channels}) must be divisible by the number of groups ({groups})"
        )));
    }
    if out_channels % groups != 0 {
        return Err(Error::invalid(format!(
            "[{layer}] The number of output channels ({out_channels}) must be divisible by the number of groups ({groups})"
        )));
    }
    Ok(())
}

/// MLX's convolution initialisation: U(-s, s) with `s = sqrt(1 / (fan_in * prod(kernel)))`; the
/// bias starts at zero.
fn conv_weight(out_channels: usize, kernel: &[usize], in_per_group: usize) -> Array {
    let scale = (1.0 / (in_per_group * kernel.iter().product::<usize>()) as f64).sqrt();
    let mut shape = vec![out_channels];
    shape.extend_from_slice(kernel);
    shape.push(in_per_group);
    init::uniform(&shape, Dtype::Float32, -scale, scale)
}

fn add_bias(y: Array, bias: &Option<Array>) -> Array {
    match bias {
        Some(b) => &y + b,
        None => y,
    }
}

macro_rules! conv_layer {
    ($(#[$doc:meta])* $name:ident, $n:literal, $dims:ty, $op:ident, $one:expr) => {
        $(#[$doc])*
        #[derive(Module, Clone, Debug)]
        pub struct $name {
            /// `[out_channels, *kernel_size, in_channels / groups]`.
            pub weight: Array,
            /// `[out_channels]`.
            pub bias: Option<Array>,
            pub stride: $dims,
            pub padding: $dims,
            pub dilation: $dims,
            pub groups: usize,
            pub state: ModuleState,
        }

        impl $name {
            /// MLX's defaults: stride 1, padding 0, dilation 1, one group, with a bias.
            pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl IntoDims<$n>) -> $name {
                Self::with_options(in_channels, out_channels, kernel_size, 1usize, 0usize, 1usize, 1, true)
                    .expect("one group always divides the channels")
            }

            /// All of MLX's arguments; errors if `groups` does not divide the channel counts.
            #[allow(clippy::too_many_arguments)]
            pub fn with_options(
                in_channels: usize,
                out_channels: usize,
                kernel_size: impl IntoDims<$n>,
                stride: impl IntoDims<$n>,
                padding: impl IntoDims<$n>,
                dilation: impl IntoDims<$n>,
                groups: usize,
                bias: bool,
            ) -> Result<$name> {
                check_groups(stringify!($name), in_channels, out_channels, groups)?;
                let k = kernel_size.into_dims();
                Ok($name {
                    weight: conv_weight(out_channels, &k, in_channels / groups),
                    bias: bias.then(|| ops::zeros(&[out_channels], Dtype::Float32)),
                    stride: $one(stride.into_dims()),
                    padding: $one(padding.into_dims()),
                    dilation: $one(dilation.into_dims()),
                    groups,
                    state: ModuleState::default(),
                })
            }

            /// The number of input channels the weight expects.
            pub fn in_channels(&self) -> usize {
                self.weight.shape().last().copied().unwrap_or(0) * self.groups
            }
        }

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                if let Err(e) = check_channels_last(stringify!($name), x, $n, self.in_channels()) {
                    return e;
                }
                let (padding, dilation): ([usize; $n], [usize; $n]) = (as_dims(self.padding), as_dims(self.dilation));
                if let Err(e) = check_kernel_fits(stringify!($name), x, &self.weight, &padding, &dilation) {
                    return e;
                }
                add_bias(ops::$op(x, &self.weight, self.stride, self.padding, self.dilation, self.groups), &self.bias)
            }
        }
    };
}

fn first(d: [usize; 1]) -> usize {
    d[0]
}

/// A layer's stored per-axis value (`usize` for 1-d layers) as an array.
fn as_dims<const N: usize>(v: impl IntoDims<N>) -> [usize; N] {
    v.into_dims()
}

conv_layer!(
    /// 1-d convolution over `[N, L, C_in]`.
    Conv1d, 1, usize, conv1d, first);
conv_layer!(
    /// 2-d convolution over `[N, H, W, C_in]`.
    Conv2d, 2, [usize; 2], conv2d, std::convert::identity);
conv_layer!(
    /// 3-d convolution over `[N, D, H, W, C_in]`.
    Conv3d, 3, [usize; 3], conv3d, std::convert::identity);

macro_rules! conv_transpose_layer {
    ($(#[$doc:meta])* $name:ident, $n:literal, $dims:ty, $op:ident, $one:expr) => {
        $(#[$doc])*
        #[derive(Module, Clone, Debug)]
        pub struct $name {
            /// `[out_channels, *kernel_size, in_channels]`.
            pub weight: Array,
            /// `[out_channels]`.
            pub bias: Option<Array>,
            pub stride: $dims,
            pub padding: $dims,
            pub dilation: $dims,
            /// Extra size added at the end of each spatial axis of the output.
            pub output_padding: $dims,
            pub state: ModuleState,
        }

        impl $name {
            /// MLX's defaults: stride 1, padding 0, dilation 1, output padding 0, with a bias.
            pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl IntoDims<$n>) -> $name {
                Self::with_options(in_channels, out_channels, kernel_size, 1usize, 0usize, 1usize, 0usize, true)
            }

            /// All of MLX's arguments.
            #[allow(clippy::too_many_arguments)]
            pub fn with_options(
                in_channels: usize,
                out_channels: usize,
                kernel_size: impl IntoDims<$n>,
                stride: impl IntoDims<$n>,
                padding: impl IntoDims<$n>,
                dilation: impl IntoDims<$n>,
                output_padding: impl IntoDims<$n>,
                bias: bool,
            ) -> $name {
                let k = kernel_size.into_dims();
                $name {
                    weight: conv_weight(out_channels, &k, in_channels),
                    bias: bias.then(|| ops::zeros(&[out_channels], Dtype::Float32)),
                    stride: $one(stride.into_dims()),
                    padding: $one(padding.into_dims()),
                    dilation: $one(dilation.into_dims()),
                    output_padding: $one(output_padding.into_dims()),
                    state: ModuleState::default(),
                }
            }
        }

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                let c = self.weight.shape().last().copied().unwrap_or(0);
                if let Err(e) = check_channels_last(stringify!($name), x, $n, c) {
                    return e;
                }
                add_bias(ops::$op(x, &self.weight, self.stride, self.padding, self.dilation, self.output_padding, 1), &self.bias)
            }
        }
    };
}

conv_transpose_layer!(
    /// 1-d transposed convolution over `[N, L, C_in]`.
    ConvTranspose1d, 1, usize, conv_transpose1d, first);
conv_transpose_layer!(
    /// 2-d transposed convolution over `[N, H, W, C_in]`.
    ConvTranspose2d, 2, [usize; 2], conv_transpose2d, std::convert::identity);
conv_transpose_layer!(
    /// 3-d transposed convolution over `[N, D, H, W, C_in]`.
    ConvTranspose3d, 3, [usize; 3], conv_transpose3d, std::convert::identity);
