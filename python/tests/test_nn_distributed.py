"""nn's sharded linear layers (mlx.nn.layers.distributed): in one process against nn.Linear /
nn.QuantizedLinear and against MLX's classes; on 2 and 4 MPI ranks (skipped, saying so, without
Open MPI's mpirun) against the dense layers, forward and backward."""

import textwrap

import numpy as np
import pytest
from mpi_ranks import run_on_ranks

import oxmx.core as mx
import oxmx.nn as nn
from oxmx.nn.layers.distributed import shard_inplace, shard_linear, sum_gradients
from oxmx.utils import tree_flatten

from conftest import needs_mlx


RNG = np.random.RandomState(7)
W1 = (RNG.randn(64, 128) * 0.1).astype(np.float32)
B1 = (RNG.randn(64) * 0.1).astype(np.float32)
X = RNG.randn(3, 128).astype(np.float32)


def _linear(mod, w, b, core=mx):
    l = mod.Linear(w.shape[1], w.shape[0], bias=b is not None)
    l.weight = core.array(w)
    if b is not None:
        l.bias = core.array(b)
    return l


def keys(tree):
    return sorted(k for k, _ in tree_flatten(tree))


def test_exports():
    import oxmx.nn.layers as layers

    for name in ("AllToShardedLinear", "ShardedToAllLinear", "QuantizedAllToShardedLinear",
                 "QuantizedShardedToAllLinear", "FullyShardedModule"):
        assert getattr(nn, name) is getattr(layers.distributed, name) is getattr(layers, name)
    for name in ("shard_linear", "shard_inplace", "sum_gradients"):
        assert callable(getattr(nn.layers.distributed, name))
    assert nn.fully_shard is layers.fully_shard is layers.distributed.fully_shard


@pytest.mark.parametrize("bias", [True, False])
def test_group_of_one_equals_linear(bias):
    l = _linear(nn, W1, B1 if bias else None)
    x = mx.array(X)
    ref = np.array(l(x))
    for sharding in ("all-to-sharded", "sharded-to-all"):
        for segments in (1, 2, [0.25], [16]):
            s = shard_linear(l, sharding, segments=segments)
            assert type(s) is (nn.AllToShardedLinear if sharding == "all-to-sharded" else nn.ShardedToAllLinear)
            np.testing.assert_allclose(np.array(s(x)), ref, rtol=1e-6, atol=1e-6)
            assert keys(s.trainable_parameters()) == keys(l.trainable_parameters())
            gx = mx.grad(lambda v: (s(v) * s(v)).sum())(x)
            np.testing.assert_allclose(np.array(gx), np.array(mx.grad(lambda v: (l(v) * l(v)).sum())(x)), rtol=1e-5)
    assert repr(shard_linear(l, "all-to-sharded")).startswith(
        "AllToShardedLinear(input_dims=128, output_dims=64, bias={})".format(bias))


def test_group_of_one_quantized_equals_quantized_linear():
    l = _linear(nn, W1, B1)
    ql = nn.QuantizedLinear.from_linear(l, group_size=32, bits=4)
    x = mx.array(X)
    for sharding, cls in (("all-to-sharded", nn.QuantizedAllToShardedLinear),
                          ("sharded-to-all", nn.QuantizedShardedToAllLinear)):
        s = shard_linear(ql, sharding, segments=2)
        assert type(s) is cls
        assert (s.group_size, s.bits, s.mode) == (32, 4, "affine")
        np.testing.assert_array_equal(np.array(s(x)), np.array(ql(x)))
        # Frozen, as MLX: even unfreeze() leaves the layer's own parameters frozen.
        assert keys(s.trainable_parameters()) == []
        s.unfreeze()
        assert keys(s.trainable_parameters()) == []
        assert "group_size=32, bits=4, mode=affine" in repr(s)


def test_constructors_and_errors():
    g = mx.distributed.init()
    a = nn.AllToShardedLinear(8, 6, group=g)
    assert a.weight.shape == (6, 8) and a.bias.shape == (6,)
    b = nn.ShardedToAllLinear(8, 6, bias=False)
    assert b.weight.shape == (6, 8) and "bias" not in b
    qa = nn.QuantizedAllToShardedLinear(64, 16, bias=True, group_size=32, bits=8)
    assert qa.weight.shape == (16, 16) and qa.scales.shape == (16, 2) and qa.bias.shape == (16,)
    qb = nn.QuantizedShardedToAllLinear(128, 4)
    assert (qb.group_size, qb.bits) == (64, 4) and qb.weight.shape == (4, 16)
    with pytest.raises(ValueError, match="not supported"):
        shard_linear(a, "all-to-all")
    with pytest.raises(ValueError):
        shard_inplace(a, "rows")
    # A group of one: fully_shard leaves the module as it is; FullyShardedModule holds it whole.
    assert nn.fully_shard(a) is a
    fs = nn.FullyShardedModule(b, group=g)
    xb = mx.array(np.arange(8, dtype=np.float32))
    np.testing.assert_array_equal(np.array(fs(xb)), np.array(b(xb)))
    x = mx.array([1.0, -2.0])
    assert sum_gradients(g)(x) is x


def test_shard_inplace_group_of_one_and_callable():
    l = _linear(nn, W1, B1)
    shard_inplace(l, "sharded-to-all", segments=4)
    np.testing.assert_array_equal(np.array(l.weight), W1)
    seen = []
    shard_inplace(l, lambda path, w: seen.append(path) or (0 if path == "weight" else None))
    assert sorted(seen) == ["bias", "weight"]


@needs_mlx
@pytest.mark.parametrize("bias", [True, False])
def test_matches_mlx_classes(mlx, bias):
    import mlx.nn as mnn
    from mlx.nn.layers.distributed import shard_linear as mlx_shard_linear

    ours_l, theirs_l = _linear(nn, W1, B1 if bias else None), _linear(mnn, W1, B1 if bias else None, mlx)
    x_o, x_t = mx.array(X), mlx.array(X)
    for sharding in ("all-to-sharded", "sharded-to-all"):
        o = shard_linear(ours_l, sharding, segments=2)
        t = mlx_shard_linear(theirs_l, sharding, segments=2)
        assert type(o).__name__ == type(t).__name__
        assert repr(o) == repr(t)
        assert keys(o.trainable_parameters()) == keys(t.trainable_parameters())
        np.testing.assert_allclose(np.array(o(x_o)), np.array(t(x_t)), rtol=1e-5, atol=1e-6)
    ours_q = nn.QuantizedLinear.from_linear(ours_l, group_size=64, bits=4)
    theirs_q = mnn.QuantizedLinear.from_linear(theirs_l, group_size=64, bits=4)
    for sharding in ("all-to-sharded", "sharded-to-all"):
        o = shard_linear(ours_q, sharding)
        t = mlx_shard_linear(theirs_q, sharding)
        assert type(o).__name__ == type(t).__name__
        assert repr(o) == repr(t)
        assert keys(o.parameters()) == keys(t.parameters())
        assert keys(o.trainable_parameters()) == keys(t.trainable_parameters())
        np.testing.assert_array_equal(np.array(o.weight), np.array(t.weight))
        np.testing.assert_allclose(np.array(o(x_o)), np.array(t(x_t)), rtol=1e-4, atol=1e-5)
    # Constructors: same parameter shapes and dtypes.
    for name, args, kw in (("AllToShardedLinear", (16, 8), {}), ("ShardedToAllLinear", (16, 8), {"bias": False}),
                           ("QuantizedAllToShardedLinear", (128, 8), {}),
                           ("QuantizedShardedToAllLinear", (128, 8), {"group_size": 32, "bits": 8})):
        o, t = getattr(nn, name)(*args, **kw), getattr(mnn, name)(*args, **kw)
        assert [(k, tuple(v.shape), repr(v.dtype).rsplit(".", 1)[-1]) for k, v in tree_flatten(o.parameters())] == \
            [(k, tuple(v.shape), repr(v.dtype).rsplit(".", 1)[-1]) for k, v in tree_flatten(t.parameters())], name
        assert repr(o) == repr(t)


WORKER = textwrap.dedent(
    """
    import numpy as np
    import oxmx.core as mx
    import oxmx.nn as nn
    from oxmx.nn.layers.distributed import shard_inplace, shard_linear, sum_gradients, _sum_gradients_composed
    from oxmx.utils import tree_flatten

    g = mx.distributed.init(strict=True, backend="mpi")
    r, n = g.rank(), g.size()
    rng = np.random.RandomState(0)  # the same data on every rank
    D, H, O = 64, 256, 32

    def close(a, b, what, rtol=2e-5, atol=2e-5):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=rtol, atol=atol, err_msg="rank %d: %s" % (r, what))

    def rows(a, k=None):  # this rank's block of axis 0 (of each of k segments)
        parts = np.split(np.array(a), k or 1, axis=0)
        return np.concatenate([np.split(p, n, axis=0)[r] for p in parts], axis=0)

    def cols(a, k=None):
        parts = np.split(np.array(a), k or 1, axis=-1)
        return np.concatenate([np.split(p, n, axis=-1)[r] for p in parts], axis=-1)

    def linear(i, o):
        l = nn.Linear(i, o)
        l.weight = mx.array((rng.randn(o, i) / np.sqrt(i)).astype(np.float32))
        l.bias = mx.array((rng.randn(o) * 0.1).astype(np.float32))
        return l

    # sum_gradients: identity forward, all-sum of the cotangent backward (through
    # mx.custom_function where oxmx.core has it, and the fallback built from collectives).
    v = mx.array(rng.randn(3, 5).astype(np.float32))
    for what, sg in (("sum_gradients", sum_gradients(g)), ("composed", _sum_gradients_composed(g))):
        assert np.array_equal(np.array(sg(v)), np.array(v)), what
        gv = mx.grad(lambda t: (sg(t) * (r + 1)).sum())(v)
        close(gv, np.full((3, 5), n * (n + 1) / 2), what)
        gh = mx.grad(lambda t: (sg(t).astype(mx.float32) * (r + 1)).sum())(v.astype(mx.float16))
        assert gh.dtype == mx.float16, what
        close(gh.astype(mx.float32), np.full((3, 5), n * (n + 1) / 2), what + " float16")

    l1, l2 = linear(D, H), linear(H, O)
    x = mx.array(rng.randn(4, D).astype(np.float32))
    cot = mx.array(rng.randn(4, O).astype(np.float32))
    dense = nn.Sequential(l1, nn.Tanh(), l2)
    s1 = shard_linear(l1, "all-to-sharded", group=g)
    s2 = shard_linear(l2, "sharded-to-all")  # the world group by default
    assert type(s1) is nn.AllToShardedLinear and type(s2) is nn.ShardedToAllLinear
    assert s2.group.size() == n
    sharded = nn.Sequential(s1, nn.Tanh(), s2)
    assert s1.weight.shape == (H // n, D) and s2.weight.shape == (O, H // n) and s2.bias.shape == (O,)
    close(s1(x), cols(l1(x)), "all-to-sharded output")
    close(sharded(x), dense(x), "pair forward")

    loss = lambda m: (lambda t: (m(t) * cot).sum())
    close(mx.grad(loss(sharded))(x), mx.grad(loss(dense))(x), "input gradient")
    fn = lambda m: (lambda t: (m(t) * cot).sum())
    _, gd = nn.value_and_grad(dense, fn(dense))(x)
    _, gs = nn.value_and_grad(sharded, fn(sharded))(x)
    gd, gs = dict(tree_flatten(gd)), dict(tree_flatten(gs))
    assert sorted(gd) == sorted(gs)
    close(gs["layers.0.weight"], rows(gd["layers.0.weight"]), "weight grad (all-to-sharded)")
    close(gs["layers.0.bias"], rows(gd["layers.0.bias"]), "bias grad (all-to-sharded)")
    close(gs["layers.2.weight"], cols(gd["layers.2.weight"]), "weight grad (sharded-to-all)")
    close(gs["layers.2.bias"], gd["layers.2.bias"], "bias grad (sharded-to-all)")

    # float16: partial products summed in float32; result and gradients stay float16.
    h1 = shard_linear(l1, "all-to-sharded"); h2 = shard_linear(l2, "sharded-to-all")
    dh = nn.Sequential(linear(D, H), nn.Tanh(), linear(H, O))
    dh.update(dense.parameters()); dh.set_dtype(mx.float16)
    sh = nn.Sequential(h1, nn.Tanh(), h2); sh.set_dtype(mx.float16)
    xh = x.astype(mx.float16)
    yh = sh(xh)
    assert yh.dtype == mx.float16
    close(yh.astype(mx.float32), dense(x), "float16 forward", rtol=2e-2, atol=2e-2)
    gxh = mx.grad(lambda t: (sh(t).astype(mx.float32) * cot).sum())(xh)
    assert gxh.dtype == mx.float16
    close(gxh.astype(mx.float32), mx.grad(loss(dense))(x), "float16 input gradient", rtol=3e-2, atol=3e-2)

    # 4-bit quantized pair (H / n input features per rank: a multiple of the group size 64).
    q1 = nn.QuantizedLinear.from_linear(l1, group_size=64, bits=4)
    q2 = nn.QuantizedLinear.from_linear(l2, group_size=64, bits=4)
    qdense = nn.Sequential(q1, nn.Tanh(), q2)
    qs1, qs2 = shard_linear(q1, "all-to-sharded", group=g), shard_linear(q2, "sharded-to-all", group=g)
    assert type(qs1) is nn.QuantizedAllToShardedLinear and type(qs2) is nn.QuantizedShardedToAllLinear
    qsharded = nn.Sequential(qs1, nn.Tanh(), qs2)
    assert np.array_equal(np.array(qs1.weight), rows(q1.weight)) and np.array_equal(np.array(qs2.scales), cols(q2.scales))
    assert np.array_equal(np.array(qs2.weight), cols(q2.weight)) and np.array_equal(np.array(qs1.biases), rows(q1.biases))
    close(qs1(x), cols(q1(x)), "quantized all-to-sharded output")
    close(qsharded(x), qdense(x), "quantized pair forward")
    close(mx.grad(loss(qsharded))(x), mx.grad(loss(qdense))(x), "quantized input gradient")

    def bias_grads(m):  # the biases, though frozen in the sharded quantized layers
        params = {"layers": [{"bias": m.layers[0].bias}, {}, {"bias": m.layers[2].bias}]}
        def inner(p):
            m.update(p)
            return (m(x) * cot).sum()
        gr = mx.grad(inner)(params)
        return gr["layers"][0]["bias"], gr["layers"][2]["bias"]

    (bd0, bd2), (bs0, bs2) = bias_grads(qdense), bias_grads(qsharded)
    close(bs0, rows(bd0), "quantized bias grad (all-to-sharded)")
    close(bs2, bd2, "quantized bias grad (sharded-to-all)")
    try:
        shard_linear(nn.QuantizedLinear.from_linear(linear(64 * n // 2 if n > 1 else 64, 8)), "sharded-to-all")
        raise AssertionError("a quantized sharded-to-all layer with input groups split across ranks")
    except ValueError:
        pass

    # segments: a fused q/k/v weight is cut per segment, each segment split across ranks.
    qkv = linear(D, 3 * H)
    s = shard_linear(qkv, "all-to-sharded", segments=3)
    close(s(x), cols(qkv(x), 3), "all-to-sharded, 3 segments")
    qq = nn.QuantizedLinear.from_linear(qkv, group_size=64, bits=4)
    close(shard_linear(qq, "all-to-sharded", segments=3)(x), cols(qq(x), 3), "quantized, 3 segments")
    fused_in = linear(2 * H, O)
    a_b = mx.array(rng.randn(4, 2 * H).astype(np.float32))
    s = shard_linear(fused_in, "sharded-to-all", segments=2)
    close(s(mx.array(cols(a_b, 2))), fused_in(a_b), "sharded-to-all, 2 segments")
    s = shard_linear(fused_in, "sharded-to-all", segments=[0.5])
    close(s(mx.array(cols(a_b, 2))), fused_in(a_b), "sharded-to-all, fractional segments")
    # shard_inplace only slices; the forward does not communicate.
    m = linear(D, H)
    full_w = np.array(m.weight)
    shard_inplace(m, "all-to-sharded", segments=2, group=g)
    assert np.array_equal(np.array(m.weight), rows(full_w, 2)) and type(m) is nn.Linear

    # fully_shard: each parameter split along axis 0; the forward equals the dense model's, and
    # each shard's gradient is the mean over ranks (each rank with its own input) of its block
    # of the dense gradient. compute_dtype gathers in float16.
    def model():
        m = nn.Sequential(linear(D, H), nn.Tanh(), linear(H, O))
        m.update(dense.parameters())
        return m
    xr = x * (r + 1)
    fs = nn.fully_shard(model(), group=g)
    assert type(fs) is nn.FullyShardedModule and "num_sharded_params=4" in repr(fs)
    assert nn.fully_shard(fs) is fs
    assert fs.module.layers[0].weight.shape == (H // n, D) and fs.module.layers[2].bias.shape == (O // n,)
    close(fs(xr), dense(xr), "fully sharded forward")
    # After the call the module holds its shards again.
    assert fs.module.layers[0].weight.shape == (H // n, D)
    _, gfs = nn.value_and_grad(fs, fn(fs))(xr)
    gfs = dict(tree_flatten(gfs))
    mean = {}
    for q in range(n):
        _, gq = nn.value_and_grad(dense, fn(dense))(x * (q + 1))
        for k, v in tree_flatten(gq):
            mean[k] = mean.get(k, 0) + np.array(v) / n
    assert sorted(gfs) == sorted("module." + k for k in mean), sorted(gfs)
    for k, v in mean.items():
        close(gfs["module." + k], rows(v), "fully_shard gradient of " + k, rtol=1e-4, atol=1e-5)
    fh = nn.fully_shard(model(), group=g, compute_dtype=mx.float16)
    yh = fh(xr.astype(mx.float16))
    assert yh.dtype == mx.float16, yh.dtype
    assert fh.module.layers[0].weight.dtype == mx.float32  # the stored shards keep their dtype
    close(yh.astype(mx.float32), dense(xr), "fully sharded forward in float16", rtol=2e-2, atol=2e-2)
    _, ghs = nn.value_and_grad(fh, lambda t: (fh(t).astype(mx.float32) * cot).sum())(xr.astype(mx.float16))
    assert all(v.dtype == mx.float32 for _, v in tree_flatten(ghs))
    try:
        nn.FullyShardedModule(nn.Linear(D, n + 1), group=g)
        raise AssertionError("axis 0 of size n + 1 was sharded across n ranks")
    except ValueError as e:
        assert "divisible" in str(e)
    print("nn distributed worker ok", r)
    """
)


@pytest.mark.parametrize("n", [2, 4])
def test_sharded_pair_on_mpi_ranks(tmp_path, n):
    run_on_ranks(tmp_path, WORKER, n, "nn distributed worker ok")
