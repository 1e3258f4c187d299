"""Helpers for the oxmx.nn / oxmx.optimizers tests: build the same module in oxmx and in the
`mlx` oracle, give both the same weights, compare results."""

import numpy as np
import pytest

import oxmx.core as ox
from oxmx.utils import tree_flatten as ox_tree_flatten

from conftest import assert_same, dtype_name, to_np  # noqa: F401

try:
    import mlx.core as mlx_core
    import mlx.nn as mlx_nn
    import mlx.optimizers as mlx_optim
    from mlx.utils import tree_flatten as mlx_tree_flatten
except Exception:  # pragma: no cover - the oracle is optional
    mlx_core = mlx_nn = mlx_optim = mlx_tree_flatten = None

import oxmx.nn as ox_nn  # noqa: E402
import oxmx.optimizers as ox_optim  # noqa: E402

FLOATS = ["float32", "float16", "bfloat16"]

# tolerances for whole layers (several ops, reductions: looser than one op's)
LAYER_TOL = {
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}


def rand(shape, seed=0, scale=1.0, dtype="float32"):
    """A NumPy float32 array of normal values that bfloat16 holds exactly."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    if dtype == "bfloat16":
        x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    elif dtype == "float16":
        x = x.astype(np.float16).astype(np.float32)
    return x


def both(np_array, dtype="float32"):
    """The same values as an oxmx array and an MLX array of dtype ``dtype``."""
    a = np.asarray(np_array)
    o, m = ox.array(a), mlx_core.array(a)
    if a.dtype.kind == "f":
        o, m = o.astype(getattr(ox, dtype)), m.astype(getattr(mlx_core, dtype))
    return o, m


def np_of(a):
    return to_np(a)


def copy_weights(ox_module, mlx_module, strict=True):
    """Gives ``ox_module`` the parameters of ``mlx_module`` (same names, dtypes and values)."""
    weights = []
    for k, v in mlx_tree_flatten(mlx_module.parameters()):
        name = dtype_name(v.dtype)
        a = ox.array(to_np(v))
        if name != dtype_name(a.dtype):
            a = a.astype(getattr(ox, name))
        weights.append((k, a))
    ox_module.load_weights(weights, strict=strict)
    ox.eval(ox_module.parameters())
    return ox_module


def assert_close(ours, theirs, dtype="float32", rtol=None, atol=None):
    r, a = LAYER_TOL.get(dtype, (1e-4, 1e-5))
    assert_same(ours, theirs, rtol=rtol or r, atol=atol or a)


def assert_trees_close(ours, theirs, rtol=1e-4, atol=1e-5):
    o = dict(ox_tree_flatten(ours))
    t = dict(mlx_tree_flatten(theirs))
    assert sorted(o) == sorted(t), (sorted(o), sorted(t))
    for k in t:
        if isinstance(t[k], mlx_core.array):
            assert_same(o[k], t[k], rtol=rtol, atol=atol)
        else:
            assert o[k] == t[k], k


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts both random generators from a fixed seed (reproducible layer weights)."""
    ox.random.seed(0)
    if mlx_core is not None:
        mlx_core.random.seed(0)
    yield
