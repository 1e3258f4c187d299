"""oxmx.nn layers against mlx.nn: the same layer, the same weights, the same inputs."""

import numpy as np
import pytest

import oxmx.core as ox
import oxmx.nn as nn
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import FLOATS, assert_close, both, copy_weights, mlx_core, mlx_nn, rand

pytestmark = needs_mlx

ACTIVATION_FUNCS = [
    "sigmoid", "relu", "relu2", "relu6", "leaky_relu", "log_softmax", "elu", "celu", "selu", "softmax", "softmin",
    "softplus", "softsign", "softshrink", "silu", "log_sigmoid", "gelu", "gelu_approx", "gelu_fast_approx", "glu",
    "step", "mish", "hardswish", "hard_tanh", "hard_shrink", "tanh",
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ACTIVATION_FUNCS)
def test_activation_functions(name, dtype):
    o, m = both(rand((3, 8), seed=1, scale=3.0, dtype=dtype), dtype)
    assert_close(getattr(nn, name)(o), getattr(mlx_nn, name)(m), dtype)


ACTIVATION_MODULES = [
    ("Sigmoid", ()), ("ReLU", ()), ("ReLU2", ()), ("ReLU6", ()), ("LeakyReLU", (0.2,)), ("LogSoftmax", ()),
    ("ELU", (0.5,)), ("CELU", (1.5,)), ("SELU", ()), ("Softmax", ()), ("Softmin", ()), ("Softplus", ()),
    ("Softsign", ()), ("Softshrink", (0.3,)), ("SiLU", ()), ("LogSigmoid", ()), ("GELU", ()), ("GELU", ("precise",)),
    ("GELU", ("tanh",)), ("GELU", ("fast",)), ("GLU", (0,)), ("Step", (0.5,)), ("Mish", ()), ("Hardswish", ()),
    ("HardTanh", ()), ("HardShrink", (0.7,)), ("Tanh", ()), ("PReLU", (1, 0.1)),
]


@pytest.mark.parametrize("name,args", ACTIVATION_MODULES, ids=lambda v: str(v))
def test_activation_modules(name, args):
    o, m = both(rand((4, 6), seed=2, scale=3.0))
    om, mm = getattr(nn, name)(*args), getattr(mlx_nn, name)(*args)
    copy_weights(om, mm)
    assert_close(om(o), mm(m))
    assert repr(om) == repr(mm)


def test_prelu_per_channel_and_extra_args():
    om, mm = nn.PReLU(5, 0.3), mlx_nn.PReLU(5, 0.3)
    o, m = both(rand((2, 5), seed=3))
    assert_close(om(o), mm(m))
    o, m = both(rand((2, 5), seed=3, scale=4))
    assert_close(nn.hard_tanh(o, -2.0, 0.5), mlx_nn.hard_tanh(m, -2.0, 0.5))
    assert_close(nn.leaky_relu(o, 0.3), mlx_nn.leaky_relu(m, 0.3))
    assert_close(nn.log_softmax(o, axis=0), mlx_nn.log_softmax(m, axis=0))
    with pytest.raises(ValueError):
        nn.GELU("nope")


def run_layer(make, inputs, dtype="float32", call=None, seed=0, check_repr=True, **tol):
    """Builds ``make(mod)`` for both, copies weights, casts to ``dtype``, compares the call."""
    mm = make(mlx_nn)
    om = make(nn)
    if dtype != "float32":
        mm.set_dtype(getattr(mlx_core, dtype))
    copy_weights(om, mm)
    xs = []
    for i, s in enumerate(inputs):
        if isinstance(s, tuple):
            xs.append(both(rand(s, seed=seed + i, dtype=dtype), dtype))
        elif isinstance(s, np.ndarray):
            xs.append(both(s, dtype))
        else:
            xs.append((s, s))
    call = call or (lambda mod, *a: mod(*a))
    ours = call(om, *[x[0] for x in xs])
    theirs = call(mm, *[x[1] for x in xs])
    if isinstance(theirs, (tuple, list)):
        for a, b in zip(ours, theirs):
            assert_close(a, b, dtype, **tol)
    else:
        assert_close(ours, theirs, dtype, **tol)
    if check_repr:
        assert repr(om) == repr(mm)
    return om, mm


@pytest.mark.parametrize("dtype", FLOATS)
def test_linear(dtype):
    run_layer(lambda m: m.Linear(8, 5), [(3, 8)], dtype)
    run_layer(lambda m: m.Linear(8, 5, bias=False), [(2, 3, 8)], dtype)


def test_bilinear_identity():
    run_layer(lambda m: m.Bilinear(4, 6, 3), [(5, 4), (5, 6)])
    run_layer(lambda m: m.Bilinear(4, 6, 3, bias=False), [(2, 5, 4), (2, 5, 6)])
    x = ox.ones((2, 3))
    assert nn.Identity(1, a=2)(x) is x


def test_embedding():
    ids = np.array([[0, 3, 9], [2, 2, 1]], dtype=np.int32)
    run_layer(lambda m: m.Embedding(10, 4), [ids])
    run_layer(lambda m: m.Embedding(10, 4), [(2, 4)], call=lambda mod, x: mod.as_linear(x))


@pytest.mark.parametrize("dtype", FLOATS)
def test_conv(dtype):
    run_layer(lambda m: m.Conv1d(4, 6, 3), [(2, 10, 4)], dtype)
    run_layer(lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=False), [(2, 11, 4)], dtype)
    run_layer(lambda m: m.Conv2d(3, 4, 3), [(2, 7, 6, 3)], dtype)
    run_layer(lambda m: m.Conv2d(4, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=1, groups=2), [(1, 8, 7, 4)],
              dtype)
    run_layer(lambda m: m.Conv3d(2, 3, 2), [(1, 4, 5, 4, 2)], dtype)
    run_layer(lambda m: m.Conv3d(2, 3, (2, 3, 1), stride=2, padding=1), [(1, 5, 5, 4, 2)], dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_conv_transpose(dtype):
    run_layer(lambda m: m.ConvTranspose1d(4, 3, 3), [(2, 6, 4)], dtype)
    run_layer(lambda m: m.ConvTranspose1d(4, 3, 3, stride=2, padding=1, output_padding=1), [(2, 6, 4)], dtype)
    run_layer(lambda m: m.ConvTranspose2d(3, 2, (3, 2), stride=(2, 1), padding=(1, 0)), [(1, 5, 4, 3)], dtype)
    run_layer(lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, dilation=2, output_padding=1), [(1, 4, 4, 3)], dtype)
    run_layer(lambda m: m.ConvTranspose3d(2, 3, 2), [(1, 3, 4, 3, 2)], dtype)
    run_layer(lambda m: m.ConvTranspose3d(2, 3, (3, 2, 2), stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1),
                                          output_padding=(1, 0, 1)), [(1, 3, 4, 3, 2)], dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_norms(dtype):
    run_layer(lambda m: m.LayerNorm(8), [(2, 3, 8)], dtype)
    run_layer(lambda m: m.LayerNorm(8, eps=1e-3, affine=False), [(2, 8)], dtype)
    run_layer(lambda m: m.LayerNorm(8, bias=False), [(2, 8)], dtype)
    run_layer(lambda m: m.RMSNorm(8), [(2, 3, 8)], dtype)
    run_layer(lambda m: m.GroupNorm(2, 8), [(2, 4, 8)], dtype)
    run_layer(lambda m: m.GroupNorm(4, 8, affine=False, pytorch_compatible=True), [(2, 3, 3, 8)], dtype)
    run_layer(lambda m: m.InstanceNorm(6), [(2, 4, 6)], dtype)
    run_layer(lambda m: m.InstanceNorm(6, affine=True), [(2, 3, 4, 6)], dtype)


def test_batchnorm_train_and_eval():
    for shape in [(6, 4), (3, 5, 4), (2, 3, 3, 4)]:
        om, mm = nn.BatchNorm(4), mlx_nn.BatchNorm(4)
        for step in range(3):
            o, m = both(rand(shape, seed=step, scale=2.0) + step)
            assert_close(om(o), mm(m))
        assert_close(om.running_mean, mm.running_mean)
        assert_close(om.running_var, mm.running_var)
        om.eval(), mm.eval()
        o, m = both(rand(shape, seed=9))
        assert_close(om(o), mm(m))
        assert repr(om) == repr(mm)
    run_layer(lambda m: m.BatchNorm(4, affine=False, track_running_stats=False), [(5, 4)])
    bn = nn.BatchNorm(4)
    assert sorted(bn.trainable_parameters()) == ["bias", "weight"]
    bn.unfreeze()
    assert sorted(bn.trainable_parameters()) == ["bias", "weight"]
    assert sorted(bn.parameters()) == ["bias", "running_mean", "running_var", "weight"]
    with pytest.raises(ValueError):
        bn(ox.zeros((4,)))


def test_dropout():
    x = ox.ones((200, 50))
    d = nn.Dropout(0.25)
    y = np.array(d(x))
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    d.eval()
    assert np.array_equal(np.array(d(x)), np.ones((200, 50)))
    assert repr(d) == repr(mlx_nn.Dropout(0.25))
    with pytest.raises(ValueError):
        nn.Dropout(1.0)
    y = np.array(nn.Dropout2d(0.5)(ox.ones((4, 3, 3, 16))))
    # whole channels: each (batch, channel) is all zero or all kept
    per_channel = (y != 0).reshape(4, 9, 16).mean(axis=1)
    assert set(np.unique(per_channel)) <= {0.0, 1.0}
    y = np.array(nn.Dropout3d(0.5)(ox.ones((2, 2, 3, 3, 16))))
    per_channel = (y != 0).reshape(2, 18, 16).mean(axis=1)
    assert set(np.unique(per_channel)) <= {0.0, 1.0}
    with pytest.raises(ValueError):
        nn.Dropout2d()(ox.ones((2, 3)))
    assert nn.Dropout(0.0)(x) is x


def test_sequential():
    run_layer(lambda m: m.Sequential(m.Linear(4, 8), m.ReLU(), m.Linear(8, 2), m.Softmax()), [(3, 4)])


@pytest.mark.parametrize("dtype", FLOATS)
def test_multi_head_attention(dtype):
    run_layer(lambda m: m.MultiHeadAttention(8, 2), [(2, 5, 8), (2, 6, 8), (2, 6, 8)], dtype)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(5)
    mmask = mlx_nn.MultiHeadAttention.create_additive_causal_mask(5)
    np.testing.assert_array_equal(np.array(mask), np.array(mmask))
    np.testing.assert_array_equal(np.array(nn.MultiHeadAttention.create_additive_causal_mask(3, ox.float16)),
                                  np.array(mlx_nn.MultiHeadAttention.create_additive_causal_mask(3, mlx_core.float16)))
    run_layer(lambda m: m.MultiHeadAttention(8, 4, query_input_dims=6, key_input_dims=5, value_input_dims=3,
                                             value_dims=12, value_output_dims=7, bias=True),
              [(2, 5, 6), (2, 5, 5), (2, 5, 3), np.array(mmask)], dtype)
    with pytest.raises(ValueError):
        nn.MultiHeadAttention(7, 2)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer(norm_first):
    mask = np.array(mlx_nn.MultiHeadAttention.create_additive_causal_mask(4))

    def call(mod, src, tgt):
        if isinstance(mod, nn.Module):
            mk = ox.array(mask)
        else:
            mk = mlx_core.array(mask)
        return mod(src, tgt, None, mk, None)

    run_layer(lambda m: m.Transformer(dims=8, num_heads=2, num_encoder_layers=2, num_decoder_layers=1, mlp_dims=16,
                                      norm_first=norm_first), [(2, 5, 8), (2, 4, 8)], call=call)
    run_layer(lambda m: m.TransformerEncoder(2, 8, 2, activation=m.gelu, norm_first=norm_first), [(2, 5, 8)],
              call=lambda mod, x: mod(x, None))
    run_layer(lambda m: m.TransformerEncoderLayer(8, 2, activation=m.GELU()), [(2, 5, 8)],
              call=lambda mod, x: mod(x, None))


def test_rope_alibi_sinusoidal():
    for trad in (False, True):
        run_layer(lambda m: m.RoPE(8, traditional=trad), [(2, 3, 5, 8)])
        run_layer(lambda m: m.RoPE(4, traditional=trad, base=500, scale=0.5), [(2, 5, 8)],
                  call=lambda mod, x: mod(x, offset=3))
    run_layer(lambda m: m.ALiBi(), [(2, 4, 5, 5)])
    run_layer(lambda m: m.ALiBi(), [(1, 8, 3, 6)], call=lambda mod, x: mod(x, offset=3))
    pos = np.arange(7, dtype=np.float32)
    run_layer(lambda m: m.SinusoidalPositionalEncoding(16), [pos])
    run_layer(lambda m: m.SinusoidalPositionalEncoding(8, min_freq=0.01, max_freq=2, scale=1.0, cos_first=True,
                                                       full_turns=True), [pos])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pooling(dtype):
    for name in ("MaxPool", "AvgPool"):
        run_layer(lambda m: getattr(m, name + "1d")(3), [(2, 10, 3)], dtype)
        run_layer(lambda m: getattr(m, name + "1d")(3, stride=2, padding=1), [(2, 9, 3)], dtype)
        run_layer(lambda m: getattr(m, name + "2d")(2), [(2, 6, 5, 3)], dtype)
        run_layer(lambda m: getattr(m, name + "2d")((3, 2), stride=(2, 1), padding=(1, 1)), [(1, 7, 5, 2)], dtype)
        run_layer(lambda m: getattr(m, name + "3d")(2, stride=1), [(1, 4, 3, 4, 2)], dtype)


UPSAMPLES = [
    ((2,), "nearest", False), ((1.5,), "nearest", False), ((0.5,), "nearest", False), ((2.5,), "nearest", False),
    ((2,), "linear", False), ((2,), "linear", True), ((1.5,), "linear", False), ((0.7,), "linear", False),
    ((3,), "cubic", False), ((2,), "cubic", True), ((0.5,), "cubic", False),
    ((2, 3), "nearest", False), ((2, 1.5), "linear", False), ((2, 2), "linear", True), ((2, 2), "cubic", False),
    ((1.5, 2), "cubic", True),
]


@pytest.mark.parametrize("scale,mode,ac", UPSAMPLES, ids=lambda v: str(v))
def test_upsample(scale, mode, ac):
    shape = (2, 5, 3) if len(scale) == 1 else (1, 4, 5, 2)
    sf = scale[0] if len(scale) == 1 else scale
    run_layer(lambda m: m.Upsample(sf, mode=mode, align_corners=ac), [shape])


def test_upsample_dtypes_and_errors():
    for mode in ("nearest", "linear", "cubic"):
        run_layer(lambda m: m.Upsample(2, mode=mode), [(1, 3, 3, 2)], "bfloat16")
    with pytest.raises(ValueError):
        nn.Upsample(2, mode="area")
    with pytest.raises(ValueError):
        nn.Upsample(2, antialias=True)
    with pytest.raises(ValueError):
        nn.Upsample((2, 2))(ox.zeros((1, 3, 1)))
    assert repr(nn.Upsample(2, "linear", antialias=True)) == repr(mlx_nn.Upsample(2, "linear", antialias=True))


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_recurrent(cls):
    rep = cls != "RNN"  # an RNN's repr shows its nonlinearity function object
    run_layer(lambda m: getattr(m, cls)(3, 5), [(2, 4, 3)], check_repr=rep)
    run_layer(lambda m: getattr(m, cls)(3, 5, bias=False), [(4, 3)], check_repr=rep)
    if cls == "LSTM":
        run_layer(lambda m: m.LSTM(3, 5), [(2, 4, 3), (2, 5), (2, 5)])
    else:
        run_layer(lambda m: getattr(m, cls)(3, 5), [(2, 4, 3), (2, 5)], check_repr=rep)
    if cls == "RNN":
        run_layer(lambda m: m.RNN(3, 5, nonlinearity=m.relu), [(2, 4, 3)], check_repr=False)
        with pytest.raises(ValueError):
            nn.RNN(3, 5, nonlinearity=3)


@pytest.mark.parametrize("bits,group_size", [(4, 64), (8, 32), (2, 64)])
def test_quantize_model(bits, group_size):
    def make(m):
        return m.Sequential(m.Embedding(32, 128), m.Linear(128, 64), m.ReLU(), m.Linear(64, 64, bias=False))

    mm, om = make(mlx_nn), make(nn)
    copy_weights(om, mm)
    mlx_nn.quantize(mm, group_size, bits)
    nn.quantize(om, group_size, bits)
    assert repr(om) == repr(mm)
    ids = np.array([[1, 5, 31]], dtype=np.int32)
    o, m = both(ids)
    assert_close(om(o), mm(m), rtol=1e-4, atol=1e-4)
    assert_close(om.layers[0].as_linear(om.layers[0](o)), mm.layers[0].as_linear(mm.layers[0](m)), rtol=1e-4,
                 atol=1e-4)
    from nn_helpers import assert_trees_close

    assert_trees_close(om.parameters(), mm.parameters(), rtol=1e-5, atol=1e-6)
    assert_trees_close(om.trainable_parameters(), mm.trainable_parameters())


def test_quantize_predicate():
    def make(m):
        return m.Sequential(m.Linear(64, 64), m.Linear(64, 32), m.Linear(32, 8), m.Embedding(8, 64))

    def pred(path, module):
        if path == "layers.0":
            return {"group_size": 32, "bits": 8}
        if path == "layers.2":
            return False
        return hasattr(module, "to_quantized")

    mm, om = make(mlx_nn), make(nn)
    copy_weights(om, mm)
    mlx_nn.quantize(mm, class_predicate=pred)
    nn.quantize(om, class_predicate=pred)
    assert repr(om) == repr(mm)
    o, m = both(rand((3, 64), seed=4))
    assert_close(om.layers[1](om.layers[0](o)), mm.layers[1](mm.layers[0](m)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        nn.quantize(nn.Sequential(nn.ReLU()), class_predicate=lambda p, m: True)
    with pytest.raises(ValueError):
        nn.quantize(nn.Sequential(nn.Linear(64, 64)), class_predicate=lambda p, m: "yes")
    for mod in (nn, mlx_nn):  # a fresh quantized layer is all frozen; from_linear keeps the bias trainable
        ql = mod.QuantizedLinear(64, 16)
        assert sorted(ql.trainable_parameters()) == []
        ql.unfreeze()
        assert sorted(ql.trainable_parameters()) == ["bias", "biases", "scales", "weight"]
        assert sorted(mod.QuantizedLinear.from_linear(mod.Linear(64, 8)).trainable_parameters()) == ["bias"]


@pytest.mark.parametrize("mode", ["affine", "mxfp4", "mxfp8", "nvfp4"])
def test_quantized_modes(mode):
    mm, om = mlx_nn.Sequential(mlx_nn.Linear(64, 8), mlx_nn.Embedding(10, 64)), nn.Sequential(nn.Linear(64, 8),
                                                                                              nn.Embedding(10, 64))
    copy_weights(om, mm)
    mlx_nn.quantize(mm, mode=mode)
    nn.quantize(om, mode=mode)
    assert repr(om) == repr(mm)
    o, m = both(rand((3, 64), seed=5))
    assert_close(om.layers[0](o), mm.layers[0](m), rtol=1e-4, atol=1e-5)
    oi, mi = both(np.array([1, 2, 9], dtype=np.int32))
    assert_close(om.layers[1](oi), mm.layers[1](mi), rtol=1e-4, atol=1e-5)
    assert_close(om.layers[1].as_linear(o), mm.layers[1].as_linear(m), rtol=1e-4, atol=1e-4)
    assert sorted(om.layers[0]) == sorted(mm.layers[0])


def test_pool_kernel_larger_than_input():
    for name in ("MaxPool1d", "AvgPool1d"):
        o, m = getattr(nn, name)(5)(ox.zeros((1, 3, 2))), getattr(mlx_nn, name)(5)(mlx_core.zeros((1, 3, 2)))
        assert o.shape == m.shape == (1, 0, 2)


def test_multi_head_attention_mask_kinds():
    causal = np.tril(np.ones((4, 4), dtype=bool))
    for mask in ("causal", causal, np.where(causal, 0, -1e9).astype(np.float32)):
        if isinstance(mask, str):
            run_layer(lambda m: m.MultiHeadAttention(8, 2), [(2, 4, 8), (2, 4, 8), (2, 4, 8)],
                      call=lambda mod, q, k, v: mod(q, k, v, mask="causal"))
        else:
            run_layer(lambda m: m.MultiHeadAttention(8, 2), [(2, 4, 8), (2, 4, 8), (2, 4, 8), mask])


@pytest.mark.parametrize("shape,scale,mode", [
    ((1, 8, 3), 0.5, "linear"), ((2, 9, 2), 0.5, "linear"), ((1, 8, 2), 0.5, "cubic"), ((1, 7, 1), 0.7, "cubic"),
    ((1, 6, 2), 2, "cubic"), ((1, 6, 2), 2, "linear"), ((1, 9, 10, 2), (0.5, 0.3), "linear"),
    ((1, 9, 10, 2), (0.6, 2.0), "cubic"),
], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_upsample_antialias(shape, scale, mode, dtype):
    run_layer(lambda m: m.Upsample(scale, mode=mode, antialias=True), [shape], dtype)
    with pytest.raises(ValueError):
        nn.Upsample(scale, mode=mode, align_corners=True, antialias=True)
