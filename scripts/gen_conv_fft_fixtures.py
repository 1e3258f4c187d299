"""Expected values for oxmx's convolutions and FFTs, produced by MLX (CPU build); FFT results are
cross-checked against numpy before they are written.

Writes crates/oxmx-core/tests/fixtures/conv_fft.json. Inputs are small multiples of 1/4 so they
are exact in every float dtype; the test rebuilds them and compares with dtype-sized tolerances.
"""
import json
import os

import mlx.core as mx
import numpy as np

mx.set_default_device(mx.cpu)
rng = np.random.default_rng(1234)


def quarters(shape):
    return (rng.integers(-8, 9, size=shape) / 4.0).astype(np.float32)


def flat(a):
    return [float(f"{x:.6g}") for x in np.asarray(a, dtype=np.float64).ravel()]


def cflat(a):
    a = np.asarray(a).astype(np.complex128).ravel()
    return [float(f"{v:.6g}") for z in a for v in (z.real, z.imag)]


DT = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16, "float64": mx.float64}

# (function, x shape, w shape, params, dtype, transposed view): params use MLX's argument names
# with every per-axis value spelled out; "padding" of conv_general is [lo, hi].
conv_cases = [
    ("conv1d", [2, 9, 3], [4, 3, 3], dict(stride=1, padding=0, dilation=1, groups=1), "float32", False),
    ("conv1d", [1, 10, 4], [6, 3, 4], dict(stride=2, padding=1, dilation=1, groups=1), "float32", False),
    ("conv1d", [2, 11, 4], [4, 3, 2], dict(stride=1, padding=2, dilation=2, groups=2), "float32", False),
    ("conv1d", [3, 7, 4], [4, 5, 1], dict(stride=1, padding=2, dilation=1, groups=4), "float32", False),
    ("conv2d", [2, 7, 8, 4], [6, 3, 3, 4], dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1), "float32", False),
    ("conv2d", [2, 9, 7, 3], [5, 3, 2, 3], dict(stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=1), "float32", False),
    ("conv2d", [1, 8, 8, 6], [4, 3, 3, 3], dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=2), "float32", False),
    ("conv2d", [2, 6, 5, 4], [8, 3, 3, 1], dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=4), "float32", False),
    ("conv2d", [2, 5, 6, 4], [5, 1, 1, 4], dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1), "float32", False),
    ("conv2d", [1, 5, 6, 4], [6, 1, 1, 2], dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=2), "float32", False),
    ("conv2d", [2, 7, 7, 4], [3, 1, 1, 4], dict(stride=[2, 2], padding=[0, 0], dilation=[1, 1], groups=1), "float32", False),
    ("conv2d", [1, 11, 11, 3], [4, 7, 7, 3], dict(stride=[2, 2], padding=[3, 3], dilation=[1, 1], groups=1), "float32", False),
    ("conv2d", [2, 6, 7, 5], [3, 3, 3, 5], dict(stride=[1, 2], padding=[1, 1], dilation=[1, 1], groups=1), "float32", True),
    ("conv2d", [2, 5, 5, 3], [4, 1, 1, 3], dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1), "float32", True),
    ("conv2d", [2, 7, 8, 4], [6, 3, 3, 4], dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1), "float16", False),
    ("conv2d", [2, 7, 8, 4], [6, 3, 3, 4], dict(stride=[2, 1], padding=[1, 1], dilation=[1, 1], groups=1), "bfloat16", False),
    ("conv2d", [2, 7, 8, 4], [6, 3, 3, 4], dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1), "float64", False),
    ("conv3d", [1, 4, 5, 6, 2], [3, 2, 3, 2, 2], dict(stride=[1, 1, 1], padding=[0, 1, 1], dilation=[1, 1, 1], groups=1), "float32", False),
    ("conv3d", [2, 5, 5, 5, 4], [4, 3, 3, 3, 4], dict(stride=[2, 1, 2], padding=[1, 1, 0], dilation=[1, 1, 1], groups=1), "float32", False),
    ("conv_general", [2, 9, 3], [4, 3, 3],
     dict(stride=[1], padding=[[2], [0]], kernel_dilation=[1], input_dilation=[2], groups=1, flip=True), "float32", False),
    ("conv_general", [1, 6, 7, 4], [4, 3, 2, 2],
     dict(stride=[2, 1], padding=[[0, 2], [1, 0]], kernel_dilation=[1, 2], input_dilation=[1, 1], groups=2, flip=False), "float32", False),
    ("conv_general", [2, 5, 6, 3], [2, 3, 3, 3],
     dict(stride=[1, 2], padding=[[1, 2], [2, 1]], kernel_dilation=[2, 1], input_dilation=[2, 3], groups=1, flip=True), "float32", False),
    ("conv_general", [1, 8, 8, 2], [3, 3, 3, 2],
     dict(stride=[1, 1], padding=[[-1, 0], [0, -1]], kernel_dilation=[1, 1], input_dilation=[1, 1], groups=1, flip=False), "float32", False),
    ("conv_general", [1, 3, 4, 5, 2], [2, 2, 2, 2, 2],
     dict(stride=[1, 2, 1], padding=[[1, 0, 1], [0, 1, 1]], kernel_dilation=[1, 1, 2], input_dilation=[2, 1, 1], groups=1, flip=True),
     "float32", False),
    # Eight or more input channels, one group, no dilation: the direct (implicit GEMM) path on
    # AVX2 hosts (conv_direct.rs): padding on some axes only, strides, cropping, 1-d and 3-d,
    # output channels that are not whole 16-column panels, a non-contiguous input, bf16.
    ("conv1d", [2, 13, 8], [10, 3, 8], dict(stride=1, padding=1, dilation=1, groups=1), "float32", False),
    ("conv2d", [2, 9, 10, 12], [20, 3, 3, 12], dict(stride=[2, 1], padding=[1, 2], dilation=[1, 1], groups=1), "float32", True),
    ("conv2d", [1, 8, 8, 16], [17, 3, 3, 16], dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1), "bfloat16", False),
    ("conv2d", [3, 7, 6, 9], [7, 2, 3, 9], dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1), "float32", False),
    ("conv3d", [1, 4, 5, 6, 8], [5, 2, 3, 3, 8], dict(stride=[1, 2, 1], padding=[1, 0, 1], dilation=[1, 1, 1], groups=1), "float32", False),
    ("conv_general", [1, 8, 8, 8], [3, 3, 3, 8],
     dict(stride=[1, 1], padding=[[-1, 0], [0, -1]], kernel_dilation=[1, 1], input_dilation=[1, 1], groups=1, flip=True), "float32", False),
    ("conv_transpose1d", [2, 6, 3], [4, 3, 3], dict(stride=2, padding=1, dilation=1, output_padding=1, groups=1), "float32", False),
    ("conv_transpose1d", [1, 5, 4], [6, 4, 2], dict(stride=3, padding=0, dilation=2, output_padding=0, groups=2), "float32", False),
    ("conv_transpose2d", [2, 4, 5, 3], [4, 3, 3, 3],
     dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], output_padding=[1, 1], groups=1), "float32", False),
    ("conv_transpose2d", [1, 5, 4, 4], [6, 3, 2, 2],
     dict(stride=[1, 2], padding=[0, 1], dilation=[2, 1], output_padding=[0, 1], groups=2), "float32", False),
    ("conv_transpose2d", [2, 4, 5, 3], [4, 3, 3, 3],
     dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], output_padding=[0, 0], groups=1), "float16", True),
    ("conv_transpose3d", [1, 3, 4, 3, 2], [3, 2, 3, 2, 2],
     dict(stride=[2, 1, 2], padding=[0, 1, 1], dilation=[1, 1, 1], output_padding=[1, 0, 0], groups=1), "float32", False),
]


def tup(v):
    return tuple(v) if isinstance(v, list) else v


conv_out = []
for fn, xs, ws, params, dt, transposed in conv_cases:
    x, w = quarters(xs), quarters(ws)
    kw = {k: (tuple(tuple(p) for p in v) if k == "padding" and fn == "conv_general" else tup(v)) for k, v in params.items()}
    y = getattr(mx, fn)(mx.array(x).astype(DT[dt]), mx.array(w).astype(DT[dt]), **kw)
    case = {"fn": fn, "dtype": dt, "params": params, "x_shape": xs, "w_shape": ws, "w": flat(w),
            "out_shape": list(y.shape), "out": flat(np.array(y.astype(mx.float32)))}
    if transposed:
        # The test swaps axes 1 and 2 back, so the kernel reads a non-contiguous view.
        case["x_swapped"] = flat(np.swapaxes(x, 1, 2))
    else:
        case["x"] = flat(x)
    conv_out.append(case)


def rand_input(shape, cplx):
    a = rng.standard_normal(shape).astype(np.float32)
    if cplx:
        a = a + 1j * rng.standard_normal(shape).astype(np.float32)
    return np.round(a, 3)


# (function, input shape, complex input, kwargs)
fft_cases = [
    ("fft", [8], True, {}), ("fft", [7], True, {}), ("fft", [12], False, {}), ("fft", [3, 5], True, dict(axis=0)),
    ("fft", [4, 6], True, dict(n=9)), ("fft", [4, 6], True, dict(n=4, axis=-1)), ("fft", [2, 3, 10], True, dict(n=13, axis=1)),
    ("ifft", [9], True, {}), ("ifft", [5, 6], True, dict(n=8, axis=0)), ("ifft", [16], False, dict(n=11)),
    ("rfft", [8], False, {}), ("rfft", [11], False, {}), ("rfft", [3, 7], False, dict(n=10)), ("rfft", [6, 5], False, dict(axis=0)),
    ("rfft", [9], False, dict(n=6)),
    ("irfft", [5], True, {}), ("irfft", [5], True, dict(n=9)), ("irfft", [4, 6], True, dict(n=7, axis=-1)),
    ("irfft", [6, 3], True, dict(axis=0)), ("irfft", [7], True, dict(n=20)),
    ("fft2", [4, 6], True, {}), ("fft2", [3, 4, 5], True, dict(s=(6, 3))), ("ifft2", [5, 6], True, dict(axes=(0, 1))),
    ("rfft2", [6, 7], False, {}), ("rfft2", [2, 5, 6], False, dict(s=(4, 9), axes=(0, 2))),
    ("irfft2", [6, 4], True, {}), ("irfft2", [3, 5, 4], True, dict(s=(4, 7))),
    ("fftn", [3, 4, 5], True, {}), ("fftn", [3, 4, 5], True, dict(axes=(0, 2))), ("fftn", [3, 4, 5], False, dict(s=(5, 2), axes=(2, 0))),
    ("ifftn", [4, 3, 6], True, {}), ("ifftn", [4, 3, 6], True, dict(s=(5,), axes=(1,))),
    ("rfftn", [4, 5, 6], False, {}), ("rfftn", [4, 5, 6], False, dict(axes=(1, 0))), ("rfftn", [4, 5, 6], False, dict(s=(3, 8), axes=(0, 2))),
    ("irfftn", [4, 5, 6], True, {}), ("irfftn", [4, 5, 6], True, dict(s=(6, 9), axes=(0, 1))),
    ("fftshift", [5, 6], False, {}), ("fftshift", [5, 6, 3], False, dict(axes=(1,))), ("ifftshift", [5, 6], False, {}),
    ("ifftshift", [7, 4], True, dict(axes=(0,))),
]

fft_out = []
for fn, shape, cplx, kw in fft_cases:
    a = rand_input(shape, cplx)
    y = np.array(getattr(mx.fft, fn)(mx.array(a), **kw))
    ref = getattr(np.fft, fn)(a, **kw)
    assert np.allclose(y, ref, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(ref).max())), (fn, shape, kw)
    case = {"fn": fn, "shape": shape, "complex": cplx, "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
            "input": cflat(a) if cplx else flat(a), "out_shape": list(y.shape), "out_complex": bool(np.iscomplexobj(y)),
            "out": cflat(y) if np.iscomplexobj(y) else flat(y)}
    fft_out.append(case)

path = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "conv_fft.json")
with open(path, "w") as f:
    json.dump({"conv": conv_out, "fft": fft_out}, f, indent=None, separators=(",", ":"))
    f.write("\n")
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
