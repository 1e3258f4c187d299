"""``QuantizedLinear``, ``QuantizedEmbedding`` and ``nn.quantize``."""

import math

import oxmx.core as mx
from oxmx.utils import tree_map_with_path

from .base import Module

__all__ = ["QuantizedLinear", "QuantizedEmbedding", "QQLinear", "quantize"]

# (group_size, bits) when not given, per mode (as mx.quantize)
_MODE_DEFAULTS = {"affine": (64, 4), "mxfp4": (32, 4), "mxfp8": (32, 8), "nvfp4": (16, 4)}


def _defaults(group_size, bits, mode):
    if mode not in _MODE_DEFAULTS:
        raise ValueError("Invalid quantization mode '{}'".format(mode))
    g, b = _MODE_DEFAULTS[mode]
    return (g if group_size is None else group_size), (b if bits is None else bits)


def _set_quantized(layer, w, group_size, bits, mode):
    q = mx.quantize(w, group_size, bits, mode=mode)
    layer.weight, layer.scales = q[0], q[1]
    layer.biases = q[2] if len(q) > 2 else None


class QuantizedLinear(Module):
    """A ``Linear`` whose weight is quantized (``weight``, ``scales``, ``biases`` from
    ``mx.quantize``). A new layer starts frozen; ``from_linear`` leaves the copied ``bias``
    trainable."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=None, bits=None, mode="affine"):
        super().__init__()
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        w = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        _set_quantized(self, w, self.group_size, self.bits, mode)
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()

    def _extra_repr(self):
        out, packed = self.weight.shape
        in_dims = packed * 32 // self.bits
        return "input_dims={}, output_dims={}, bias={}, group_size={}, bits={}, mode={}".format(
            in_dims, out, "bias" in self, self.group_size, self.bits, self.mode)

    def __call__(self, x):
        y = mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"), transpose=True,
                                group_size=self.group_size, bits=self.bits, mode=self.mode)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_linear(cls, linear_layer, group_size=None, bits=None, mode="affine"):
        """The quantized form of a ``Linear``."""
        out, in_dims = linear_layer.weight.shape
        ql = cls(in_dims, out, False, group_size, bits, mode=mode)
        _set_quantized(ql, linear_layer.weight, ql.group_size, ql.bits, mode)
        if "bias" in linear_layer:
            ql.bias = linear_layer.bias
        return ql


class QuantizedEmbedding(Module):
    """An ``Embedding`` whose table is quantized; lookups dequantize the selected rows."""

    def __init__(self, num_embeddings, dims, group_size=None, bits=None, mode="affine"):
        super().__init__()
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        scale = math.sqrt(1 / dims)
        w = mx.random.normal(shape=(num_embeddings, dims), scale=scale)
        _set_quantized(self, w, self.group_size, self.bits, mode)
        self.num_embeddings = num_embeddings
        self.dims = dims
        self.freeze()

    def __call__(self, x):
        b = self.get("biases")
        return mx.dequantize(self["weight"][x], scales=self["scales"][x], biases=None if b is None else b[x],
                             group_size=self.group_size, bits=self.bits, mode=self.mode)

    def as_linear(self, x):
        """``x`` times the (dequantized) table transposed, for tied output projections."""
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _extra_repr(self):
        return "{}, {}, group_size={}, bits={}, mode={}".format(
            self.num_embeddings, self.dims, self.group_size, self.bits, self.mode)

    @classmethod
    def from_embedding(cls, embedding_layer, group_size=None, bits=None, mode="affine"):
        """The quantized form of an ``Embedding``."""
        n, dims = embedding_layer.weight.shape
        qe = cls(n, dims, group_size, bits, mode=mode)
        _set_quantized(qe, embedding_layer.weight, qe.group_size, qe.bits, mode)
        return qe


class QQLinear(Module):
    """A linear layer that also quantizes its input (nvfp4/mxfp8 ``mx.qqmm``). oxmx.core has no
    ``qqmm`` yet, so this raises ``NotImplementedError``."""

    def __init__(self, input_dims, output_dims, group_size=None, bits=None, mode="nvfp4"):
        raise NotImplementedError("QQLinear needs mx.qqmm, which oxmx.core does not provide yet")


def quantize(model, group_size=None, bits=None, *, mode="affine", quantize_input=False, class_predicate=None):
    """Replaces, in place, the leaf modules that ``class_predicate(path, module)`` selects (by
    default: those with ``to_quantized``) with their quantized forms. The predicate may return a
    dict of ``to_quantized`` arguments for that layer instead of ``True``."""
    class_predicate = class_predicate or (lambda _, m: hasattr(m, "to_quantized"))

    def one(path, m):
        choice = class_predicate(path, m)
        if not choice:
            return m
        if not hasattr(m, "to_quantized"):
            raise ValueError("Unable to quantize model of type {}".format(type(m)))
        if isinstance(choice, bool):
            kwargs = {"group_size": group_size, "bits": bits, "mode": mode}
            if quantize_input:
                kwargs["quantize_input"] = True
            return m.to_quantized(**kwargs)
        if isinstance(choice, dict):
            return m.to_quantized(**choice)
        raise ValueError("``class_predicate`` must return a bool or a dict of parameters to pass to ``to_quantized``")

    leaves = tree_map_with_path(one, model.leaf_modules(), is_leaf=Module.is_module)
    model.update_modules(leaves)
