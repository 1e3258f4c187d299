"""``RoPE``, ``SinusoidalPositionalEncoding`` and ``ALiBi``."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["RoPE", "SinusoidalPositionalEncoding", "ALiBi"]


class RoPE(Module):
    """Rotary positional encoding of the first ``dims`` features (``mx.fast.rope``)."""

    def __init__(self, dims, traditional=False, base=10000, scale=1.0):
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.base = base
        self.scale = scale

    def _extra_repr(self):
        return "{}, traditional={}".format(self.dims, self.traditional)

    def __call__(self, x, offset=0):
        return mx.fast.rope(x, self.dims, traditional=self.traditional, base=self.base, scale=self.scale,
                            offset=offset)


class SinusoidalPositionalEncoding(Module):
    """``sin``/``cos`` features of positions at ``dims/2`` frequencies spaced geometrically from
    ``max_freq`` down to ``min_freq``, times ``scale`` (default ``sqrt(2/dims)``)."""

    def __init__(self, dims, min_freq=0.0001, max_freq=1, scale=None, cos_first=False, full_turns=False):
        super().__init__()
        half = dims // 2
        one_zero = 1 - mx.arange(0, half) / (half - 1)
        lo, hi = math.log(min_freq), math.log(max_freq)
        self._sigmas = mx.exp(one_zero * (hi - lo) + lo)
        if full_turns:
            self._sigmas = self._sigmas * (2 * math.pi)
        self.scale = scale or (2 / dims) ** 0.5
        self.cos_first = cos_first

    def __call__(self, x):
        y = x[..., None] * self._sigmas
        c, s = mx.cos(y), mx.sin(y)
        y = mx.concatenate([c, s] if self.cos_first else [s, c], axis=-1)
        if self.scale != 1:
            y = y * self.scale
        return y


class ALiBi(Module):
    """Attention with linear biases: adds ``-slope_h * |i - j|`` to head ``h``'s scores."""

    @staticmethod
    def create_alibi_matrix(q_sequence_length, k_sequence_length, num_heads, offset, dtype=mx.float32):
        q = mx.arange(offset, q_sequence_length)
        k = mx.arange(0, k_sequence_length)
        dist = -mx.abs(mx.expand_dims(q[:, None] - k[None, :], axis=(0, 1)))
        return (dist * ALiBi.create_alibi_slope(num_heads)).astype(dtype)

    @staticmethod
    def create_alibi_slope(num_heads):
        base = (2**8) ** (1 / num_heads)
        out = mx.power(base, -mx.arange(1, num_heads + 1))
        return mx.expand_dims(out, axis=(-1, -2))

    def __call__(self, attention_scores, offset=0, mask=None):
        bias = ALiBi.create_alibi_matrix(
            q_sequence_length=attention_scores.shape[-2] + offset,
            k_sequence_length=attention_scores.shape[-1],
            num_heads=attention_scores.shape[1],
            offset=offset,
            dtype=attention_scores.dtype,
        )
        if mask is not None:
            bias = bias + mask
        return attention_scores + bias
