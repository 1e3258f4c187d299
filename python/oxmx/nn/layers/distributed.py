"""Sharded layers of ``mlx.nn`` for tensor parallelism over ``mx.distributed``.

- ``AllToShardedLinear``: a replicated input, this rank's block of output features (weight
  rows, bias entries). Its input passes through ``sum_gradients``, so the input's gradient is
  the sum of every rank's contribution.
- ``ShardedToAllLinear``: this rank's block of input features (weight columns); the partial
  products are all-summed and the full bias is added once, after the sum. Half-precision
  partial products are summed in float32 and cast back (MLX sums them in their own dtype).
- The quantized forms slice the packed weight, scales and quantization biases along the same
  axes; they are frozen, as ``QuantizedLinear``.
- ``shard_linear`` makes one of the above from a ``Linear`` / ``QuantizedLinear``;
  ``shard_inplace`` only slices a module's parameters. ``segments`` splits a fused weight (say a
  q/k/v projection: ``segments=3``) into equal parts (or at the given indices / fractions) and
  shards each part.

- ``FullyShardedModule`` / ``fully_shard``: every parameter split along axis 0 (gathered for
  the forward, gradients reduce-scattered and averaged).
"""

import math

import oxmx.core as mx
from oxmx.utils import tree_flatten, tree_map_with_path, tree_unflatten

from .base import Module
from .linear import Linear
from .quantized import _defaults

__all__ = [
    "AllToShardedLinear",
    "ShardedToAllLinear",
    "QuantizedAllToShardedLinear",
    "QuantizedShardedToAllLinear",
    "FullyShardedModule",
    "fully_shard",
    "shard_linear",
    "shard_inplace",
    "sum_gradients",
]

_HALF = ("float16", "bfloat16")


def _dtype_name(d):
    return repr(d).rsplit(".", 1)[-1]


def _world(group):
    return group if group is not None else mx.distributed.init()


# ---------------------------------------------------------------- sum_gradients


def _sum_gradients_custom(group, custom_function):
    """With ``mx.custom_function``: identity forward; the rule all-sums the cotangent (in
    float32 for half precision, where MLX sums in the cotangent's own dtype)."""
    f = custom_function(lambda x: x)

    def rule(x, dx, _):
        if _dtype_name(dx.dtype) in _HALF:
            return mx.distributed.all_sum(dx.astype(mx.float32), group=group).astype(dx.dtype)
        return mx.distributed.all_sum(dx, group=group)

    f.vjp(rule)  # (oxmx's ``vjp`` returns the rule, not the function)
    return f


def _sum_gradients_composed(group):
    """Identity forward, all-sum of the cotangent backward, from collectives whose derivatives
    oxmx.core already has. ``h(x) = sum_scatter(n copies of x stacked on axis 0)`` is a linear
    map whose transpose is ``all_gather`` followed by a sum of the ``n`` gathered blocks, that is
    the all-sum of the cotangent. ``y = stop_gradient(x) + (h - stop_gradient(h))`` is exactly
    ``x`` in value and has ``h``'s derivative. The price: the forward pass runs one
    ``sum_scatter`` of ``n`` times ``x``'s size (its value is then discarded). ``h`` is computed
    in float32 so half-precision cotangents are summed in float32."""
    n = group.size()

    def f(x):
        shape = x.shape
        dt = x.dtype
        half = _dtype_name(dt) in _HALF
        v = x.astype(mx.float32) if half else x
        v = v.reshape(1, -1)
        stacked = mx.broadcast_to(v, (n, v.shape[1]))  # the transpose sums the n copies
        h = mx.distributed.sum_scatter(stacked, group=group).reshape(shape)
        hs = mx.stop_gradient(h)
        # h - hs is 0 in value; where h overflowed (inf - inf) keep the 0 rather than a NaN.
        d = mx.where(mx.isfinite(hs), h - hs, mx.zeros_like(hs))
        if half:
            d = d.astype(dt)
        return mx.stop_gradient(x) + d

    return f


_SUM_GRADIENTS_CACHE = {}


def sum_gradients(group):
    """A function that returns its argument unchanged and whose derivative all-sums the
    cotangent over ``group`` (MLX's ``sum_gradients``; the identity for a group of one)."""
    if group.size() == 1:
        return lambda x: x
    key = id(group)
    hit = _SUM_GRADIENTS_CACHE.get(key)
    if hit is not None and hit[0] is group:
        return hit[1]
    custom_function = getattr(mx, "custom_function", None)
    f = _sum_gradients_custom(group, custom_function) if custom_function is not None else _sum_gradients_composed(group)
    _SUM_GRADIENTS_CACHE[key] = (group, f)
    return f


def _all_sum_partial(x, group):
    """The all-sum of partial products; half precision summed in float32, then cast back."""
    if group.size() == 1:
        return x
    if _dtype_name(x.dtype) in _HALF:
        return mx.distributed.all_sum(x.astype(mx.float32), group=group).astype(x.dtype)
    return mx.distributed.all_sum(x, group=group)


# ---------------------------------------------------------------- slicing parameters


def _segment_parts(a, segments, axis):
    """``a`` cut along ``axis`` into ``segments``: a count of equal parts, split indices (ints),
    or fractions of the axis (floats)."""
    if isinstance(segments, int):
        if segments == 1:
            return [a]
        return mx.split(a, segments, axis=axis)
    segments = list(segments)
    if not segments:
        return [a]
    if all(isinstance(s, int) for s in segments):
        return mx.split(a, segments, axis=axis)
    length = a.shape[axis]
    return mx.split(a, [int(s * length) for s in segments], axis=axis)


def _shard_array(a, axis, segments, group):
    n, r = group.size(), group.rank()
    pieces = []
    for part in _segment_parts(a, segments, axis):
        if part.shape[axis] % n != 0:
            raise ValueError(
                "[shard] an axis of size {} (of shape {}) cannot be split across {} processes".format(
                    part.shape[axis], tuple(a.shape), n))
        pieces.append(mx.split(part, n, axis=axis)[r] if n > 1 else part)
    out = pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=axis)
    # A copy, so the full array can be freed once every layer holds its slice.
    return mx.contiguous(out)


def _shard(parameters, predicate, group):
    group = _world(group)

    def one(path, w):
        if not isinstance(w, mx.array):
            return w
        s = predicate(path, w)
        if s is None:
            return w
        if isinstance(s, int):
            axis, segments = s, 1
        elif isinstance(s, tuple):
            axis, segments = s
        else:
            raise ValueError("The sharding function should return int or tuple[int, list]")
        return _shard_array(w, axis, segments, group)

    return tree_map_with_path(one, parameters)


def _all_to_sharded(segments):
    # Output features: the second-to-last axis of a weight (and of scales / quantization
    # biases), the last of the bias.
    def pick(path, w):
        if path.endswith("bias"):
            return -1, segments
        return max(w.ndim - 2, 0), segments

    return pick


def _sharded_to_all(segments):
    # Input features: the last axis; the bias stays whole (it is added after the sum).
    def pick(path, w):
        if path.endswith("bias"):
            return None
        return -1, segments

    return pick


def _check_sharding(sharding):
    if sharding not in ("all-to-sharded", "sharded-to-all"):
        raise ValueError(
            "Sharding type sharding={!r} not supported, choose one of 'all-to-sharded' or 'sharded-to-all'".format(
                sharding))


def _segment_sizes(length, segments):
    if isinstance(segments, int):
        return [length // max(segments, 1)] * max(segments, 1)
    segments = list(segments)
    if not segments:
        return [length]
    idx = segments if all(isinstance(s, int) for s in segments) else [int(s * length) for s in segments]
    bounds = [0] + list(idx) + [length]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def _check_quantized_inputs(input_dims, group_size, segments, n):
    for seg in _segment_sizes(input_dims, segments):
        if seg % n != 0 or (seg // n) % group_size != 0:
            raise ValueError(
                "[shard] a quantized layer's {} input features (per segment) do not split across {} processes "
                "into multiples of its group size {}".format(seg, n, group_size))


# ---------------------------------------------------------------- shard_inplace / shard_linear


def shard_inplace(module, sharding, *, segments=1, group=None):
    """Replaces ``module``'s parameters with this rank's slices. ``sharding`` is
    ``"all-to-sharded"``, ``"sharded-to-all"`` or a function ``(path, array) -> axis`` (or
    ``(axis, segments)``, or ``None`` to leave the array whole). The module's forward is
    unchanged: communication is up to the module."""
    if isinstance(sharding, str):
        _check_sharding(sharding)
        sharding = _all_to_sharded(segments) if sharding == "all-to-sharded" else _sharded_to_all(segments)
    module.update(_shard(module.parameters(), sharding, group))


def shard_linear(module, sharding, *, segments=1, group=None):
    """A new sharded layer made from ``module`` (a ``Linear`` or ``QuantizedLinear``, left
    unchanged) whose forward/backward communicate: ``AllToShardedLinear``,
    ``ShardedToAllLinear`` or their quantized forms."""
    _check_sharding(sharding)
    dense = isinstance(module, Linear)
    if sharding == "all-to-sharded":
        cls = AllToShardedLinear if dense else QuantizedAllToShardedLinear
    else:
        cls = ShardedToAllLinear if dense else QuantizedShardedToAllLinear
    make = cls.from_linear if dense else cls.from_quantized_linear
    return make(module, segments=segments, group=group)


# ---------------------------------------------------------------- dense layers


class AllToShardedLinear(Module):
    """This rank's block of a ``Linear``'s output features: replicated input, sharded output.
    The input's gradient is all-summed over the group."""

    def __init__(self, input_dims, output_dims, bias=True, group=None):
        super().__init__()
        self.group = _world(group)
        n = self.group.size()
        if output_dims % n != 0:
            raise ValueError("Cannot shard the output of size {} across {} devices.".format(output_dims, n))
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims // n, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims // n,))

    def _extra_repr(self):
        out, in_dims = self.weight.shape
        return "input_dims={}, output_dims={}, bias={}".format(in_dims, out * self.group.size(), "bias" in self)

    def __call__(self, x):
        x = sum_gradients(self.group)(x)
        if "bias" in self:
            return mx.addmm(self["bias"], x, self["weight"].T)
        return x @ self["weight"].T

    @classmethod
    def from_linear(cls, linear_layer, *, segments=1, group=None):
        group = _world(group)
        out, in_dims = linear_layer.weight.shape
        layer = cls(in_dims, out, "bias" in linear_layer, group)
        layer.update(_shard(linear_layer.parameters(), _all_to_sharded(segments), group))
        return layer


class ShardedToAllLinear(Module):
    """This rank's block of a ``Linear``'s input features: sharded input, replicated output
    (the partial products all-summed, then the bias added once)."""

    def __init__(self, input_dims, output_dims, bias=True, group=None):
        super().__init__()
        self.group = _world(group)
        n = self.group.size()
        if input_dims % n != 0:
            raise ValueError("The input of size {} cannot be sharded across {} devices.".format(input_dims, n))
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims // n))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self):
        out, in_dims = self.weight.shape
        return "input_dims={}, output_dims={}, bias={}".format(in_dims * self.group.size(), out, "bias" in self)

    def __call__(self, x):
        y = _all_sum_partial(x @ self["weight"].T, self.group)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_linear(cls, linear_layer, *, segments=1, group=None):
        group = _world(group)
        out, in_dims = linear_layer.weight.shape
        layer = cls(in_dims, out, "bias" in linear_layer, group)
        layer.update(_shard(linear_layer.parameters(), _sharded_to_all(segments), group))
        return layer


# ---------------------------------------------------------------- quantized layers


class _QuantizedSharded(Module):
    def _init_quantized(self, w_shape, input_dims, group_size, bits, mode):
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        scale = math.sqrt(1.0 / input_dims)
        w = mx.random.uniform(low=-scale, high=scale, shape=w_shape)
        q = mx.quantize(w, self.group_size, self.bits, mode=mode)
        self.weight, self.scales = q[0], q[1]
        self.biases = q[2] if len(q) > 2 else None

    def unfreeze(self, *args, **kwargs):
        """Unfreezes sub-modules (if any); this layer's own parameters stay frozen (as MLX)."""
        super().unfreeze(*args, **kwargs)
        self.freeze(recurse=False)
        return self

    def _qmm(self, x):
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _dims(self):
        out, packed = self.weight.shape
        return out, packed * 32 // self.bits

    def _repr(self, in_dims, out):
        return "input_dims={}, output_dims={}, bias={}, group_size={}, bits={}, mode={}".format(
            in_dims, out, "bias" in self, self.group_size, self.bits, self.mode)

    @classmethod
    def _from(cls, layer, predicate, group, check=None):
        group = _world(group)
        out, packed = layer.weight.shape
        in_dims = packed * 32 // layer.bits
        if check is not None:
            check(in_dims, layer.group_size, group.size())
        sl = cls(in_dims, out, "bias" in layer, group_size=layer.group_size, bits=layer.bits,
                 mode=getattr(layer, "mode", "affine"), group=group)
        sl.update(_shard(layer.parameters(), predicate, group))
        return sl


class QuantizedAllToShardedLinear(_QuantizedSharded):
    """The quantized ``AllToShardedLinear`` (frozen, like ``QuantizedLinear``)."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=None, bits=None, mode="affine", group=None):
        super().__init__()
        self.group = _world(group)
        n = self.group.size()
        if output_dims % n != 0:
            raise ValueError("Cannot shard the output of size {} across {} devices.".format(output_dims, n))
        self._init_quantized((output_dims // n, input_dims), input_dims, group_size, bits, mode)
        if bias:
            self.bias = mx.zeros((output_dims // n,))
        self.freeze()

    def _extra_repr(self):
        out, in_dims = self._dims()
        return self._repr(in_dims, out * self.group.size())

    def __call__(self, x):
        y = self._qmm(sum_gradients(self.group)(x))
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer, *, segments=1, group=None):
        return cls._from(quantized_linear_layer, _all_to_sharded(segments), group)


class QuantizedShardedToAllLinear(_QuantizedSharded):
    """The quantized ``ShardedToAllLinear`` (frozen, like ``QuantizedLinear``). Each rank's
    input features must be a multiple of the group size."""

    def __init__(self, input_dims, output_dims, bias=True, group_size=None, bits=None, mode="affine", group=None):
        super().__init__()
        self.group = _world(group)
        n = self.group.size()
        if input_dims % n != 0:
            raise ValueError("The input of size {} cannot be sharded across {} devices.".format(input_dims, n))
        self._init_quantized((output_dims, input_dims // n), input_dims, group_size, bits, mode)
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()

    def _extra_repr(self):
        out, in_dims = self._dims()
        return self._repr(in_dims * self.group.size(), out)

    def __call__(self, x):
        y = _all_sum_partial(self._qmm(x), self.group)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer, *, segments=1, group=None):
        def check(in_dims, group_size, n):
            _check_quantized_inputs(in_dims, group_size, segments, n)

        return cls._from(quantized_linear_layer, _sharded_to_all(segments), group, check)


def _shardable(module, key, value):
    """The parameters a FullyShardedModule shards: the usual parameters, not those of an inner
    FullyShardedModule (which shards its own)."""
    return not isinstance(value, FullyShardedModule) and Module.valid_parameter_filter(module, key, value)


def _gather_parameters(group, full_shapes, compute_dtype):
    """A function from this rank's shards (axis-0 blocks) to the full parameters: one all_gather
    of every shard flattened into one row. Its gradient is a reduce-scatter of the cotangents
    averaged over the ranks (each rank keeps the mean gradient of its own block), cast back to
    the shard's dtype."""
    n = group.size()
    sizes = [math.prod(s) // n for s in full_shapes]
    cuts = []
    for size in sizes[:-1]:
        cuts.append((cuts[-1] if cuts else 0) + size)

    def cast(x, dtype):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)

    @mx.custom_function
    def gather(shards):
        row = mx.concatenate([cast(s.reshape(1, -1), compute_dtype) for s in shards], axis=1)
        rows = mx.distributed.all_gather(row, group=group)  # [n, sum(sizes)]: rank r's blocks in row r
        parts = mx.split(rows, cuts, axis=1) if cuts else [rows]
        return [p.reshape(shape) for p, shape in zip(parts, full_shapes)]

    @gather.vjp
    def gather_vjp(shards, cotangents, _outputs):
        rows = mx.concatenate([c.reshape(n, -1) for c in cotangents], axis=1)
        mine = mx.distributed.sum_scatter(rows, group=group) / n
        parts = mx.split(mine, cuts, axis=1) if cuts else [mine]
        return [cast(p.reshape(s.shape), s.dtype) for p, s in zip(parts, shards)]

    return gather


class FullyShardedModule(Module):
    """``module`` with every parameter split along axis 0 across ``group`` (each rank stores and
    trains only its block, as MLX's FullyShardedModule). A call gathers the full parameters
    (cast to ``compute_dtype`` if given), runs the module, and puts the shards back; the
    gradient of each shard is the mean over the ranks of its block's gradient. Axis 0 of every
    parameter must divide by the group's size."""

    def __init__(self, module, group=None, compute_dtype=None):
        super().__init__()
        group = _world(group)
        n = group.size()
        flat = tree_flatten(module.filter_and_map(_shardable))
        for path, a in flat:
            if a.ndim == 0:
                raise ValueError("Cannot shard parameter '{}' because it is a scalar.".format(path))
            if a.shape[0] % n != 0:
                raise ValueError("Cannot shard parameter '{}' with shape {} across {} devices: axis 0 must be "
                                 "divisible by {}.".format(path, tuple(a.shape), n, n))
        object.__setattr__(self, "_paths", [path for path, _ in flat])
        object.__setattr__(self, "_gather", _gather_parameters(group, [tuple(a.shape) for _, a in flat], compute_dtype))
        module.update(tree_unflatten([(path, _shard_array(a, 0, 1, group)) for path, a in flat]))
        self.module = module

    def _extra_repr(self):
        return "num_sharded_params={}".format(len(self._paths))

    def _with_full_parameters(self, fn, *args, **kwargs):
        shards = self.module.filter_and_map(_shardable)
        fulls = self._gather([a for _, a in tree_flatten(shards)])
        self.module.update(tree_unflatten(list(zip(self._paths, fulls))))
        try:
            return fn(*args, **kwargs)
        finally:
            self.module.update(shards)

    def __call__(self, *args, **kwargs):
        return self._with_full_parameters(self.module, *args, **kwargs)

    def as_linear(self, *args, **kwargs):
        return self._with_full_parameters(self.module.as_linear, *args, **kwargs)


def fully_shard(module, *, group=None, compute_dtype=None):
    """``module`` wrapped in a FullyShardedModule over ``group``; returned unchanged in a group of
    one, when it is wrapped already, or when it has no parameters to shard."""
    group = _world(group)
    if group.size() == 1 or isinstance(module, FullyShardedModule):
        return module
    wrapped = FullyShardedModule(module, group=group, compute_dtype=compute_dtype)
    return wrapped if wrapped._paths else module
