"""``InstanceNorm``, ``LayerNorm``, ``RMSNorm``, ``GroupNorm`` and ``BatchNorm`` (features last)."""

import oxmx.core as mx

from .base import Module

__all__ = ["InstanceNorm", "LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm"]


class InstanceNorm(Module):
    """Normalizes each sample and channel over the spatial axes (all but the first and last)."""

    def __init__(self, dims, eps=1e-5, affine=False):
        super().__init__()
        if affine:
            self.weight = mx.ones((dims,))
            self.bias = mx.zeros((dims,))
        self.dims = dims
        self.eps = eps

    def _extra_repr(self):
        return "{}, eps={}, affine={}".format(self.dims, self.eps, "weight" in self)

    def __call__(self, x):
        axes = tuple(range(1, x.ndim - 1))
        mean = mx.mean(x, axis=axes, keepdims=True)
        var = mx.var(x, axis=axes, keepdims=True)
        x = (x - mean) * mx.rsqrt(var + self.eps)
        if "weight" in self:
            return self.weight * x + self.bias
        return x


class LayerNorm(Module):
    """Normalizes over the last axis (``dims`` features), then scales and shifts when ``affine``."""

    def __init__(self, dims, eps=1e-5, affine=True, bias=True):
        super().__init__()
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.dims = dims
        self.eps = eps

    def _extra_repr(self):
        return "{}, eps={}, affine={}".format(self.dims, self.eps, "weight" in self)

    def __call__(self, x):
        return mx.fast.layer_norm(x, self.get("weight"), self.get("bias"), self.eps)


class RMSNorm(Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis."""

    def __init__(self, dims, eps=1e-5):
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps = eps

    def _extra_repr(self):
        return "{}, eps={}".format(self.weight.shape[0], self.eps)

    def __call__(self, x):
        return mx.fast.rms_norm(x, self["weight"], self.eps)


class GroupNorm(Module):
    """Normalizes groups of channels (``num_groups`` of the ``dims`` last-axis features) over the
    spatial axes. ``pytorch_compatible`` groups consecutive channels as PyTorch does."""

    def __init__(self, num_groups, dims, eps=1e-5, affine=True, pytorch_compatible=False):
        super().__init__()
        if affine:
            self.bias = mx.zeros((dims,))
            self.weight = mx.ones((dims,))
        self.num_groups = num_groups
        self.dims = dims
        self.eps = eps
        self.pytorch_compatible = pytorch_compatible

    def _extra_repr(self):
        return "{}, {}, eps={}, affine={}, pytorch_compatible={}".format(
            self.num_groups, self.dims, self.eps, "weight" in self, self.pytorch_compatible)

    def _torch_groups(self, x):
        g = self.num_groups
        batch, *rest, dims = x.shape
        size = dims // g
        x = x.reshape(batch, -1, g, size).transpose(0, 2, 1, 3).reshape(batch, g, -1)
        x = mx.fast.layer_norm(x, None, None, self.eps)
        x = x.reshape(batch, g, -1, size).transpose(0, 2, 1, 3)
        return x.reshape(batch, *rest, dims)

    def _strided_groups(self, x):
        g = self.num_groups
        batch, *rest, dims = x.shape
        x = x.reshape(batch, -1, g)
        mean = mx.mean(x, axis=1, keepdims=True)
        var = mx.var(x, axis=1, keepdims=True)
        x = (x - mean) * mx.rsqrt(var + self.eps)
        return x.reshape(batch, *rest, dims)

    def __call__(self, x):
        x = self._torch_groups(x) if self.pytorch_compatible else self._strided_groups(x)
        if "weight" in self:
            return self.weight * x + self.bias
        return x


class BatchNorm(Module):
    """Normalizes over every axis but the last (features) with batch statistics in training and
    running statistics (updated with ``momentum``; the running variance is the unbiased
    one) in evaluation mode. The running statistics are
    entries of the module but never trainable."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = mx.ones((num_features,))
            self.bias = mx.zeros((num_features,))
        if track_running_stats:
            self.running_mean = mx.zeros((num_features,))
            self.running_var = mx.ones((num_features,))
            self.freeze(keys=["running_mean", "running_var"], recurse=False)

    def unfreeze(self, *args, **kwargs):
        super().unfreeze(*args, **kwargs)
        if self.track_running_stats:
            self.freeze(keys=["running_mean", "running_var"], recurse=False)
        return self

    def _extra_repr(self):
        return "{}, eps={}, momentum={}, affine={}, track_running_stats={}".format(
            self.num_features, self.eps, self.momentum, "weight" in self, self.track_running_stats)

    def __call__(self, x):
        if x.ndim < 2 or x.ndim > 4:
            raise ValueError("Expected input tensor to have 2, 3 or 4 dimensions, but got {}".format(x.ndim))
        if self.training or not self.track_running_stats:
            axes = tuple(range(0, x.ndim - 1))
            mean = mx.mean(x, axis=axes)
            var = mx.var(x, axis=axes)
            if self.training and self.track_running_stats:
                mu = self.momentum
                n = 1
                for a in axes:
                    n *= x.shape[a]
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean = (1 - mu) * self.running_mean + mu * mean
                self.running_var = (1 - mu) * self.running_var + mu * unbiased
        else:
            mean, var = self.running_mean, self.running_var
        x = (x - mean) * mx.rsqrt(var + self.eps)
        if "weight" in self:
            return self.weight * x + self.bias
        return x
