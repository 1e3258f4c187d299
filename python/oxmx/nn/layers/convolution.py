"""``Conv1d``, ``Conv2d``, ``Conv3d`` (channels last: inputs ``N...C``, weights ``O...I``)."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["Conv1d", "Conv2d", "Conv3d"]


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _check_groups(in_channels, groups):
    if in_channels % groups != 0:
        raise ValueError(
            "The number of input channels ({}) must be divisible by the number of groups ({})".format(in_channels, groups))


class _ConvNd(Module):
    _n = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias):
        super().__init__()
        n = self._n
        _check_groups(in_channels, groups)
        if n == 1:
            ks = _tuple(kernel_size, 1)
        else:
            ks = _tuple(kernel_size, n)
            stride, padding = _tuple(stride, n), _tuple(padding, n)
        scale = math.sqrt(1 / (in_channels * math.prod(ks)))
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(out_channels, *ks, in_channels // groups))
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups

    def _extra_repr(self):
        ks = tuple(self.weight.shape[1:-1])
        ks = ks[0] if self._n == 1 else ks
        return "{}, {}, kernel_size={}, stride={}, padding={}, dilation={}, groups={}, bias={}".format(
            self.weight.shape[-1] * self.groups, self.weight.shape[0], ks, self.stride, self.padding,
            self.dilation, self.groups, "bias" in self)

    def _conv(self, x):
        raise NotImplementedError

    def __call__(self, x):
        y = self._conv(x)
        if "bias" in self:
            y = y + self.bias
        return y


class Conv1d(_ConvNd):
    """1-D convolution over ``NLC`` inputs."""

    _n = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def _conv(self, x):
        return mx.conv1d(x, self.weight, self.stride, self.padding, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over ``NHWC`` inputs."""

    _n = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def _conv(self, x):
        return mx.conv2d(x, self.weight, self.stride, self.padding, self.dilation, self.groups)


class Conv3d(_ConvNd):
    """3-D convolution over ``NDHWC`` inputs."""

    _n = 3

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias)

    def _extra_repr(self):
        return "{}, {}, kernel_size={}, stride={}, padding={}, dilation={}, bias={}".format(
            self.weight.shape[-1], self.weight.shape[0], tuple(self.weight.shape[1:-1]), self.stride, self.padding,
            self.dilation, "bias" in self)

    def _conv(self, x):
        return mx.conv3d(x, self.weight, self.stride, self.padding, self.dilation)
