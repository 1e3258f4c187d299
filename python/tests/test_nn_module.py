"""nn.Module semantics against mlx.nn.Module, and nn.value_and_grad."""

import numpy as np
import pytest

import oxmx.core as ox
import oxmx.nn as nn
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import assert_close, assert_trees_close, both, copy_weights, mlx_core, mlx_nn, rand
from oxmx.utils import tree_flatten

pytestmark = needs_mlx


def mlx_flat(tree, is_leaf=None):
    from mlx.utils import tree_flatten as f

    return f(tree, is_leaf=is_leaf)


def make_net(m):
    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.embed = m.Embedding(10, 8)
            self.blocks = [m.Sequential(m.Linear(8, 8), m.ReLU()), m.LayerNorm(8)]
            self.heads = {"a": m.Linear(8, 3), "b": m.Linear(8, 2, bias=False)}
            self.scale = (m.__name__ and None) or 2.0
            self._hidden = 5

        def __call__(self, ids):
            x = self.embed(ids)
            for b in self.blocks:
                x = b(x)
            return self.heads["a"](x).sum(-1) * self.scale + self.heads["b"](x).sum(-1)

    return Net()


def keys(tree, flat):
    return [k for k, _ in flat(tree)]


def test_trees_and_names_match_mlx():
    om, mm = make_net(nn), make_net(mlx_nn)
    copy_weights(om, mm)
    assert keys(om.parameters(), tree_flatten) == keys(mm.parameters(), mlx_flat)
    assert keys(om.trainable_parameters(), tree_flatten) == keys(mm.trainable_parameters(), mlx_flat)
    assert [k for k, _ in om.named_modules()] == [k for k, _ in mm.named_modules()]
    assert [type(v).__name__ for v in om.modules()] == [type(v).__name__ for v in mm.modules()]
    assert keys(om.children(), lambda t: tree_flatten(t, is_leaf=nn.Module.is_module)) == keys(
        mm.children(), lambda t: mlx_flat(t, is_leaf=mlx_nn.Module.is_module))
    ol = tree_flatten(om.leaf_modules(), is_leaf=nn.Module.is_module)
    ml = mlx_flat(mm.leaf_modules(), is_leaf=mlx_nn.Module.is_module)
    assert [k for k, _ in ol] == [k for k, _ in ml]
    assert repr(om).replace("Net", "") == repr(mm).replace("Net", "")
    assert om.scale == 2.0 and "scale" not in om and om._hidden == 5
    assert om.state is om
    o, m = both(np.array([[1, 2, 3]], dtype=np.int32))
    assert_close(om(o), mm(m))


def test_attribute_semantics():
    lin = nn.Linear(2, 3)
    assert "weight" in lin and lin.weight is lin["weight"]
    lin.extra = ox.zeros((2,))
    assert "extra" in lin
    del lin.extra
    assert "extra" not in lin
    with pytest.raises(AttributeError):
        lin.nothing
    lin.flag = None
    assert lin.flag is None and "flag" not in lin
    assert not hasattr(lin, "missing")
    for mod in (nn, mlx_nn):  # setting an entry to a non-array removes the entry, as MLX
        lin = mod.Linear(2, 2)
        lin.bias = None
        assert "bias" not in lin and lin.bias is None
        lin.bias = (ox if mod is nn else mlx_core).zeros((2,))
        assert "bias" in lin


def test_freeze_unfreeze():
    om, mm = make_net(nn), make_net(mlx_nn)
    for mod in (om, mm):
        mod.freeze()
    assert keys(om.trainable_parameters(), tree_flatten) == keys(mm.trainable_parameters(), mlx_flat) == []
    for mod in (om, mm):
        mod.unfreeze(keys=["bias"])
        mod.blocks[1].unfreeze()
    assert keys(om.trainable_parameters(), tree_flatten) == keys(mm.trainable_parameters(), mlx_flat)
    om, mm = make_net(nn), make_net(mlx_nn)
    for mod in (om, mm):
        mod.freeze(keys="weight")
        mod.heads["a"].freeze(recurse=False)
    assert keys(om.trainable_parameters(), tree_flatten) == keys(mm.trainable_parameters(), mlx_flat)
    for mod in (om, mm):
        mod.unfreeze(recurse=False)
        mod.embed.unfreeze(keys="weight")
    assert keys(om.trainable_parameters(), tree_flatten) == keys(mm.trainable_parameters(), mlx_flat)
    with pytest.raises(KeyError):
        nn.Linear(2, 2).freeze(keys=["nope"], strict=True)
    with pytest.raises(KeyError):
        nn.Linear(2, 2).unfreeze(keys="nope", strict=True)
    assert nn.Linear(2, 2).freeze(keys=["nope"]) is not None


def test_train_eval():
    om = make_net(nn)
    assert om.training and om.blocks[0].layers[0].training
    om.eval()
    assert not om.training and not om.blocks[0].layers[1].training and not om.heads["b"].training
    om.train()
    assert om.training and om.heads["a"].training


def test_update_and_errors():
    om, mm = make_net(nn), make_net(mlx_nn)
    new = {"heads": {"a": {"bias": ox.ones((3,))}}, "blocks": [{"layers": [{"weight": ox.zeros((8, 8))}]}]}
    om.update(new)
    assert np.array_equal(np.array(om.heads["a"].bias), np.ones(3))
    assert np.array_equal(np.array(om.blocks[0].layers[0].weight), np.zeros((8, 8)))
    bad = [{"nope": ox.ones((1,))}, {"embed": {"weight": 3}}, {"heads": 4}]
    for b in bad:
        with pytest.raises(ValueError):
            om.update(b)
        mb = {"nope": mlx_core.ones((1,))} if "nope" in b else b
        with pytest.raises(ValueError):
            mm.update(mb)
    om.update({"nope": ox.ones((1,))}, strict=False)
    assert "nope" not in om
    # update_modules
    om.update_modules({"heads": {"b": nn.Identity()}})
    assert isinstance(om.heads["b"], nn.Identity)
    with pytest.raises(ValueError):
        om.update_modules({"nope": nn.Identity()})
    with pytest.raises(ValueError):
        om.update_modules({"embed": 3})
    om.update_modules({"nope": nn.Identity()}, strict=False)


def test_apply_set_dtype_filter_and_map():
    om, mm = make_net(nn), make_net(mlx_nn)
    copy_weights(om, mm)
    om.apply(lambda x: x * 2)
    mm.apply(lambda x: x * 2)
    assert_trees_close(om.parameters(), mm.parameters())
    om.set_dtype(ox.bfloat16)
    mm.set_dtype(mlx_core.bfloat16)
    assert all(v.dtype == ox.bfloat16 for _, v in tree_flatten(om.parameters()))
    om.set_dtype(ox.float32, predicate=lambda d: d == ox.bfloat16)
    assert all(v.dtype == ox.float32 for _, v in tree_flatten(om.parameters()))
    got = om.filter_and_map(lambda m, k, v: k == "embed" or k == "weight", map_fn=lambda x: x.shape)
    assert got == {"embed": {"weight": (10, 8)}}
    om.apply_to_modules(lambda name, mod: setattr(mod, "tag", name))
    assert om.blocks[0].layers[0].tag == "blocks.0.layers.0" and om.tag == ""


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_save_load_round_trip(tmp_path, ext):
    om = make_net(nn)
    path = str(tmp_path / ("w." + ext))
    om.save_weights(path)
    other = make_net(nn)
    other.load_weights(path)
    for (k1, v1), (k2, v2) in zip(tree_flatten(om.parameters()), tree_flatten(other.parameters())):
        assert k1 == k2
        np.testing.assert_array_equal(np.array(v1), np.array(v2))
    # the oracle reads our file
    mm = make_net(mlx_nn)
    mm.load_weights(path)
    assert_trees_close(om.parameters(), mm.parameters(), rtol=0, atol=0)
    # and we read the oracle's
    mpath = str(tmp_path / ("m." + ext))
    mm.save_weights(mpath)
    other.load_weights(mpath)
    assert_trees_close(other.parameters(), mm.parameters(), rtol=0, atol=0)


def test_load_weights_errors(tmp_path):
    lin, mlin = nn.Linear(3, 2), mlx_nn.Linear(3, 2)
    cases = [
        ([("weight", np.zeros((2, 3)))], "Missing 1 parameters"),
        ([("weight", np.zeros((2, 3))), ("bias", np.zeros(2)), ("extra", np.zeros(1))], "not in model"),
        ([("weight", np.zeros((3, 3))), ("bias", np.zeros(2))], "Expected shape"),
    ]
    for ws, msg in cases:
        with pytest.raises(ValueError, match=msg) as ours:
            lin.load_weights([(k, ox.array(v.astype(np.float32))) for k, v in ws])
        with pytest.raises(ValueError) as theirs:
            mlin.load_weights([(k, mlx_core.array(v.astype(np.float32))) for k, v in ws])
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError):
        lin.load_weights([("weight", 3), ("bias", ox.zeros((2,)))])
    # non-strict loads what it can
    lin.load_weights([("bias", ox.ones((2,)))], strict=False)
    assert np.array_equal(np.array(lin.bias), np.ones(2))
    with pytest.raises(ValueError, match="Unsupported"):
        lin.save_weights(str(tmp_path / "w.bin"))


def test_value_and_grad_matches_mlx():
    om, mm = make_net(nn), make_net(mlx_nn)
    copy_weights(om, mm)
    om.embed.freeze()
    mm.embed.freeze()
    o, m = both(np.array([[1, 2, 3], [4, 5, 9]], dtype=np.int32))
    ot, mt = both(rand((2, 3), seed=5))

    def loss(mod, core):
        def f(ids, target):
            return core.mean(core.square(mod(ids) - target))

        return f

    ov, og = nn.value_and_grad(om, loss(om, ox))(o, ot)
    mv, mg = mlx_nn.value_and_grad(mm, loss(mm, mlx_core))(m, mt)
    assert_close(ov, mv)
    assert_trees_close(og, mg, rtol=1e-4, atol=1e-5)
    assert "embed" not in og or og["embed"] == {}

    # keyword arguments pass through, as MLX
    ov2, _ = nn.value_and_grad(om, lambda ids, target=None: loss(om, ox)(ids, target))(o, target=ot)
    assert_close(ov2, mv)


def test_checkpoint_same_values():
    om = nn.Linear(4, 3)
    x = ox.array(rand((2, 4)))
    f = nn.checkpoint(om)
    assert_close(f(x), om(x))
    enc = nn.TransformerEncoder(1, 8, 2, checkpoint=True)
    ref = nn.TransformerEncoder(1, 8, 2)
    ref.update(enc.parameters())
    y = ox.array(rand((1, 3, 8)))
    assert_close(enc(y, None), ref(y, None))


def test_value_and_grad_model_as_argument():
    """MLX's examples pass the model itself (a dict subclass) as the loss function's argument."""
    om, mm = nn.Linear(4, 2), mlx_nn.Linear(4, 2)
    copy_weights(om, mm)
    o, m = both(rand((3, 4), seed=1))

    def loss(model, x):
        return (model(x) ** 2).mean()

    ov, og = nn.value_and_grad(om, loss)(om, o)
    mv, mg = mlx_nn.value_and_grad(mm, loss)(mm, m)
    assert_close(ov, mv)
    assert_trees_close(og, mg)


def test_average_gradients(monkeypatch):
    grads = {"a": ox.ones((3, 4)), "b": [ox.arange(5).astype(ox.float32), ox.ones((2,), dtype=ox.float16)]}
    # one process: unchanged
    if not hasattr(ox, "distributed"):
        assert nn.average_gradients(grads) is grads

    class Group:
        def size(self):
            return 4

    class FakeDistributed:
        calls = 0

        @staticmethod
        def init():
            return Group()

        @staticmethod
        def all_sum(x, group=None, stream=None):
            FakeDistributed.calls += 1
            return x * 4 + 8  # every rank holds x + 2 but this one

    monkeypatch.setattr(ox, "distributed", FakeDistributed, raising=False)
    for size, calls in ((0, 3), (1 << 20, 2), (24, 3)):
        FakeDistributed.calls = 0
        out = nn.average_gradients(grads, all_reduce_size=size)
        assert FakeDistributed.calls == calls
        for (k, v), (_, g) in zip(tree_flatten(out), tree_flatten(grads)):
            assert v.shape == g.shape and v.dtype == g.dtype
            np.testing.assert_allclose(np.array(v.astype(ox.float32)), np.array(g.astype(ox.float32)) + 2)


def test_update_list_bounds_messages():
    for mod, core in ((nn, ox), (mlx_nn, mlx_core)):
        s = mod.Sequential(mod.Linear(2, 2), mod.Linear(2, 2))
        with pytest.raises(ValueError, match="List index 2 is out of bounds for destination of length 2"):
            s.update({"layers": [{}, {}, {"weight": core.zeros((2, 2))}]})
        with pytest.raises(ValueError, match="List index 2 is out of bounds"):
            s.update_modules({"layers": [{}, {}, mod.ReLU()]})
        s.update({"layers": [{}, {}, {"weight": core.zeros((2, 2))}]}, strict=False)
        assert type(s.update_modules({"layers": [mod.ReLU()]}).layers[0]).__name__ == "ReLU"


def test_bfloat16_weights_and_numpy_npz(tmp_path):
    def make(m):
        return m.Sequential(m.Linear(4, 3), m.ReLU(), m.Embedding(5, 4))

    om, mm = make(nn), make(mlx_nn)
    om.set_dtype(ox.bfloat16)
    mm.set_dtype(mlx_core.bfloat16)
    path = str(tmp_path / "bf.safetensors")
    om.save_weights(path)
    mm.load_weights(path)
    assert_trees_close(om.parameters(), mm.parameters(), rtol=0, atol=0)
    # weights written by NumPy (e.g. converted from another framework)
    from nn_helpers import to_np

    npz = str(tmp_path / "np.npz")
    np.savez(npz, **{k: to_np(v) for k, v in tree_flatten(om.parameters())})
    other = make(nn)
    other.load_weights(npz)
    for (k, a), (_, b) in zip(tree_flatten(other.parameters()), tree_flatten(om.parameters())):
        assert a.dtype == ox.float32
        np.testing.assert_array_equal(to_np(a), to_np(b))
