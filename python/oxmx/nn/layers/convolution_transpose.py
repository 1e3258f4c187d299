"""``ConvTranspose1d``, ``ConvTranspose2d``, ``ConvTranspose3d`` (channels last; weights
``O...I``)."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def conv_transpose_nd(x, w, stride, padding, dilation, output_padding):
    """A transposed convolution built from a plain one (for ranks oxmx.core has no
    ``conv_transpose`` for): spread the input by ``stride``, pad by ``dilation*(k-1) - padding``
    (plus ``output_padding`` at the end) and convolve with the spatially flipped kernel."""
    n = x.ndim - 2
    batch = x.shape[0]
    # spread: insert stride-1 zeros between input positions along each spatial axis
    for i in range(n):
        s = stride[i]
        if s == 1:
            continue
        ax = 1 + i
        shape = list(x.shape)
        length = shape[ax]
        x = mx.expand_dims(x, ax + 1)
        pad = [(0, 0)] * x.ndim
        pad[ax + 1] = (0, s - 1)
        x = mx.pad(x, pad)
        shape[ax] = length * s
        x = x.reshape(shape)
        # drop the trailing zeros after the last input position
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(0, (length - 1) * s + 1)
        x = x[tuple(idx)]
    pads = [(0, 0)]
    crops = [slice(None)]
    for i in range(n):
        k = w.shape[1 + i]
        lo = dilation[i] * (k - 1) - padding[i]
        hi = lo + output_padding[i]
        crop_lo, crop_hi = max(0, -lo), max(0, -hi)
        pads.append((max(lo, 0), max(hi, 0)))
        crops.append(slice(crop_lo, x.shape[1 + i] + max(lo, 0) + max(hi, 0) - crop_hi))
    pads.append((0, 0))
    crops.append(slice(None))
    x = mx.pad(x, pads)
    x = x[tuple(crops)]
    flip = [slice(None)] + [slice(None, None, -1)] * n + [slice(None)]
    wf = w[tuple(flip)]
    conv = {1: mx.conv1d, 2: mx.conv2d, 3: mx.conv3d}[n]
    d = dilation[0] if n == 1 else tuple(dilation)
    del batch
    return conv(x, wf, 1, 0, d) if n == 1 else conv(x, wf, (1,) * n, (0,) * n, d)


class _ConvTransposeNd(Module):
    _n = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, bias):
        super().__init__()
        n = self._n
        ks = _tuple(kernel_size, n)
        scale = math.sqrt(1 / (in_channels * math.prod(ks)))
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(out_channels, *ks, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))
        if n == 1:
            self.stride, self.padding, self.dilation, self.output_padding = stride, padding, dilation, output_padding
        else:
            self.stride, self.padding = _tuple(stride, n), _tuple(padding, n)
            self.dilation, self.output_padding = dilation, _tuple(output_padding, n)

    def _extra_repr(self):
        ks = tuple(self.weight.shape[1:-1])
        ks = ks[0] if self._n == 1 else ks
        return "{}, {}, kernel_size={}, stride={}, padding={}, dilation={}, output_padding={}, bias={}".format(
            self.weight.shape[-1], self.weight.shape[0], ks, self.stride, self.padding, self.dilation,
            self.output_padding, "bias" in self)

    def __call__(self, x):
        y = self._conv(x)
        if "bias" in self:
            y = y + self.bias
        return y


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over ``NLC`` inputs."""

    _n = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, output_padding=0,
                 bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, bias)

    def _conv(self, x):
        return mx.conv_transpose1d(x, self.weight, self.stride, self.padding, self.dilation, self.output_padding)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution over ``NHWC`` inputs."""

    _n = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, output_padding=0,
                 bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, bias)

    def _conv(self, x):
        return mx.conv_transpose2d(x, self.weight, self.stride, self.padding, self.dilation, self.output_padding)


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution over ``NDHWC`` inputs (``mx.conv_transpose3d`` when oxmx.core
    has it, else built from ``conv3d``)."""

    _n = 3

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, output_padding=0,
                 bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, bias)

    def _conv(self, x):
        f = getattr(mx, "conv_transpose3d", None)
        if f is not None:
            return f(x, self.weight, self.stride, self.padding, self.dilation, self.output_padding)
        return conv_transpose_nd(x, self.weight, self.stride, self.padding, _tuple(self.dilation, 3),
                                 self.output_padding)
