"""``Identity``, ``Linear`` and ``Bilinear``."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["Identity", "Linear", "Bilinear"]


class Identity(Module):
    """Returns its input (accepts and ignores any constructor arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, x):
        return x


class Linear(Module):
    """``y = x W^T + b`` with ``W`` of shape ``(output_dims, input_dims)``; both start uniform in
    ``[-1/sqrt(input_dims), 1/sqrt(input_dims)]``."""

    def __init__(self, input_dims, output_dims, bias=True):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self):
        return "input_dims={}, output_dims={}, bias={}".format(self.weight.shape[1], self.weight.shape[0], "bias" in self)

    def __call__(self, x):
        if "bias" in self:
            return mx.addmm(self["bias"], x, self["weight"].T)
        return x @ self["weight"].T

    def to_quantized(self, group_size=None, bits=None, mode="affine", quantize_input=False):
        """This layer as a ``QuantizedLinear`` (``nn.quantize`` calls this)."""
        if quantize_input:
            raise NotImplementedError("quantize_input (QQLinear) is not supported by oxmx yet")
        from .quantized import QuantizedLinear

        return QuantizedLinear.from_linear(self, group_size, bits, mode)


class Bilinear(Module):
    """``y_i = x_1^T W_i x_2 + b_i`` with ``W`` of shape ``(output_dims, input2_dims, input1_dims)``."""

    def __init__(self, input1_dims, input2_dims, output_dims, bias=True):
        super().__init__()
        scale = math.sqrt(1.0 / input1_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input2_dims, input1_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self):
        out, in2, in1 = self.weight.shape
        return "input1_dims={}, input2_dims={}, output_dims={}, bias={}".format(in1, in2, out, "bias" in self)

    def __call__(self, x1, x2):
        out, in2, in1 = self.weight.shape
        lead = x1.shape[:-1]
        x1 = x1.reshape(-1, in1)
        x2 = x2.reshape(-1, 1, in2)
        y = x1 @ self.weight.reshape(out * in2, in1).T  # (n, out * in2)
        y = y.reshape(-1, out, in2).swapaxes(-2, -1)  # (n, in2, out)
        y = (x2 @ y).squeeze(1)  # (n, out)
        if "bias" in self:
            y = y + self.bias
        return y.reshape(*lead, out)
