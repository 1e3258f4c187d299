"""Sharded layers of ``mlx.nn`` for distributed tensor parallelism. oxmx has no
``mx.distributed`` yet, so these exist by name and raise ``NotImplementedError``."""

from .base import Module

__all__ = ["AllToShardedLinear", "ShardedToAllLinear", "QuantizedAllToShardedLinear", "QuantizedShardedToAllLinear",
           "FullyShardedModule"]


class _Unavailable(Module):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "{} needs mx.distributed, which oxmx does not provide yet".format(type(self).__name__))


class AllToShardedLinear(_Unavailable):
    """Not available in oxmx (needs ``mx.distributed``)."""


class ShardedToAllLinear(_Unavailable):
    """Not available in oxmx (needs ``mx.distributed``)."""


class QuantizedAllToShardedLinear(_Unavailable):
    """Not available in oxmx (needs ``mx.distributed``)."""


class QuantizedShardedToAllLinear(_Unavailable):
    """Not available in oxmx (needs ``mx.distributed``)."""


class FullyShardedModule(_Unavailable):
    """Not available in oxmx (needs ``mx.distributed``)."""
