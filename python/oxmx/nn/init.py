"""Initializers of ``mlx.nn.init``: each function returns an initializer, a function from an
array to a new array of its shape."""

import math

import oxmx.core as mx

__all__ = ["constant", "normal", "uniform", "identity", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
           "orthogonal", "sparse"]


def constant(value, dtype=mx.float32):
    """Fills with ``value``."""

    def initializer(a):
        return mx.full(a.shape, value, dtype=dtype)

    return initializer


def normal(mean=0.0, std=1.0, dtype=mx.float32):
    """Samples a normal of mean ``mean`` and standard deviation ``std``."""

    def initializer(a):
        return mx.random.normal(shape=a.shape, scale=std, loc=mean, dtype=dtype)

    return initializer


def uniform(low=0.0, high=1.0, dtype=mx.float32):
    """Samples uniformly in ``[low, high)``."""

    def initializer(a):
        return mx.random.uniform(low, high, a.shape, dtype=dtype)

    return initializer


def identity(dtype=mx.float32):
    """The identity matrix (square 2-D arrays only)."""

    def initializer(arr):
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise ValueError("The input array must be a square matrix but got shape {}.".format(tuple(arr.shape)))
        return mx.eye(n=arr.shape[0], dtype=dtype)

    return initializer


def _fans(x):
    if x.ndim < 2:
        raise ValueError(
            "Glorot / He initialization requires at least 2 dimensional input but input with {} dimensions.".format(
                x.ndim))
    fan_in, fan_out = x.shape[-1], x.shape[0]
    field = math.prod(x.shape[1:-1]) if x.ndim > 2 else 1
    return fan_in * field, fan_out * field


def _fan(a, mode):
    fan_in, fan_out = _fans(a)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError("Invalid mode: {}. Valid modes are: fan_in, fan_out".format(mode))


def glorot_normal(dtype=mx.float32):
    """Normal with standard deviation ``gain * sqrt(2 / (fan_in + fan_out))``."""

    def initializer(a, gain=1.0):
        fan_in, fan_out = _fans(a)
        return mx.random.normal(shape=a.shape, dtype=dtype) * (gain * math.sqrt(2.0 / (fan_in + fan_out)))

    return initializer


def glorot_uniform(dtype=mx.float32):
    """Uniform in ``+-gain * sqrt(6 / (fan_in + fan_out))``."""

    def initializer(a, gain=1.0):
        fan_in, fan_out = _fans(a)
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def he_normal(dtype=mx.float32):
    """Normal with standard deviation ``gain / sqrt(fan)`` (``mode`` picks fan_in or fan_out)."""

    def initializer(a, mode="fan_in", gain=1.0):
        return mx.random.normal(shape=a.shape, dtype=dtype) * (gain / math.sqrt(_fan(a, mode)))

    return initializer


def he_uniform(dtype=mx.float32):
    """Uniform in ``+-gain * sqrt(3 / fan)``."""

    def initializer(a, mode="fan_in", gain=1.0):
        limit = gain * math.sqrt(3.0 / _fan(a, mode))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def orthogonal(gain=1.0, dtype=mx.float32):
    """A (semi-)orthogonal matrix from the QR decomposition of a normal sample, times ``gain``."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError("Orthogonal initialization requires a 2D array but got a {}D array.".format(a.ndim))
        rows, cols = a.shape
        n = max(rows, cols)
        q, r = mx.linalg.qr(mx.random.normal(shape=(n, n)), stream=mx.cpu)
        q = q * mx.sign(mx.diag(r))
        if rows < cols:
            q = q.T
        return (gain * q[:rows, :cols]).astype(dtype)

    return initializer


def sparse(sparsity, mean=0.0, std=1.0, dtype=mx.float32):
    """Normal values with a ``sparsity`` fraction of each row set to zero."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError("Only tensors with 2 dimensions are supported")
        rows, cols = a.shape
        zeros = int(math.ceil(sparsity * cols))
        order = mx.argsort(mx.random.uniform(shape=a.shape), axis=1)
        out = mx.random.normal(shape=a.shape, scale=std, loc=mean)
        drop = mx.zeros((rows, cols))
        if zeros > 0:
            drop = mx.put_along_axis(drop, order[:, :zeros], mx.array(1.0), axis=1)
        return mx.where(drop > 0, 0.0, out).astype(dtype)

    return initializer
