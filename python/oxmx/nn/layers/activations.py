"""Activation functions and their module forms, as in ``mlx.nn``."""

import math

import oxmx.core as mx

from .base import Module

__all__ = [
    "sigmoid", "relu", "relu2", "relu6", "leaky_relu", "log_softmax", "elu", "celu", "selu", "softmax",
    "softmin", "softplus", "softsign", "softshrink", "silu", "log_sigmoid", "gelu", "gelu_approx",
    "gelu_fast_approx", "glu", "step", "prelu", "mish", "hardswish", "hard_tanh", "hard_shrink", "tanh",
    "Sigmoid", "ReLU", "ReLU2", "ReLU6", "LeakyReLU", "LogSoftmax", "ELU", "CELU", "SELU", "Softmax",
    "Softmin", "Softplus", "Softsign", "Softshrink", "SiLU", "LogSigmoid", "GELU", "GLU", "Step", "PReLU",
    "Mish", "Hardswish", "HardTanh", "HardShrink", "Tanh",
]


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return mx.sigmoid(x)


def relu(x):
    """``max(x, 0)``."""
    return mx.maximum(x, 0)


def relu2(x):
    """``max(x, 0) ** 2``."""
    return mx.square(mx.maximum(x, 0))


def relu6(x):
    """``min(max(x, 0), 6)``."""
    return mx.minimum(mx.maximum(x, 0), 6.0)


def leaky_relu(x, negative_slope=0.01):
    """``max(negative_slope * x, x)``."""
    return mx.maximum(negative_slope * x, x)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``."""
    return x - mx.logsumexp(x, axis=axis, keepdims=True)


def elu(x, alpha=1.0):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""
    return mx.where(x > 0, x, alpha * (mx.exp(x) - 1))


def celu(x, alpha=1.0):
    """``max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1)``."""
    return mx.maximum(x, 0.0) + alpha * (mx.exp(mx.minimum(x, 0.0) / alpha) - 1)


def selu(x):
    """Scaled ELU (``1.0507 * elu(x, 1.67326)``)."""
    return elu(x, 1.67326) * 1.0507


def softmax(x, axis=-1):
    """Softmax along ``axis``."""
    return mx.softmax(x, axis=axis)


def softmin(x, axis=-1):
    """``softmax(-x)``."""
    return mx.softmax(-x, axis=axis)


def softplus(x):
    """``log(1 + exp(x))``."""
    return mx.logaddexp(x, 0)


def softsign(x):
    """``x / (1 + |x|)``."""
    return mx.divide(x, 1 + mx.abs(x))


def softshrink(x, lambd=0.5):
    """``x - sign(x) * lambd`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x - mx.sign(x) * lambd, 0)


def silu(x):
    """``x * sigmoid(x)``."""
    return x * mx.sigmoid(x)


def log_sigmoid(x):
    """``log(sigmoid(x))`` (as ``-softplus(-x)``)."""
    return -softplus(-x)


def gelu(x):
    """``x * Phi(x)`` with the exact normal CDF."""
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def gelu_approx(x):
    """GELU through ``tanh``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    return 0.5 * x * (1 + mx.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_fast_approx(x):
    """GELU through a sigmoid: ``x * sigmoid(1.702 x)``."""
    return x * mx.sigmoid(1.702 * x)


def glu(x, axis=-1):
    """Gated linear unit: the first half of ``axis`` times the sigmoid of the second half."""
    a, b = mx.split(x, 2, axis=axis)
    return a * mx.sigmoid(b)


def step(x, threshold=0.0):
    """1 where ``x > threshold``, else 0."""
    return mx.where(x > threshold, 1, 0)


def prelu(x, alpha):
    """``max(0, x) + alpha * min(0, x)``."""
    return mx.maximum(0, x) + alpha * mx.minimum(0, x)


def mish(x):
    """``x * tanh(softplus(x))``."""
    return x * mx.tanh(softplus(x))


def hardswish(x):
    """``x * min(max(x + 3, 0), 6) / 6``."""
    return x * mx.minimum(mx.maximum(x + 3, 0), 6) / 6


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """``x`` clamped to ``[min_val, max_val]``."""
    return mx.minimum(mx.maximum(x, min_val), max_val)


def hard_shrink(x, lambd=0.5):
    """``x`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x, 0)


def tanh(x):
    """Hyperbolic tangent."""
    return mx.tanh(x)


def _module_of(fn, name, doc=None):
    """A parameterless module class whose call is ``fn``."""

    def __call__(self, x):
        return fn(x)

    return type(name, (Module,), {"__call__": __call__, "__doc__": doc or "Module form of ``{}``.".format(fn.__name__)})


Sigmoid = _module_of(sigmoid, "Sigmoid")
ReLU = _module_of(relu, "ReLU")
ReLU2 = _module_of(relu2, "ReLU2")
ReLU6 = _module_of(relu6, "ReLU6")
LogSoftmax = _module_of(log_softmax, "LogSoftmax")
SELU = _module_of(selu, "SELU")
Softmax = _module_of(softmax, "Softmax")
Softmin = _module_of(softmin, "Softmin")
Softplus = _module_of(softplus, "Softplus")
Softsign = _module_of(softsign, "Softsign")
SiLU = _module_of(silu, "SiLU")
LogSigmoid = _module_of(log_sigmoid, "LogSigmoid")
Mish = _module_of(mish, "Mish")
Hardswish = _module_of(hardswish, "Hardswish")
HardTanh = _module_of(hard_tanh, "HardTanh")
Tanh = _module_of(tanh, "Tanh")


class LeakyReLU(Module):
    """Module form of ``leaky_relu``."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self._negative_slope = negative_slope

    def __call__(self, x):
        return leaky_relu(x, self._negative_slope)


class ELU(Module):
    """Module form of ``elu``."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return elu(x, self._alpha)


class CELU(Module):
    """Module form of ``celu``."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return celu(x, self._alpha)


class Softshrink(Module):
    """Module form of ``softshrink``."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return softshrink(x, self.lambd)


class HardShrink(Module):
    """Module form of ``hard_shrink``."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return hard_shrink(x, self.lambd)


class GLU(Module):
    """Module form of ``glu``."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def __call__(self, x):
        return glu(x, self.axis)


class Step(Module):
    """Module form of ``step``."""

    def __init__(self, threshold=0.0):
        super().__init__()
        self.threshold = threshold

    def __call__(self, x):
        return step(x, self.threshold)


class PReLU(Module):
    """``prelu`` with a learned slope per channel (``num_parameters`` of them, starting at ``init``)."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.weight = mx.full([num_parameters], init)

    def __call__(self, x):
        return prelu(x, self.weight)


class GELU(Module):
    """Module form of GELU: ``approx`` is ``"none"`` (exact), ``"precise"``/``"tanh"`` (``gelu_approx``)
    or ``"fast"`` (``gelu_fast_approx``)."""

    def __init__(self, approx="none"):
        super().__init__()
        if approx == "none":
            self._act = gelu
        elif approx in ("precise", "tanh"):
            self._act = gelu_approx
        elif approx == "fast":
            self._act = gelu_fast_approx
        else:
            raise ValueError(
                "The approximation should be in ['none', 'precise', 'tanh', 'fast'] but '{}' was given".format(approx))

    def __call__(self, x):
        return self._act(x)
