"""oxmx.nn.init: MLX's initializer factories (signatures, shapes, dtypes, statistics, errors)."""

import math

import numpy as np
import pytest

import oxmx.core as ox
import oxmx.nn as nn
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import mlx_core, mlx_nn


def test_constant_identity():
    a = ox.zeros((3, 4))
    out = nn.init.constant(0.5)(a)
    assert out.shape == (3, 4) and out.dtype == ox.float32
    assert np.all(np.array(out) == 0.5)
    out = nn.init.constant(2, dtype=ox.float16)(a)
    assert out.dtype == ox.float16
    np.testing.assert_array_equal(np.array(nn.init.identity()(ox.zeros((3, 3)))), np.eye(3))
    with pytest.raises(ValueError):
        nn.init.identity()(ox.zeros((2, 3)))


def stats(x):
    x = np.array(x.astype(ox.float32))
    return x.mean(), x.std(), x.min(), x.max()


def test_random_initializers_statistics():
    ox.random.seed(1)
    big = ox.zeros((200, 300))
    m, s, lo, hi = stats(nn.init.normal(mean=1.0, std=2.0)(big))
    assert abs(m - 1) < 0.05 and abs(s - 2) < 0.05
    m, s, lo, hi = stats(nn.init.uniform(low=-2, high=3)(big))
    assert lo >= -2 and hi < 3 and abs(m - 0.5) < 0.05
    fan_in, fan_out = 300, 200
    _, s, _, _ = stats(nn.init.glorot_normal()(big))
    assert abs(s - math.sqrt(2 / (fan_in + fan_out))) < 0.005
    _, _, lo, hi = stats(nn.init.glorot_uniform()(big, gain=2.0))
    limit = 2 * math.sqrt(6 / (fan_in + fan_out))
    assert -limit <= lo and hi <= limit and hi > 0.9 * limit
    _, s, _, _ = stats(nn.init.he_normal()(big))
    assert abs(s - 1 / math.sqrt(fan_in)) < 0.003
    _, s, _, _ = stats(nn.init.he_normal()(big, mode="fan_out", gain=3.0))
    assert abs(s - 3 / math.sqrt(fan_out)) < 0.01
    _, _, lo, hi = stats(nn.init.he_uniform()(big))
    limit = math.sqrt(3 / fan_in)
    assert -limit <= lo and hi <= limit
    out = nn.init.he_uniform(ox.bfloat16)(ox.zeros((4, 3, 5)))
    assert out.dtype == ox.bfloat16 and out.shape == (4, 3, 5)
    with pytest.raises(ValueError):
        nn.init.he_normal()(big, mode="fan_avg")
    with pytest.raises(ValueError):
        nn.init.glorot_normal()(ox.zeros((5,)))


def test_orthogonal_and_sparse():
    for shape in ((4, 6), (6, 4), (5, 5)):
        q = np.array(nn.init.orthogonal(gain=2.0)(ox.zeros(shape)))
        assert q.shape == shape
        small = min(shape)
        gram = q @ q.T if shape[0] <= shape[1] else q.T @ q
        np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-4)
    w = np.array(nn.init.sparse(0.5, std=1.0)(ox.zeros((6, 10))))
    assert ((w == 0).sum(axis=1) >= 5).all()
    with pytest.raises(ValueError):
        nn.init.sparse(0.5)(ox.zeros((3,)))


@needs_mlx
def test_initializers_match_mlx_with_the_same_seed():
    """When oxmx's random generator follows MLX's (same seed, same bits), the samples agree too."""
    ox.random.seed(7)
    mlx_core.random.seed(7)
    a, b = ox.random.normal((4,)), mlx_core.random.normal((4,))
    if not np.allclose(np.array(a), np.array(b)):
        pytest.skip("oxmx.random does not reproduce MLX's streams for the same seed")
    for name, args in [("normal", (0.5, 2.0)), ("uniform", (-1, 1)), ("glorot_uniform", ()), ("he_normal", ())]:
        ox.random.seed(3)
        mlx_core.random.seed(3)
        o = getattr(nn.init, name)(*args)(ox.zeros((5, 7)))
        m = getattr(mlx_nn.init, name)(*args)(mlx_core.zeros((5, 7)))
        np.testing.assert_allclose(np.array(o), np.array(m), rtol=1e-5, atol=1e-6)
