"""Gradients through oxmx.nn layers (nn.value_and_grad) against mlx.nn, and layers in half
precision under training."""

import numpy as np
import pytest

import oxmx.core as ox
import oxmx.nn as nn
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import assert_close, assert_trees_close, both, copy_weights, mlx_core, mlx_nn, rand

pytestmark = needs_mlx

LAYERS = {
    "linear": (lambda m: m.Linear(6, 4), [(3, 6)]),
    "bilinear": (lambda m: m.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    "embedding": (lambda m: m.Embedding(9, 4), [np.array([[1, 3, 3], [8, 0, 1]], dtype=np.int32)]),
    "conv1d": (lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), [(2, 9, 3)]),
    "conv2d": (lambda m: m.Conv2d(2, 3, 3, padding=1, groups=1), [(1, 5, 5, 2)]),
    "conv_transpose1d": (lambda m: m.ConvTranspose1d(3, 2, 3, stride=2), [(2, 4, 3)]),
    "conv_transpose3d": (lambda m: m.ConvTranspose3d(2, 2, 2, stride=2), [(1, 2, 2, 2, 2)]),
    "layernorm": (lambda m: m.LayerNorm(6), [(3, 6)]),
    "rmsnorm": (lambda m: m.RMSNorm(6), [(3, 6)]),
    "groupnorm": (lambda m: m.GroupNorm(2, 6), [(2, 3, 6)]),
    "batchnorm": (lambda m: m.BatchNorm(6), [(5, 6)]),
    "instancenorm": (lambda m: m.InstanceNorm(6, affine=True), [(2, 4, 6)]),
    "prelu": (lambda m: m.PReLU(6), [(3, 6)]),
    "mha": (lambda m: m.MultiHeadAttention(8, 2, bias=True), [(2, 4, 8), (2, 5, 8), (2, 5, 8)]),
    "encoder_layer": (lambda m: m.TransformerEncoderLayer(8, 2, mlp_dims=12), [(2, 4, 8), None]),
    "rnn": (lambda m: m.RNN(3, 4), [(2, 5, 3)]),
    "gru": (lambda m: m.GRU(3, 4), [(2, 5, 3)]),
    "lstm": (lambda m: m.LSTM(3, 4), [(2, 5, 3)]),
    "maxpool_mlp": (lambda m: m.Sequential(m.Conv2d(2, 3, 2), m.MaxPool2d(2), m.ReLU()), [(1, 7, 7, 2)]),
    "avgpool_upsample": (lambda m: m.Sequential(m.Conv1d(2, 3, 1), m.AvgPool1d(2, padding=1),
                                                m.Upsample(2.0, mode="linear")), [(2, 6, 2)]),
    "quantized_bias": (lambda m: m.QuantizedLinear.from_linear(m.Linear(64, 4)), [(2, 64)]),
}


def head_output(y):
    return y[0] if isinstance(y, tuple) else y


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_gradients(case):
    make, inputs = LAYERS[case]
    mm, om = make(mlx_nn), make(nn)
    copy_weights(om, mm)
    args = []
    for i, s in enumerate(inputs):
        if s is None:
            args.append((None, None))
        elif isinstance(s, tuple):
            args.append(both(rand(s, seed=30 + i)))
        else:
            args.append(both(s))

    def run(core, nnmod, model, xs):
        out_shape = head_output(model(*xs)).shape
        r = rand(tuple(out_shape), seed=99)

        def loss(*a):
            return core.sum(head_output(model(*a)) * core.array(r))

        return nnmod.value_and_grad(model, loss)(*xs)

    ov, og = run(ox, nn, om, [a[0] for a in args])
    mv, mg = run(mlx_core, mlx_nn, mm, [a[1] for a in args])
    assert_close(ov, mv, rtol=1e-4, atol=1e-4)
    assert_trees_close(og, mg, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW"])
def test_half_precision_training(dtype, opt):
    import mlx.optimizers as mlx_optim
    import oxmx.optimizers as optim

    def make(m):
        return m.Sequential(m.Linear(8, 16), m.GELU(), m.LayerNorm(16), m.Linear(16, 4))

    mlx_core.random.seed(4)
    mm, om = make(mlx_nn), make(nn)
    mm.set_dtype(getattr(mlx_core, dtype))
    copy_weights(om, mm)
    oo, mo = getattr(optim, opt)(learning_rate=0.01), getattr(mlx_optim, opt)(learning_rate=0.01)
    x = rand((4, 8), seed=1, dtype=dtype)
    y = rand((4, 4), seed=2, dtype=dtype)
    for core, nnmod, model, o in ((ox, nn, om, oo), (mlx_core, mlx_nn, mm, mo)):
        xx = core.array(x).astype(getattr(core, dtype))
        yy = core.array(y).astype(getattr(core, dtype))
        vg = nnmod.value_and_grad(model, lambda a, b, model=model, core=core: core.mean(core.square(model(a) - b)))
        for _ in range(3):
            _, g = vg(xx, yy)
            o.update(model, g)
            core.eval(model.parameters(), o.state)
    # Adam-style updates are about +-lr wherever |gradient| is tiny, so one half-precision rounding
    # difference can move an element by up to 2 lr: compare element-wise loosely and on average
    # tightly.
    from mlx.utils import tree_flatten as mlx_flat
    from nn_helpers import to_np
    from oxmx.utils import tree_flatten

    tol = 2e-2 if dtype == "bfloat16" else 5e-3
    theirs = dict(mlx_flat(mm.parameters()))
    for k, v in tree_flatten(om.parameters()):
        a, b = to_np(v).astype(np.float32), to_np(theirs[k]).astype(np.float32)
        assert a.shape == b.shape
        # float16 Adam divides 0 by 0 where a gradient is 0 (eps underflows): MLX gets NaN there too
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        a, b = np.nan_to_num(a), np.nan_to_num(b)
        assert np.abs(a - b).max() <= 2 * 3 * 0.01 + tol, k
        assert np.abs(a - b).mean() <= tol * (np.abs(b).mean() + 1e-3), k

    assert all(v.dtype == getattr(ox, dtype) for _, v in tree_flatten(om.parameters()))


@pytest.mark.parametrize("norm", ["LayerNorm", "RMSNorm"])
def test_compiled_gradient_through_norm_layers(norm):
    """mx.compile over nn.value_and_grad of a model with a norm layer: same as eager, as in MLX.
    oxmx.core panics (compile/replay.rs) on the gradient of mx.fast.layer_norm / rms_norm with
    respect to its input under compile: reported gap, an xfail until fixed."""
    model = nn.Sequential(nn.Linear(4, 6), getattr(nn, norm)(6), nn.Linear(6, 2))
    x, y = ox.array(rand((3, 4), seed=1)), ox.array(rand((3, 2), seed=2))

    def step(params, x, y):
        model.update(params)
        return nn.value_and_grad(model, lambda a, b: ox.mean(ox.square(model(a) - b)))(x, y)

    params = model.trainable_parameters()
    ev, eg = step(params, x, y)
    try:
        cv, cg = ox.compile(step)(params, x, y)
        ox.eval(cv, cg)
    except BaseException as e:  # a Rust panic arrives as pyo3's PanicException (a BaseException)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        pytest.xfail("oxmx.core: compiled gradient through mx.fast.{} panics: {}".format(
            "layer_norm" if norm == "LayerNorm" else "rms_norm", str(e).splitlines()[0] if str(e) else type(e)))
    model.update(params)
    assert_close(cv, ev)
    from oxmx.utils import tree_flatten

    for (k1, a), (k2, b) in zip(tree_flatten(cg), tree_flatten(eg)):
        assert k1 == k2
        assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_compiled_layers_match_eager(case):
    """mx.compile of each layer's forward pass and of nn.value_and_grad through it (parameters
    passed in functionally) gives the eager results. A panic in oxmx.core is an xfail."""
    from nn_helpers import to_np
    from oxmx.utils import tree_flatten

    make, inputs = LAYERS[case]
    m = make(nn)
    args = []
    for i, s in enumerate(inputs):
        if s is None:
            args.append(None)
        elif isinstance(s, tuple):
            args.append(ox.array(rand(s, seed=30 + i)))
        else:
            args.append(ox.array(s))

    def fwd(params, *a):
        m.update(params)
        return head_output(m(*a))

    def vg(params, *a):
        m.update(params)
        return nn.value_and_grad(m, lambda *b: ox.sum(head_output(m(*b))))(*a)

    params = m.trainable_parameters()
    for f in (fwd, vg):
        eager = f(params, *args)
        try:
            comp = ox.compile(f)(params, *args)
            ox.eval(comp)
        except BaseException as e:  # pyo3's PanicException is a BaseException
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            pytest.xfail("oxmx.core compile of {} ({}): {}".format(case, f.__name__, str(e).splitlines()[0]))
        finally:
            m.update(params)
        for (k1, a), (k2, b) in zip(tree_flatten(comp), tree_flatten(eager)):
            assert k1 == k2
            np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-4, atol=1e-5)
