"""``Embedding``."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``dims``, indexed by integer arrays; starts
    normal with standard deviation ``1/sqrt(dims)``."""

    def __init__(self, num_embeddings, dims):
        super().__init__()
        scale = math.sqrt(1 / dims)
        self.weight = mx.random.normal(shape=(num_embeddings, dims), scale=scale)

    def _extra_repr(self):
        return "{}, {}".format(*self.weight.shape)

    def __call__(self, x):
        return self.weight[x]

    def as_linear(self, x):
        """``x @ weight.T``: the table used as an output projection (tied embeddings)."""
        return x @ self.weight.T

    def to_quantized(self, group_size=None, bits=None, mode="affine", quantize_input=False):
        """This layer as a ``QuantizedEmbedding`` (``nn.quantize`` calls this)."""
        from .quantized import QuantizedEmbedding

        return QuantizedEmbedding.from_embedding(self, group_size, bits, mode)
