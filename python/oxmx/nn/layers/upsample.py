"""``Upsample`` (nearest, linear and cubic interpolation over channels-last inputs)."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["Upsample", "upsample_nearest", "upsample_linear", "upsample_cubic"]


def _source_coords(n, m, scale, align_corners):
    """Where each of the ``m`` output positions samples the ``n`` input ones (float32)."""
    i = mx.arange(m, dtype=mx.float32)
    if align_corners:
        return i * ((n - 1) / (m - 1)) if m > 1 else i * 0.0
    step = 1 / scale
    start = ((m - 1) * step - n + 1) / 2
    return i * step - start


def _out_len(n, scale):
    return int(scale * n)


def _nearest_1d(x, axis, scale):
    n = x.shape[axis]
    m = _out_len(n, scale)
    i = mx.arange(m, dtype=mx.float32)
    if m > n:
        idx = mx.round((i + 0.5) * (n / m) - 0.5)
    else:
        idx = i * (n / m)
    idx = mx.clip(idx, 0, n - 1).astype(mx.int32)
    return mx.take(x, idx, axis=axis)


def _weights_shape(ndim, axis):
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def _linear_1d(x, axis, scale, align_corners):
    n = x.shape[axis]
    m = _out_len(n, scale)
    c = mx.clip(_source_coords(n, m, scale, align_corners), 0, n - 1)
    lo = mx.floor(c)
    hi = mx.ceil(c)
    w = (c - lo).reshape(_weights_shape(x.ndim, axis))
    a = mx.take(x, lo.astype(mx.int32), axis=axis)
    b = mx.take(x, hi.astype(mx.int32), axis=axis)
    return a * (1 - w) + b * w


def _cubic_weight(d, a=-0.75):
    d = mx.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return mx.where(d <= 1, near, mx.where(d < 2, far, 0.0))


def _cubic_1d(x, axis, scale, align_corners):
    n = x.shape[axis]
    m = _out_len(n, scale)
    c = _source_coords(n, m, scale, align_corners)
    base = mx.floor(c)
    out = None
    for k in (-1, 0, 1, 2):
        tap = base + k
        w = _cubic_weight(c - tap).reshape(_weights_shape(x.ndim, axis))
        v = mx.take(x, mx.clip(tap, 0, n - 1).astype(mx.int32), axis=axis) * w
        out = v if out is None else out + v
    return out


def _aa_filter(d, mode):
    d = mx.abs(d)
    if mode == "linear":
        return mx.maximum(1 - d, 0.0)
    return _cubic_weight(d, a=-0.5)


def _antialiased_1d(x, axis, scale, mode):
    """Interpolation whose kernel is widened by ``1/scale`` when downsampling (PIL/PyTorch-style
    antialiasing; cubic uses a = -0.5), normalized over the taps inside the input."""
    n = x.shape[axis]
    m = _out_len(n, scale)
    c = _source_coords(n, m, scale, False)
    stretch = min(scale, 1.0)
    j = mx.arange(n, dtype=mx.float32)
    w = _aa_filter((j[None, :] - c[:, None]) * stretch, mode)  # (m, n)
    w = w / mx.sum(w, axis=1, keepdims=True)
    y = mx.moveaxis(x, axis, -1) @ w.T
    return mx.moveaxis(y, -1, axis)


def upsample_nearest(x, scale_factor):
    """Nearest-neighbour upsampling of the spatial axes of ``x`` (``N, *spatial, C``)."""
    for d, s in enumerate(scale_factor):
        x = _nearest_1d(x, 1 + d, s)
    return x


def upsample_linear(x, scale_factor, align_corners=False):
    """(Multi-)linear interpolation of the spatial axes of ``x``."""
    for d, s in enumerate(scale_factor):
        x = _linear_1d(x, 1 + d, s, align_corners)
    return x


def upsample_cubic(x, scale_factor, align_corners=False):
    """Cubic (Keys, a = -0.75) interpolation of the spatial axes of ``x``."""
    for d, s in enumerate(scale_factor):
        x = _cubic_1d(x, 1 + d, s, align_corners)
    return x


class Upsample(Module):
    """Scales the spatial axes of a channels-last input by ``scale_factor`` (one number, or one
    per spatial axis) with ``mode`` ``"nearest"``, ``"linear"`` or ``"cubic"``."""

    def __init__(self, scale_factor, mode="nearest", align_corners=False, antialias=False):
        super().__init__()
        if mode not in ("nearest", "linear", "cubic"):
            raise ValueError("[Upsample] Got unsupported upsampling algorithm: {}".format(mode))
        if antialias and mode == "nearest":
            raise ValueError("[Upsample] Antialiasing is not supported for nearest neighbor upsampling")
        if antialias and align_corners:
            raise ValueError(
                "[Upsample] antialias=True with align_corners=True is not supported. Use align_corners=False for "
                "antialiased interpolation.")
        if isinstance(scale_factor, (list, tuple)):
            self.scale_factor = tuple(map(float, scale_factor))
        else:
            self.scale_factor = float(scale_factor)
        self.mode = mode
        self.align_corners = align_corners
        self.antialias = antialias

    def _extra_repr(self):
        text = "scale_factor={}, mode={!r}, align_corners={}".format(self.scale_factor, self.mode, self.align_corners)
        if self.antialias:
            text += ", antialias=True"
        return text

    def __call__(self, x):
        dims = x.ndim - 2
        if dims <= 0:
            raise ValueError(
                "[Upsample] The input should have at least 1 spatial dimension which means it should be at least "
                "3D but {}D was provided".format(x.ndim))
        scale = self.scale_factor
        if isinstance(scale, tuple):
            if len(scale) != dims:
                raise ValueError(
                    "[Upsample] One scale per spatial dimension is required but scale_factor={} and the number of "
                    "spatial dimensions were {}".format(scale, dims))
        else:
            scale = (scale,) * dims
        if self.antialias:
            for d, s in enumerate(scale):
                x = _antialiased_1d(x, 1 + d, s, self.mode)
            return x
        if self.mode == "nearest":
            return upsample_nearest(x, scale)
        if self.mode == "linear":
            return upsample_linear(x, scale, self.align_corners)
        return upsample_cubic(x, scale, self.align_corners)


del math
