"""Shared helpers: run the same code on oxmx and on the `mlx` oracle, compare results."""

import numpy as np
import pytest

import oxmx.core as ox

try:
    import mlx.core as mlx_core
except Exception:  # pragma: no cover - the oracle is optional
    mlx_core = None

needs_mlx = pytest.mark.skipif(mlx_core is None, reason="mlx is not importable")


@pytest.fixture
def mlx():
    if mlx_core is None:
        pytest.skip("mlx is not importable")
    return mlx_core


def dtype_name(d):
    return repr(d).rsplit(".", 1)[-1]


def to_np(a):
    """A NumPy copy of an oxmx or MLX array (bfloat16 through float32)."""
    if dtype_name(a.dtype) == "bfloat16":
        mod = ox if isinstance(a, ox.array) else mlx_core
        a = a.astype(mod.float32)
    return np.array(a)


TOL = {
    "float32": (2e-5, 2e-6),
    "float16": (2e-3, 2e-3),
    "bfloat16": (1.6e-2, 1e-2),
    "float64": (1e-12, 1e-12),
    "complex64": (2e-5, 2e-6),
}


def assert_same(ours, theirs, rtol=None, atol=None):
    """Same dtype name, shape and values (within the dtype's tolerance) as the oracle's."""
    if isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            assert_same(o, t, rtol, atol)
        return
    assert dtype_name(ours.dtype) == dtype_name(theirs.dtype), (ours.dtype, theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    o, t = to_np(ours), to_np(theirs)
    name = dtype_name(ours.dtype)
    if name in TOL:
        r, a = TOL[name]
        np.testing.assert_allclose(o, t, rtol=rtol or r, atol=atol or a, equal_nan=True)
    else:
        np.testing.assert_array_equal(o, t)


def run_both(f, mlx):
    """f(module) on oxmx and on mlx: (ours, theirs)."""
    return f(ox), f(mlx)


def same_exception(f, mlx):
    """f raises on mlx; it must raise the same exception type on oxmx."""
    with pytest.raises(Exception) as theirs:
        r = f(mlx)
        mlx.eval(r)
    with pytest.raises(theirs.type):
        r = f(ox)
        ox.eval(r)
    return theirs.type
