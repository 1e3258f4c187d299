"""``MaxPool1d/2d/3d`` and ``AvgPool1d/2d/3d`` over channels-last inputs (``N...C``)."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d"]


def _tuple(v, n, name):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    if len(v) != n or not all(isinstance(i, int) for i in v):
        raise ValueError("[{}] expected an int or a tuple of {} ints, got {}".format(name, n, v))
    return v


def _windows(x, kernel, stride):
    """The pooling windows of ``x`` (``N, *spatial, C``) as ``N, *out, C, prod(kernel)``."""
    n = len(kernel)
    spatial = x.shape[1:1 + n]
    out = [max((s - k) // st + 1, 0) for s, k, st in zip(spatial, kernel, stride)]  # 0: empty, as MLX
    pieces = []

    def gather(axis, index):
        if axis == n:
            pieces.append(x[tuple([slice(None)] + index + [slice(None)])])
            return
        for off in range(kernel[axis]):
            sl = slice(off, off + stride[axis] * (out[axis] - 1) + 1, stride[axis])
            gather(axis + 1, index + [sl])

    gather(0, [])
    return mx.stack(pieces, axis=-1)


class _Pool(Module):
    _n = 0
    _name = ""

    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        n = self._n
        self._kernel_size = _tuple(kernel_size, n, "kernel_size")
        self._stride = _tuple(stride, n, "stride") if stride is not None else self._kernel_size
        self._padding = _tuple(padding if padding is not None else 0, n, "padding")

    def _extra_repr(self):
        return "kernel_size={}, stride={}, padding={}".format(self._kernel_size, self._stride, self._padding)

    def __call__(self, x):
        if any(p > 0 for p in self._padding):
            pads = [(0, 0)] + [(p, p) for p in self._padding] + [(0, 0)]
            x = mx.pad(x, pads, constant_values=self._pad_value(x))
        w = _windows(x, self._kernel_size, self._stride)
        if w.size == 0:  # a kernel larger than the input: an empty result, as MLX
            return mx.zeros(w.shape[:-1], dtype=x.dtype)
        return self._reduce(w)


class _MaxPool(_Pool):
    def _pad_value(self, x):
        if mx.issubdtype(x.dtype, mx.floating):
            return float("-inf")
        return mx.array(mx.iinfo(x.dtype).min, x.dtype) if hasattr(mx, "iinfo") else 0

    def _reduce(self, w):
        return mx.max(w, axis=-1)


class _AvgPool(_Pool):
    def _pad_value(self, x):
        return 0

    def _reduce(self, w):
        return mx.mean(w, axis=-1)


class MaxPool1d(_MaxPool):
    """Maximum over windows of ``NLC`` inputs (``stride`` defaults to ``kernel_size``; padding is -inf)."""

    _n = 1

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class MaxPool2d(_MaxPool):
    """Maximum over windows of ``NHWC`` inputs."""

    _n = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class MaxPool3d(_MaxPool):
    """Maximum over windows of ``NDHWC`` inputs."""

    _n = 3

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool1d(_AvgPool):
    """Mean over windows of ``NLC`` inputs (zero padding counts in the mean)."""

    _n = 1

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool2d(_AvgPool):
    """Mean over windows of ``NHWC`` inputs."""

    _n = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool3d(_AvgPool):
    """Mean over windows of ``NDHWC`` inputs."""

    _n = 3

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


del math
