"""``Dropout``, ``Dropout2d`` and ``Dropout3d`` (active only in training mode)."""

import oxmx.core as mx

from .base import Module

__all__ = ["Dropout", "Dropout2d", "Dropout3d"]


class _DropoutBase(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if p < 0 or p >= 1:
            raise ValueError("The dropout probability {} is not in [0, 1)".format(p))
        self._p_1 = 1 - p

    def _extra_repr(self):
        return "p={}".format(1 - self._p_1)

    def _drop(self, x, mask_shape):
        if self._p_1 == 1 or not self.training:
            return x
        mask = mx.random.bernoulli(self._p_1, mask_shape)
        return (mask * x) * (1 / self._p_1)


class Dropout(_DropoutBase):
    """Zeroes each element with probability ``p`` and scales the rest by ``1/(1-p)``."""

    def __call__(self, x):
        return self._drop(x, x.shape)


class Dropout2d(_DropoutBase):
    """Zeroes whole channels of ``NWHC``/``WHC`` inputs with probability ``p``."""

    def __call__(self, x):
        if x.ndim not in (3, 4):
            raise ValueError("Received input with {} dimensions. Expected 3 or 4 dimensions.".format(x.ndim))
        shape = list(x.shape)
        shape[-2] = shape[-3] = 1
        return self._drop(x, shape)


class Dropout3d(_DropoutBase):
    """Zeroes whole channels of ``NDHWC``/``DHWC`` inputs with probability ``p``."""

    def __call__(self, x):
        if x.ndim not in (4, 5):
            raise ValueError("Received input with {} dimensions. Expected 4 or 5 dimensions.".format(x.ndim))
        shape = list(x.shape)
        shape[-2] = shape[-3] = shape[-4] = 1
        return self._drop(x, shape)
