"""``nn.value_and_grad``, ``nn.checkpoint`` and the distributed helpers of ``mlx.nn.utils``."""

from functools import wraps

import oxmx.core as mx
from oxmx.utils import tree_flatten, tree_map

__all__ = ["value_and_grad", "checkpoint", "average_gradients"]


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
    """The average of ``gradients`` (a tree) over the processes of a distributed ``group`` (the
    world by default), through ``mx.distributed.all_sum``. Small arrays of one dtype are summed
    together in buffers of up to ``all_reduce_size`` bytes (``<= 0``: one call per array). With
    one process, or where oxmx.core has no ``mx.distributed``, the gradients come back as they
    are."""
    dist = getattr(mx, "distributed", None)
    if dist is None:
        if group is not None:
            raise NotImplementedError("average_gradients over a group needs mx.distributed")
        return gradients
    group = group or dist.init()
    n = group.size()
    if n == 1:
        return gradients

    def average(x):
        return dist.all_sum(x, group=group, stream=communication_stream) / n

    if all_reduce_size <= 0:
        return tree_map(average, gradients)

    flat = tree_flatten(gradients)
    out = [None] * len(flat)
    by_dtype = {}
    for i, (_, g) in enumerate(flat):
        by_dtype.setdefault(repr(g.dtype), []).append(i)
    for idx in by_dtype.values():
        batch, size = [], 0
        for i in idx + [None]:
            g = flat[i][1] if i is not None else None
            nbytes = g.nbytes if g is not None else 0
            if batch and (i is None or size + nbytes > all_reduce_size):
                parts = [flat[j][1].reshape(-1) for j in batch]
                summed = average(mx.concatenate(parts) if len(parts) > 1 else parts[0])
                offsets = []
                acc = 0
                for p in parts[:-1]:
                    acc += p.size
                    offsets.append(acc)
                pieces = mx.split(summed, offsets) if offsets else [summed]
                for j, piece in zip(batch, pieces):
                    out[j] = piece.reshape(flat[j][1].shape)
                batch, size = [], 0
            if i is not None:
                batch.append(i)
                size += nbytes
    return tree_unflatten_like(gradients, [(k, v) for (k, _), v in zip(flat, out)])


def tree_unflatten_like(tree, flat):
    """``flat`` (``(path, leaf)`` pairs in ``tree_flatten`` order) put back into ``tree``'s shape."""
    it = iter(v for _, v in flat)
    return tree_map(lambda _: next(it), tree)
