"""``oxmx.core``: arrays, dtypes and ops with ``mlx.core``'s names, arguments and behaviour.

Everything here is bound from Rust (``oxmx._core``); this file only adds what Python must: the
dtype categories, aliases and constants, and the array methods that forward to the functions.
"""

import enum as _enum
import math as _math
import sys as _sys

from oxmx import _core
from oxmx._core import *  # noqa: F401,F403
from oxmx._core import (  # noqa: F401
    ArrayAt,
    Dtype,
    _array_from_numpy,
    _dtype_from_name,
    array,
    distributed,
    fast,
    fft,
    linalg,
    random,
)

from oxmx.core._compile import compile  # noqa: E402,F811  (adds inputs=/outputs= state capture)

for _name in ("random", "fast", "linalg", "fft", "distributed"):
    _sys.modules[__name__ + "." + _name] = getattr(_core, _name)

# ---- constants
pi = _math.pi
e = _math.e
euler_gamma = 0.5772156649015329
inf = float("inf")
nan = float("nan")
newaxis = None


# ---- dtype categories (``mx.floating``, ``mx.issubdtype``)
class DtypeCategory(_enum.Enum):
    complexfloating = 0
    floating = 1
    inexact = 2
    signedinteger = 3
    unsignedinteger = 4
    integer = 5
    number = 6
    generic = 7


complexfloating = DtypeCategory.complexfloating
floating = DtypeCategory.floating
inexact = DtypeCategory.inexact
signedinteger = DtypeCategory.signedinteger
unsignedinteger = DtypeCategory.unsignedinteger
integer = DtypeCategory.integer
number = DtypeCategory.number
generic = DtypeCategory.generic

_CATEGORY_MEMBERS = {
    complexfloating: {"complex64"},
    floating: {"float16", "bfloat16", "float32", "float64"},
    signedinteger: {"int8", "int16", "int32", "int64"},
    unsignedinteger: {"uint8", "uint16", "uint32", "uint64"},
}
_CATEGORY_MEMBERS[inexact] = _CATEGORY_MEMBERS[floating] | _CATEGORY_MEMBERS[complexfloating]
_CATEGORY_MEMBERS[integer] = _CATEGORY_MEMBERS[signedinteger] | _CATEGORY_MEMBERS[unsignedinteger]
_CATEGORY_MEMBERS[number] = _CATEGORY_MEMBERS[inexact] | _CATEGORY_MEMBERS[integer]
_CATEGORY_MEMBERS[generic] = _CATEGORY_MEMBERS[number] | {"bool"}
_CATEGORY_PARENT = {
    complexfloating: {inexact, number, generic},
    floating: {inexact, number, generic},
    inexact: {number, generic},
    signedinteger: {integer, number, generic},
    unsignedinteger: {integer, number, generic},
    integer: {number, generic},
    number: {generic},
    generic: set(),
}


def _dtype_name(d):
    return repr(d).rsplit(".", 1)[-1]


def issubdtype(arg1, arg2):
    """Whether ``arg1`` (a Dtype or category) is ``arg2`` or inside category ``arg2``."""
    if isinstance(arg1, Dtype):
        if isinstance(arg2, Dtype):
            return arg1 == arg2
        return _dtype_name(arg1) in _CATEGORY_MEMBERS[arg2]
    if isinstance(arg2, Dtype):
        return False
    return arg1 == arg2 or arg2 in _CATEGORY_PARENT[arg1]


# ---- aliases with MLX's alternative names
acos, acosh, asin, asinh, atan, atanh, atan2 = arccos, arccosh, arcsin, arcsinh, arctan, arctanh, arctan2  # noqa: F405
concat = concatenate  # noqa: F405
pow = power  # noqa: F405,A001
bitwise_left_shift, bitwise_right_shift = left_shift, right_shift  # noqa: F405
permute_dims = transpose  # noqa: F405
asarray = array


def degrees(a, /, *, stream=None):
    return multiply(a, 180.0 / pi)  # noqa: F405


def radians(a, /, *, stream=None):
    return multiply(a, pi / 180.0)  # noqa: F405


def atleast_1d(*arys, stream=None):
    out = [_core.atleast_1d_one(a) for a in arys]
    return out[0] if len(out) == 1 else out


def atleast_2d(*arys, stream=None):
    out = [_core.atleast_2d_one(a) for a in arys]
    return out[0] if len(out) == 1 else out


def atleast_3d(*arys, stream=None):
    out = [_core.atleast_3d_one(a) for a in arys]
    return out[0] if len(out) == 1 else out


del atleast_1d_one, atleast_2d_one, atleast_3d_one  # noqa: F821


def qqmm(x, w, scales=None, group_size=None, bits=None, mode="nvfp4", global_scale_x=None, global_scale_w=None, *, stream=None):
    """``x @ w.T`` with ``x`` quantized on the fly and ``w`` quantized (if it is not already), as
    MLX's ``qqmm``: both operands are rounded through ``mode``'s format, the product is taken in
    ``x``'s dtype. (MLX's CPU build has no kernel for it; this composes quantize/dequantize.)"""
    if global_scale_x is not None or global_scale_w is not None:
        raise ValueError("[qqmm] global scales (nvfp4 with a global scale) are not supported")
    x = array(x)
    q = dict(group_size=group_size, bits=bits, mode=mode, dtype=x.dtype)
    if scales is None:
        wd = dequantize(*quantize(w, group_size, bits, mode=mode), **q)  # noqa: F405
    else:
        wd = dequantize(w, scales, **q)  # noqa: F405
    xd = dequantize(*quantize(x, group_size, bits, mode=mode), **q)  # noqa: F405
    return matmul(xd, swapaxes(wd, -1, -2))  # noqa: F405


def astype(a, /, dtype, *, stream=None):
    return array(a).astype(dtype)


# ---- array methods that forward to the functions (one binding per op)
def _forward(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)

    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


for _name in (
    "abs all any argmax argmin conj cos cummax cummin cumprod cumsum diag diagonal exp flatten log "
    "log10 log1p log2 logcumsumexp logsumexp max mean min moveaxis prod reciprocal round rsqrt sin "
    "split sqrt square std sum swapaxes var view"
).split():
    setattr(array, _name, _forward(globals()[_name]))


def _shape_args(args, kwargs, key):
    if key in kwargs:
        return kwargs.pop(key)
    if len(args) == 1 and not isinstance(args[0], int):
        return args[0]
    return args


def _reshape(self, *shape, stream=None):
    return reshape(self, _shape_args(shape, {}, "shape"))  # noqa: F405


def _transpose(self, *axes, stream=None):
    if len(axes) == 0:
        return transpose(self)  # noqa: F405
    return transpose(self, _shape_args(axes, {}, "axes"))  # noqa: F405


def _squeeze(self, axis=None, *, stream=None):
    return squeeze(self, axis)  # noqa: F405


array.reshape = _reshape
array.transpose = _transpose
array.squeeze = _squeeze
del _name


# ---- devices. Ops accept ``stream=`` (a Device, DeviceType or Stream) for MLX compatibility; for
# now they run on the default device whatever it says.
class DeviceType(_enum.Enum):
    cpu = 0
    gpu = 1

    def __repr__(self):
        return "DeviceType." + self.name


cpu = DeviceType.cpu
gpu = DeviceType.gpu


class Device:
    def __init__(self, type, index=0):  # noqa: A002 - MLX's argument name
        self.type = type
        self.index = index

    def __repr__(self):
        return "Device({}, {})".format(self.type.name, self.index)

    def __eq__(self, other):
        if isinstance(other, DeviceType):
            other = Device(other)
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


def default_device():
    kind, index = _core._default_device()
    return Device(DeviceType[kind], index)


def set_default_device(device):
    if isinstance(device, DeviceType):
        device = Device(device)
    _core._set_default_device(device.type.name, device.index)


def is_available(device):
    if isinstance(device, Device):
        device = device.type
    return device == cpu or _core._gpu_available()


class Stream:
    """A stream of a device. Ops given ``stream=`` run on that stream's device."""

    def __init__(self, device, index=0):
        self.device = device if isinstance(device, Device) else Device(device)
        self.index = index

    def __repr__(self):
        return "Stream({}, {})".format(self.device, self.index)

    def __eq__(self, other):
        return isinstance(other, Stream) and (self.device, self.index) == (other.device, other.index)

    def __hash__(self):
        return hash((self.device, self.index))


def default_stream(device):
    return Stream(device if isinstance(device, Device) else Device(device), 0)


def new_stream(device):
    """A stream on ``device`` (for now, ops given it run on the device's default stream)."""
    global _stream_count
    _stream_count += 1
    return Stream(device if isinstance(device, Device) else Device(device), _stream_count)


_stream_count = 0


class stream:  # noqa: N801 - MLX's name
    """``with mx.stream(s):`` makes ``s``'s device the default for the ops inside."""

    def __init__(self, s):
        self._target = s.device if isinstance(s, Stream) else (s if isinstance(s, Device) else Device(s))

    def __enter__(self):
        self._old = default_device()
        set_default_device(self._target)
        return self

    def __exit__(self, *exc):
        set_default_device(self._old)
        return False
