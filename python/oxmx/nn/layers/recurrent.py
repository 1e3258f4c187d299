"""``RNN``, ``GRU`` and ``LSTM`` over ``NLD`` (or ``LD``) inputs."""

import math

import oxmx.core as mx

from .base import Module

__all__ = ["RNN", "GRU", "LSTM"]


def _uniform(scale, shape):
    return mx.random.uniform(low=-scale, high=scale, shape=shape)


class RNN(Module):
    """Elman RNN: ``h_t = nonlinearity(W_xh x_t + W_hh h_{t-1} + b)`` (``tanh`` by default).
    Returns every step's hidden state."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity=None):
        super().__init__()
        self.nonlinearity = nonlinearity or mx.tanh
        if not callable(self.nonlinearity):
            raise ValueError("Nonlinearity must be callable. Current value: {}.".format(nonlinearity))
        scale = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.Wxh = _uniform(scale, (hidden_size, input_size))
        self.Whh = _uniform(scale, (hidden_size, hidden_size))
        self.bias = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return "input_dims={}, hidden_size={}, nonlinearity={}, bias={}".format(
            self.Wxh.shape[1], self.hidden_size, self.nonlinearity, self.bias is not None)

    def __call__(self, x, hidden=None):
        x = mx.addmm(self.bias, x, self.Wxh.T) if self.bias is not None else x @ self.Wxh.T
        out = []
        for t in range(x.shape[-2]):
            xt = x[..., t, :]
            hidden = mx.addmm(xt, hidden, self.Whh.T) if hidden is not None else xt
            hidden = self.nonlinearity(hidden)
            out.append(hidden)
        return mx.stack(out, axis=-2)


class GRU(Module):
    """Gated recurrent unit (reset, update and new gates as in PyTorch, with ``bhn`` the hidden
    bias of the new gate). Returns every step's hidden state."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (3 * hidden_size, input_size))
        self.Wh = _uniform(scale, (3 * hidden_size, hidden_size))
        self.b = _uniform(scale, (3 * hidden_size,)) if bias else None
        self.bhn = _uniform(scale, (hidden_size,)) if bias else None

    def _extra_repr(self):
        return "input_dims={}, hidden_size={}, bias={}".format(self.Wx.shape[1], self.hidden_size, self.b is not None)

    def __call__(self, x, hidden=None):
        hs = self.hidden_size
        x = mx.addmm(self.b, x, self.Wx.T) if self.b is not None else x @ self.Wx.T
        x_rz, x_n = x[..., :-hs], x[..., -hs:]
        out = []
        for t in range(x.shape[-2]):
            rz = x_rz[..., t, :]
            if hidden is not None:
                hp = hidden @ self.Wh.T
                hp_rz, hp_n = hp[..., :-hs], hp[..., -hs:]
                if self.bhn is not None:
                    hp_n = hp_n + self.bhn
                rz = rz + hp_rz
            else:
                hp_n = self.bhn  # no hidden state is a zero one: only the bias is left
            rz = mx.sigmoid(rz)
            r, z = mx.split(rz, 2, axis=-1)
            n = x_n[..., t, :]
            if hp_n is not None:
                n = n + r * hp_n
            n = mx.tanh(n)
            hidden = (1 - z) * n + z * hidden if hidden is not None else (1 - z) * n
            out.append(hidden)
        return mx.stack(out, axis=-2)


class LSTM(Module):
    """Long short-term memory (input, forget, cell and output gates in that order). Returns every
    step's hidden and cell states."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (4 * hidden_size, input_size))
        self.Wh = _uniform(scale, (4 * hidden_size, hidden_size))
        self.bias = _uniform(scale, (4 * hidden_size,)) if bias else None

    def _extra_repr(self):
        return "input_dims={}, hidden_size={}, bias={}".format(self.Wx.shape[1], self.hidden_size,
                                                               self.bias is not None)

    def __call__(self, x, hidden=None, cell=None):
        x = mx.addmm(self.bias, x, self.Wx.T) if self.bias is not None else x @ self.Wx.T
        hs, cs = [], []
        for t in range(x.shape[-2]):
            g = x[..., t, :]
            if hidden is not None:
                g = mx.addmm(g, hidden, self.Wh.T)
            i, f, c, o = mx.split(g, 4, axis=-1)
            i, f, c, o = mx.sigmoid(i), mx.sigmoid(f), mx.tanh(c), mx.sigmoid(o)
            cell = f * cell + i * c if cell is not None else i * c
            hidden = o * mx.tanh(cell)
            hs.append(hidden)
            cs.append(cell)
        return mx.stack(hs, axis=-2), mx.stack(cs, axis=-2)
