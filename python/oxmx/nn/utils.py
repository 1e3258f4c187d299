"""``nn.value_and_grad``, ``nn.checkpoint`` and the distributed helpers of ``mlx.nn.utils``."""

from functools import wraps

import oxmx.core as mx

__all__ = ["value_and_grad", "checkpoint", "average_gradients", "fully_shard"]


def value_and_grad(model, fn):
    """``fn``'s value and its gradient with respect to ``model.trainable_parameters()``.

    The returned function takes ``fn``'s arguments and gives ``(value, grads)``, ``grads`` a tree
    shaped like the trainable parameters."""

    # The arguments reach ``fn`` through a closure rather than through ``mx.value_and_grad``:
    # oxmx.core rebuilds dict-like positional arguments as plain dicts, and MLX code often passes
    # the model itself (a dict subclass) as ``fn``'s first argument.
    @wraps(fn)
    def wrapped(*args, **kwargs):
        def inner(params):
            model.update(params)
            return fn(*args, **kwargs)

        return mx.value_and_grad(inner)(model.trainable_parameters())

    return wrapped


def checkpoint(module, fn=None):
    """``fn`` (by default the module's ``__call__``) run so that its intermediate values are
    recomputed in the backward pass (``mx.checkpoint``) when oxmx.core has it; the values and
    gradients are the same either way."""
    if fn is None:
        fn = module.__call__

    core_checkpoint = getattr(mx, "checkpoint", None)

    def inner(params, *args, **kwargs):
        module.update(params)
        return fn(*args, **kwargs)

    if core_checkpoint is None:
        return fn

    ck = core_checkpoint(inner)

    @wraps(fn)
    def wrapped(*args, **kwargs):
        return ck(module.trainable_parameters(), *args, **kwargs)

    return wrapped


def average_gradients(gradients, group=None, all_reduce_size=32 * 1024**2, communication_stream=None):
    """Averages gradients over the processes of a distributed group. oxmx has no
    ``mx.distributed``, so there is always one process: the gradients are returned unchanged
    unless a group is given."""
    if group is not None:
        raise NotImplementedError("average_gradients over a group needs mx.distributed, which oxmx does not provide")
    return gradients


def fully_shard(module, *, group=None, compute_dtype=None):
    """Not available in oxmx (needs ``mx.distributed``)."""
    raise NotImplementedError("fully_shard needs mx.distributed, which oxmx does not provide yet")
