"""`oxmx.core` functions against the `mlx` oracle (and NumPy), on fresh random inputs."""

import numpy as np
import pytest

import oxmx.core as ox
from conftest import assert_same, run_both, same_exception, to_np

RNG = np.random.default_rng()


def rnd(*shape, dtype="float32", low=None, high=None):
    if dtype.startswith("int") or dtype.startswith("uint"):
        lo = 0 if dtype.startswith("uint") else -50
        return RNG.integers(lo if low is None else low, 50 if high is None else high, size=shape).astype(dtype)
    x = RNG.standard_normal(shape)
    if low is not None:
        x = RNG.uniform(low, high, size=shape)
    return x.astype(np.float32)


def arr(m, x, dtype="float32"):
    return m.array(x, getattr(m, dtype))


UNARY = {
    "abs": None, "sign": None, "negative": None, "square": None, "sqrt": (0.1, 10), "rsqrt": (0.1, 10),
    "reciprocal": (0.5, 10), "exp": (-5, 5), "expm1": (-2, 2), "log": (0.1, 10), "log1p": (0.1, 10),
    "log2": (0.1, 10), "log10": (0.1, 10), "sin": None, "cos": None, "tan": (-1, 1), "arcsin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9), "arctan": None, "sinh": (-3, 3), "cosh": (-3, 3), "tanh": None,
    "arcsinh": None, "arccosh": (1.1, 10), "arctanh": (-0.9, 0.9), "erf": None, "erfinv": (-0.9, 0.9),
    "sigmoid": None, "floor": None, "ceil": None, "isnan": None, "isinf": None, "isfinite": None,
    "isposinf": None, "isneginf": None, "round": None, "stop_gradient": None, "zeros_like": None,
    "ones_like": None, "degrees": None, "radians": None, "conjugate": None,
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_unary(name, dtype, shape, mlx):
    dom = UNARY[name]
    if dtype == "int32":
        x = rnd(*shape, dtype="int32", low=1, high=9) if dom else rnd(*shape, dtype="int32")
        if dom and dom[1] <= 1:
            pytest.skip("domain has no integers")
    else:
        x = rnd(*shape, low=dom[0], high=dom[1]) if dom else rnd(*shape) * 3
    ours, theirs = run_both(lambda m: getattr(m, name)(arr(m, x, dtype)), mlx)
    rtol = 1e-4 if dtype == "float32" else None
    assert_same(ours, theirs, rtol=rtol, atol=1e-5 if dtype == "float32" else None)


BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "equal", "not_equal", "less",
          "less_equal", "greater", "greater_equal", "arctan2", "logaddexp", "floor_divide", "remainder",
          "power", "logical_and", "logical_or"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("int32", "float16"), ("int8", "int32"),
                                    ("bfloat16", "float32"), ("uint8", "int8")])
@pytest.mark.parametrize("shapes", [((4,), (4,)), ((3, 1), (1, 5)), ((2, 3, 4), (3, 1))])
def test_binary(name, dtypes, shapes, mlx):
    x, y = rnd(*shapes[0], dtype=dtypes[0]), rnd(*shapes[1], dtype=dtypes[1])
    if name in ("floor_divide", "remainder", "divide"):
        y = np.where(y == 0, 2, y).astype(y.dtype)
    if name == "power":
        x = np.abs(x).astype(x.dtype) + 1
        y = (np.abs(y) % 3).astype(y.dtype)
    ours, theirs = run_both(lambda m: getattr(m, name)(arr(m, x, dtypes[0]), arr(m, y, dtypes[1])), mlx)
    assert_same(ours, theirs, rtol=1e-4 if ours.dtype == ox.float32 else None)


@pytest.mark.parametrize("name", ["bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift"])
def test_bitwise(name, mlx):
    x, y = rnd(5, 3, dtype="int32", low=0, high=100), rnd(5, 3, dtype="int32", low=0, high=5)
    assert_same(*run_both(lambda m: getattr(m, name)(m.array(x), m.array(y)), mlx))
    assert_same(*run_both(lambda m: getattr(m, name)(m.array(x, m.uint8), 2), mlx))
    same_exception(lambda m: getattr(m, name)(m.array([1.0]), m.array([2.0])), mlx)


REDUCTIONS = ["sum", "prod", "max", "min", "mean", "all", "any", "logsumexp", "var", "std", "median"]


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "int32", "float16", "bool_"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), 1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, dtype, axis, keepdims, mlx):
    if dtype == "bool_":
        if name not in ("all", "any", "sum", "max", "min"):
            pytest.skip("bool only for logical reductions")
        x = RNG.random((3, 4, 5)) > 0.5
    elif dtype == "int32":
        x = rnd(3, 4, 5, dtype="int32", low=-3, high=4)
    else:
        x = rnd(3, 4, 5)
    ours, theirs = run_both(lambda m: getattr(m, name)(arr(m, x, dtype), axis=axis, keepdims=keepdims), mlx)
    if dtype == "float32":
        assert_same(ours, theirs, rtol=1e-3 if name in ("prod", "var", "std") else 1e-4, atol=1e-4)
    else:
        assert_same(ours, theirs)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_arg_reductions(name, axis, mlx):
    x = rnd(4, 6)
    for kd in [False, True]:
        assert_same(*run_both(lambda m: getattr(m, name)(m.array(x), axis=axis, keepdims=kd), mlx))


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"])
@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [False, True])
def test_scans(name, axis, reverse, inclusive, mlx):
    x = rnd(4, 5, low=0.5, high=1.5)
    ours, theirs = run_both(lambda m: getattr(m, name)(m.array(x), axis=axis, reverse=reverse, inclusive=inclusive), mlx)
    assert_same(ours, theirs, rtol=1e-4, atol=1e-5)


def test_softmax_sort_topk(mlx):
    x = rnd(4, 7)
    for f in [lambda m: m.softmax(m.array(x), axis=-1), lambda m: m.softmax(m.array(x), axis=(0, 1)),
              lambda m: m.softmax(m.array(x), axis=0, precise=True), lambda m: m.sort(m.array(x)),
              lambda m: m.sort(m.array(x), axis=0), lambda m: m.sort(m.array(x), axis=None),
              lambda m: m.argsort(m.array(x), axis=1), lambda m: m.sort(m.topk(m.array(x), 3, axis=-1), axis=-1),
              lambda m: m.partition(m.array(x), 2, axis=1)[:, 2]]:
        assert_same(*run_both(f, mlx))


# ---- creation

def test_creation(mlx):
    cases = [
        lambda m: m.zeros((2, 3)), lambda m: m.zeros(4, m.int32), lambda m: m.ones((2, 2), dtype=m.float16),
        lambda m: m.full((2, 3), 7), lambda m: m.full((2, 3), 2.5, m.bfloat16),
        lambda m: m.full((2, 3), m.array([1, 2, 3])), lambda m: m.arange(5), lambda m: m.arange(1, 10, 3),
        lambda m: m.arange(0.0, 1.0, 0.25), lambda m: m.arange(5, dtype=m.float32), lambda m: m.arange(2, 7),
        lambda m: m.arange(10, 0, -3), lambda m: m.linspace(0, 1, 7), lambda m: m.linspace(-2, 2, num=5, dtype=m.float16),
        lambda m: m.eye(3), lambda m: m.eye(3, 4, k=1), lambda m: m.identity(4, m.int32),
        lambda m: m.tri(3, 4, k=-1), lambda m: m.tril(m.ones((4, 4)), k=1), lambda m: m.triu(m.ones((3, 5)), -1),
        lambda m: m.zeros_like(m.ones((2, 3), m.int8)), lambda m: m.ones_like(m.zeros((3,))),
        lambda m: m.meshgrid(m.arange(3), m.arange(4)), lambda m: m.meshgrid(m.arange(3), m.arange(2), indexing="ij"),
    ]
    for f in cases:
        assert_same(*run_both(f, mlx))


# ---- shape ops

def test_shape_ops(mlx):
    x = rnd(2, 3, 4)
    cases = [
        lambda m, a: m.reshape(a, (4, 6)), lambda m, a: m.reshape(a, [-1, 2]), lambda m, a: m.flatten(a),
        lambda m, a: m.flatten(a, 1), lambda m, a: m.flatten(a, start_axis=0, end_axis=1),
        lambda m, a: m.unflatten(a, 2, (2, 2)), lambda m, a: m.squeeze(m.expand_dims(a, 0)),
        lambda m, a: m.expand_dims(a, (0, 3)), lambda m, a: m.expand_dims(a, -1), lambda m, a: m.transpose(a),
        lambda m, a: m.transpose(a, (1, 2, 0)), lambda m, a: m.swapaxes(a, 0, 1), lambda m, a: m.moveaxis(a, 2, 0),
        lambda m, a: m.broadcast_to(a[:, :1], (2, 5, 4)), lambda m, a: m.broadcast_arrays(a, a[0]),
        lambda m, a: m.concatenate([a, a], axis=1), lambda m, a: m.concatenate([a, a], axis=None),
        lambda m, a: m.concat([a, a]), lambda m, a: m.stack([a, a]), lambda m, a: m.stack([a, a], axis=-1),
        lambda m, a: m.split(a, 2, axis=2), lambda m, a: m.split(a, [1, 3], axis=2),
        lambda m, a: m.pad(a, 1), lambda m, a: m.pad(a, ((0, 0), (1, 2), (2, 0)), constant_values=3.0),
        lambda m, a: m.pad(a, [(1, 1)], mode="edge"), lambda m, a: m.repeat(a, 2, axis=1), lambda m, a: m.repeat(a, 2),
        lambda m, a: m.tile(a, (2, 1, 1)), lambda m, a: m.tile(a, 2), lambda m, a: m.roll(a, 2),
        lambda m, a: m.roll(a, -1, axis=1), lambda m, a: m.roll(a, (1, 2), axis=(0, 2)),
        lambda m, a: m.diagonal(a), lambda m, a: m.diagonal(a, 1, 1, 2), lambda m, a: m.diag(a[0]),
        lambda m, a: m.diag(a[0, 0]), lambda m, a: m.trace(a[0]), lambda m, a: m.atleast_1d(a[0, 0, 0]),
        lambda m, a: m.atleast_2d(a[0, 0]), lambda m, a: m.atleast_3d(a[0]),
        lambda m, a: m.as_strided(a, (3, 2), (1, 3)), lambda m, a: m.view(a, m.int32),
        lambda m, a: m.contiguous(m.transpose(a)), lambda m, a: m.permute_dims(a, (2, 1, 0)),
    ]
    for i, f in enumerate(cases):
        ours, theirs = run_both(lambda m: f(m, m.array(x)), mlx)
        assert_same(ours, theirs)


def test_indexing_functions(mlx):
    x = rnd(4, 5)
    idx = RNG.integers(0, 4, size=(3,))
    cases = [
        lambda m: m.take(m.array(x), m.array(idx), axis=0), lambda m: m.take(m.array(x), m.array(idx)),
        lambda m: m.take(m.array(x), 2, axis=1),
        lambda m: m.take_along_axis(m.array(x), m.argsort(m.array(x), axis=1), axis=1),
        lambda m: m.put_along_axis(m.array(x), m.array([[0], [1], [2], [3]]), m.array(9.0), axis=1),
        lambda m: m.where(m.array(x) > 0, m.array(x), 0.0), lambda m: m.where(m.array(x) > 0, 1, 2),
        lambda m: m.clip(m.array(x), -0.5, 0.5), lambda m: m.clip(m.array(x), None, 0.1),
        lambda m: m.round(m.array(x), 2), lambda m: m.nan_to_num(m.array([np.nan, np.inf, -np.inf, 1.0])),
        lambda m: m.isclose(m.array(x), m.array(x) + 1e-7), lambda m: m.allclose(m.array(x), m.array(x)),
        lambda m: m.array_equal(m.array(x), m.array(x)), lambda m: m.divmod(m.array(x), 0.3),
        lambda m: m.slice(m.array(x), m.array([1, 2]), (0, 1), (2, 2)),
        lambda m: m.slice_update(m.array(x), m.ones((2, 2)), m.array([1, 2]), (0, 1)),
    ]
    for f in cases:
        assert_same(*run_both(f, mlx), rtol=1e-5, atol=1e-6)


def test_linear_algebra_ops(mlx):
    a, b, c, d = rnd(3, 4), rnd(4, 5), rnd(3, 5), rnd(2, 3, 4)
    cases = [
        lambda m: m.matmul(m.array(a), m.array(b)), lambda m: m.matmul(m.array(d), m.array(b)),
        lambda m: m.addmm(m.array(c), m.array(a), m.array(b), alpha=0.5, beta=2.0),
        lambda m: m.inner(m.array(a), m.array(a)), lambda m: m.outer(m.array(a[0]), m.array(b[0])),
        lambda m: m.kron(m.array(a[:2, :2]), m.array(b[:2, :3])),
        lambda m: m.tensordot(m.array(a), m.array(b), axes=1),
        lambda m: m.tensordot(m.array(a), m.array(b), axes=([1], [0])),
        lambda m: m.einsum("ij,jk->ik", m.array(a), m.array(b)), lambda m: m.einsum("ii", m.array(a[:3, :3])),
    ]
    for f in cases:
        assert_same(*run_both(f, mlx), rtol=1e-4, atol=1e-4)


def test_conv(mlx):
    x, w = rnd(2, 9, 3), rnd(4, 3, 3)
    assert_same(*run_both(lambda m: m.conv1d(m.array(x), m.array(w), stride=2, padding=1), mlx), rtol=1e-4, atol=1e-4)
    x2, w2 = rnd(1, 6, 6, 2), rnd(3, 3, 3, 2)
    assert_same(*run_both(lambda m: m.conv2d(m.array(x2), m.array(w2), padding=(1, 0)), mlx), rtol=1e-4, atol=1e-4)
    wt = rnd(4, 3, 3)
    assert_same(*run_both(lambda m: m.conv_transpose1d(m.array(x), m.array(wt), stride=2), mlx),
                rtol=1e-4, atol=1e-4)


def test_quantize(mlx):
    w = rnd(32, 64)
    ours, theirs = run_both(lambda m: m.quantize(m.array(w), group_size=32, bits=4), mlx)
    assert_same(list(ours), list(theirs))
    x = rnd(3, 64)
    assert_same(*run_both(lambda m: m.dequantize(*m.quantize(m.array(w), 64, 8), group_size=64, bits=8), mlx))
    assert_same(*run_both(lambda m: m.quantized_matmul(m.array(x), *m.quantize(m.array(w)), transpose=True), mlx),
                rtol=1e-3, atol=1e-3)


def test_linalg(mlx):
    a = rnd(4, 4) + 4 * np.eye(4, dtype=np.float32)
    spd = (a @ a.T).astype(np.float32)
    b = rnd(4, 2)
    cpu = lambda m: {"stream": m.cpu}  # noqa: E731
    cases = [
        lambda m: m.linalg.norm(m.array(a)), lambda m: m.linalg.norm(m.array(a), ord=1, axis=1),
        lambda m: m.linalg.norm(m.array(a), "fro"), lambda m: m.linalg.norm(m.array(a), axis=0, keepdims=True),
        lambda m: m.linalg.inv(m.array(a), **cpu(m)), lambda m: m.linalg.solve(m.array(a), m.array(b), **cpu(m)),
        lambda m: m.linalg.cholesky(m.array(spd), **cpu(m)),
        lambda m: m.linalg.solve_triangular(m.array(np.tril(a)), m.array(b), upper=False, **cpu(m)),
        lambda m: m.linalg.eigvalsh(m.array(spd), **cpu(m)), lambda m: m.linalg.cross(m.array(a[:, :3]), m.array(b[:, :1] + a[:, 1:4])),
        lambda m: m.linalg.svd(m.array(a), compute_uv=False, **cpu(m)), lambda m: m.linalg.pinv(m.array(a), **cpu(m)),
    ]
    for f in cases:
        assert_same(*run_both(f, mlx), rtol=2e-3, atol=2e-3)
    q, r = ox.linalg.qr(ox.array(a))
    np.testing.assert_allclose(to_np(q @ r), a, rtol=1e-4, atol=1e-4)


def test_fft(mlx):
    x = rnd(4, 8)
    cases = [lambda m: m.fft.fft(m.array(x)), lambda m: m.fft.rfft(m.array(x), axis=0),
             lambda m: m.fft.irfft(m.fft.rfft(m.array(x))), lambda m: m.fft.fft2(m.array(x)),
             lambda m: m.fft.fftn(m.array(x), axes=[1]), lambda m: m.fft.ifft(m.array(x), n=4),
             lambda m: m.fft.fftshift(m.array(x))]
    for f in cases:
        assert_same(*run_both(f, mlx), rtol=1e-4, atol=1e-4)


def test_fast(mlx):
    x, w, b = rnd(2, 3, 16), rnd(16), rnd(16)
    assert_same(*run_both(lambda m: m.fast.rms_norm(m.array(x), m.array(w), 1e-5), mlx), rtol=1e-4, atol=1e-5)
    assert_same(*run_both(lambda m: m.fast.layer_norm(m.array(x), m.array(w), m.array(b), 1e-5), mlx),
                rtol=1e-4, atol=1e-4)
    assert_same(*run_both(lambda m: m.fast.layer_norm(m.array(x), None, None, 1e-5), mlx), rtol=1e-4, atol=1e-4)
    r = rnd(1, 2, 5, 8)
    for trad in [False, True]:
        assert_same(*run_both(lambda m: m.fast.rope(m.array(r), 8, traditional=trad, base=10000.0, scale=1.0,
                                                    offset=3), mlx), rtol=1e-4, atol=1e-4)
    q, k, v = rnd(1, 4, 3, 8), rnd(1, 2, 5, 8), rnd(1, 2, 5, 8)
    for mask in [None, "causal"]:
        assert_same(*run_both(lambda m: m.fast.scaled_dot_product_attention(
            m.array(q), m.array(k), m.array(v), scale=0.35, mask=mask), mlx), rtol=1e-4, atol=1e-4)


def test_random_bit_exact(mlx):
    seed = int(RNG.integers(0, 2**31))
    cases = [lambda m: m.random.key(seed), lambda m: m.random.split(m.random.key(seed)),
             lambda m: m.random.split(m.random.key(seed), num=5),
             lambda m: m.random.uniform(shape=(3, 4), key=m.random.key(seed)),
             lambda m: m.random.uniform(-2, 5, (7,), key=m.random.key(seed))]
    for f in cases:
        assert_same(*run_both(f, mlx))


def test_random_distributions():
    k = ox.random.key(int(RNG.integers(0, 2**31)))
    n = np.array(ox.random.normal((20000,), key=k))
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    n2 = np.array(ox.random.normal((20000,), loc=3.0, scale=2.0, key=k))
    assert abs(n2.mean() - 3) < 0.1 and abs(n2.std() - 2) < 0.1
    r = np.array(ox.random.randint(0, 10, (5000,), key=k))
    assert r.min() == 0 and r.max() == 9 and r.dtype == np.int32
    b = np.array(ox.random.bernoulli(0.3, (20000,), key=k))
    assert abs(b.mean() - 0.3) < 0.02
    p = np.array(ox.random.permutation(10, key=k))
    assert sorted(p.tolist()) == list(range(10))
    t = np.array(ox.random.truncated_normal(-1.0, 1.0, (1000,), key=k))
    assert t.min() >= -1 and t.max() <= 1
    c = np.array(ox.random.categorical(ox.log(ox.array([0.0, 1.0, 0.0]) + 1e-9), key=k))
    assert c == 1
    ox.random.seed(3)
    a = np.array(ox.random.uniform(shape=(4,)))
    ox.random.seed(3)
    np.testing.assert_array_equal(a, np.array(ox.random.uniform(shape=(4,))))


def test_exceptions_like_mlx(mlx):
    cases = [
        lambda m: m.reshape(m.ones((2, 3)), (4, 5)), lambda m: m.sum(m.ones((2, 3)), axis=3),
        lambda m: m.add(m.ones((2, 3)), m.ones((4,))), lambda m: m.matmul(m.ones((2, 3)), m.ones((4, 2))),
        lambda m: m.concatenate([m.ones((2, 3)), m.ones((3, 2))], axis=0), lambda m: m.squeeze(m.ones((2, 3)), 0),
        lambda m: m.transpose(m.ones((2, 3)), (0, 0)), lambda m: m.split(m.ones((5,)), 2),
        lambda m: m.take(m.ones((2, 3)), m.array([0]), axis=5),
        lambda m: m.swapaxes(m.ones((2, 3)), 0, 4), lambda m: m.expand_dims(m.ones((2,)), 5),
        lambda m: m.negative(m.array([True])), lambda m: m.linalg.inv(m.ones((2, 3)), stream=m.cpu),
        lambda m: m.broadcast_to(m.ones((3,)), (2, 4)), lambda m: m.argmax(m.ones((2, 3)), axis=2),
        lambda m: m.softmax(m.ones((2,)), axis=1), lambda m: m.full((2, -1), 1),
    ]
    for f in cases:
        same_exception(f, mlx)


def test_eval_and_memory():
    a = ox.ones((3,)) * 2
    b = {"x": [a + 1, (a - 1,)], "y": 3}
    ox.eval(b)
    ox.eval(a, [a])
    ox.async_eval(a + 5)
    assert ox.get_active_memory() >= 0
    assert ox.get_peak_memory() >= 0
    ox.reset_peak_memory()
    ox.clear_cache()
    assert ox.get_cache_memory() >= 0


def test_more_functions(mlx):
    x = rnd(3, 4)
    i = rnd(3, 4, dtype="int32", low=-3, high=3)
    cases = [
        lambda m: m.zeros_like(m.array(x), dtype=m.int32), lambda m: m.ones_like(m.array(i)),
        lambda m: m.full_like(m.array(x), 3), lambda m: m.full_like(m.array(i), 2.5, dtype=m.float16),
        lambda m: m.flip(m.array(x)), lambda m: m.flip(m.array(x), axis=1), lambda m: m.flip(m.array(x), (0, 1)),
        lambda m: m.unstack(m.array(x)), lambda m: m.unstack(m.array(x), axis=1),
        lambda m: m.count_nonzero(m.array(i)), lambda m: m.count_nonzero(m.array(i), axis=1, keepdims=True),
        lambda m: m.logical_xor(m.array(x) > 0, m.array(i) > 0), lambda m: m.trunc(m.array(x) * 3),
        lambda m: m.trunc(m.array(i)), lambda m: m.positive(m.array(x)), lambda m: m.matrix_transpose(m.array(x)),
        lambda m: m.empty((2, 3)).shape and m.zeros((2, 3)),
        lambda m: m.gather_mm(m.array(rnd_b), m.array(rnd_c), rhs_indices=m.array([1, 0])),
        lambda m: m.conv_transpose2d(m.array(rnd_x2), m.array(rnd_w2), stride=2, padding=1),
    ]
    for f in cases:
        assert_same(*run_both(f, mlx), rtol=1e-4, atol=1e-4)
    assert tuple(ox.broadcast_shapes((2, 1, 3), (4, 1), (3,))) == tuple(mlx.broadcast_shapes((2, 1, 3), (4, 1), (3,)))
    same_exception(lambda m: m.broadcast_shapes((2, 3), (4,)), mlx)


rnd_b, rnd_c = rnd(2, 3, 4), rnd(2, 4, 5)
rnd_x2, rnd_w2 = rnd(1, 5, 5, 2), rnd(3, 3, 3, 2)


@pytest.mark.parametrize("ext", ["npy", "npz", "safetensors"])
def test_save_load_with_mlx(ext, tmp_path, mlx):
    a, b = rnd(3, 4), rnd(5, dtype="int32")
    ours_path, theirs_path = str(tmp_path / ("ours." + ext)), str(tmp_path / ("theirs." + ext))
    for m, p in [(ox, ours_path), (mlx, theirs_path)]:
        if ext == "npy":
            m.save(p, m.array(a))
        elif ext == "npz":
            m.savez(p, m.array(a), b=m.array(b))
        else:
            m.save_safetensors(p, {"a": m.array(a), "b": m.array(b)}, metadata={"k": "v"})
    # Each library reads the other's file.
    for path in [ours_path, theirs_path]:
        ours, theirs = ox.load(path), mlx.load(path)
        if ext == "npy":
            assert_same(ours, theirs)
        else:
            assert sorted(ours) == sorted(theirs)
            for k in ours:
                assert_same(ours[k], theirs[k])
    if ext == "safetensors":
        _, meta = ox.load(ours_path, return_metadata=True)
        assert meta == mlx.load(ours_path, return_metadata=True)[1]


def test_stream_argument(mlx):
    x = rnd(4)
    for s in [lambda m: m.cpu, lambda m: m.Device(m.cpu), lambda m: m.default_device()]:
        assert_same(*run_both(lambda m: m.exp(m.array(x), stream=s(m)), mlx))
        assert_same(*run_both(lambda m: m.sum(m.array(x), axis=0, stream=s(m)), mlx))
    assert repr(ox.cpu) == repr(mlx.cpu)
    assert repr(ox.Device(ox.cpu)) == repr(mlx.Device(mlx.cpu))
    with pytest.raises(TypeError):
        ox.exp(ox.array(x), stream="cpu")
    ox.synchronize()


def test_result_type_and_streams(mlx):
    names = ["bool_", "int8", "uint16", "int32", "float16", "bfloat16", "float32", "complex64"]
    for a in names:
        for b in names:
            assert repr(ox.result_type(getattr(ox, a), getattr(ox, b))).split(".")[-1] == \
                repr(mlx.result_type(getattr(mlx, a), getattr(mlx, b))).split(".")[-1]
    assert ox.result_type(ox.array([1], ox.int8), ox.float16) == ox.float16
    assert repr(ox.default_stream(ox.cpu)) == repr(mlx.default_stream(mlx.cpu))
    x = rnd(3)
    s = ox.new_stream(ox.cpu)
    before = ox.default_device()
    with ox.stream(s):
        assert ox.default_device() == ox.Device(ox.cpu)
        y = ox.exp(ox.array(x), stream=s)
    np.testing.assert_allclose(np.array(y), np.exp(x), rtol=1e-6)
    assert ox.default_device() == before


def test_conv_general_and_transpose3d(mlx):
    x, w = rnd(2, 7, 6, 3), rnd(4, 3, 2, 3)
    for kw in [dict(), dict(stride=2), dict(stride=[1, 2], padding=1), dict(padding=([1, 0], [2, 1])),
               dict(kernel_dilation=[2, 1]), dict(input_dilation=2), dict(input_dilation=[1, 2], flip=True),
               dict(padding=([0, -1], [1, 0]))]:
        assert_same(*run_both(lambda m: m.conv_general(m.array(x), m.array(w), **kw), mlx), rtol=1e-4, atol=1e-4)
    xg, wg = rnd(1, 5, 4), rnd(6, 3, 2)
    assert_same(*run_both(lambda m: m.conv_general(m.array(xg), m.array(wg), groups=2), mlx), rtol=1e-4, atol=1e-4)
    x3, w3 = rnd(1, 3, 4, 3, 2), rnd(3, 2, 2, 2, 2)
    for kw in [dict(), dict(stride=2), dict(stride=(1, 2, 1), padding=1, output_padding=(0, 1, 0)), dict(dilation=2)]:
        assert_same(*run_both(lambda m: m.conv_transpose3d(m.array(x3), m.array(w3), **kw), mlx), rtol=1e-4, atol=1e-4)


def test_gather_qmm(mlx):
    w = rnd(3, 16, 64)
    x = rnd(2, 1, 5, 64)

    def run(m, **kw):
        wq, s, b = m.quantize(m.array(w), group_size=32, bits=4)
        return m.gather_qmm(m.array(x), wq, s, b, group_size=32, bits=4, **kw)

    assert_same(*run_both(lambda m: run(m), mlx), rtol=1e-4, atol=1e-4)
    idx = np.array([[2, 0], [1, 1]], dtype=np.uint32)
    lhs = np.array([[0, 1], [1, 0]], dtype=np.uint32)
    assert_same(*run_both(lambda m: run(m, rhs_indices=m.array(idx)), mlx), rtol=1e-4, atol=1e-4)
    assert_same(*run_both(lambda m: run(m, lhs_indices=m.array(lhs), rhs_indices=m.array(idx), sorted_indices=True), mlx),
                rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["nvfp4", "mxfp8", "mxfp4", "affine"])
def test_qqmm_is_the_product_of_the_rounded_operands(mlx, mode):
    """MLX's CPU build has no qqmm kernel ("NYI"), so the oracle is its definition: x and w both
    rounded through the mode's format, then x @ w.T."""
    x, w = rnd(3, 64), rnd(8, 64)
    def ref(m):
        xq = m.dequantize(*m.quantize(m.array(x), mode=mode), mode=mode, dtype=m.float32)
        wq = m.dequantize(*m.quantize(m.array(w), mode=mode), mode=mode, dtype=m.float32)
        return xq @ wq.T
    expect = np.array(ref(mlx))
    np.testing.assert_allclose(np.array(ox.qqmm(ox.array(x), ox.array(w), mode=mode)), expect, rtol=1e-5, atol=1e-5)
    if mode != "affine":  # a pre-quantized w (qqmm takes no quantization biases)
        wq, scales = ox.quantize(ox.array(w), mode=mode)
        np.testing.assert_allclose(np.array(ox.qqmm(ox.array(x), wq, scales, mode=mode)), expect, rtol=1e-5, atol=1e-5)
    assert ox.qqmm(ox.array(x).astype(ox.bfloat16), ox.array(w).astype(ox.bfloat16), mode=mode).dtype == ox.bfloat16


def test_max_min_of_empty_arrays(mlx):
    """Reducing over an axis of length 0 is an error, an empty array over other axes is empty."""
    for shape, axis in [((0, 3), 1), ((2, 0, 3), 2), ((0, 3), (1,)), ((4, 0), 0)]:
        for name in ("max", "min"):
            theirs = getattr(mlx, name)(mlx.zeros(shape), axis=axis)
            ours = getattr(ox, name)(ox.zeros(shape), axis=axis)
            assert ours.shape == theirs.shape == tuple(np.zeros(shape).max(axis=axis).shape)
            ours_k = getattr(ox, name)(ox.zeros(shape), axis=axis, keepdims=True)
            assert ours_k.shape == getattr(mlx, name)(mlx.zeros(shape), axis=axis, keepdims=True).shape
    for shape, axis in [((0, 3), 0), ((0, 3), None), ((3, 0), 1), ((2, 0), (0, 1))]:
        for name in ("max", "min"):
            with pytest.raises(ValueError) as theirs:
                getattr(mlx, name)(mlx.zeros(shape), axis=axis)
            with pytest.raises(ValueError) as ours:
                getattr(ox, name)(ox.zeros(shape), axis=axis)
            assert str(ours.value) == str(theirs.value)


def test_half_floor_divide_rounds_the_quotient_first(mlx):
    """-1610 / 8.9921875 = -179.04, which float16 holds as -179.0: MLX's floor gives -179."""
    for dt in ("float16", "bfloat16"):
        for compiled in (False, True):
            def run(m):
                f = lambda a, b: m.floor_divide(a, b)  # noqa: E731
                f = m.compile(f) if compiled else f
                return f(m.array([-1610.0, 1610.0, 7.0], getattr(m, dt)), m.array([8.9921875, 8.9921875, 0.5], getattr(m, dt)))
            ours, theirs = run_both(run, mlx)
            np.testing.assert_array_equal(to_np(ours), to_np(theirs))
