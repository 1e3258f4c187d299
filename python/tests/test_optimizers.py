"""oxmx.optimizers against mlx.optimizers: several steps of every optimizer and schedule on the
same model, the same data and the same starting weights."""

from functools import partial

import numpy as np
import pytest

import oxmx.core as ox
import oxmx.nn as nn
import oxmx.optimizers as optim
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import assert_close, assert_trees_close, both, copy_weights, mlx_core, mlx_nn, mlx_optim, rand

pytestmark = needs_mlx


def make_model(m):
    return m.Sequential(m.Linear(6, 8), m.ReLU(), m.Linear(8, 8, bias=False), m.Tanh(), m.Linear(8, 3))


def loss_fn(core, model):
    def f(x, y):
        return core.mean(core.square(model(x) - y))

    return f


def train(core, nnmod, model, opt, xs, ys, steps):
    vg = nnmod.value_and_grad(model, loss_fn(core, model))
    losses = []
    for i in range(steps):
        loss, grads = vg(xs[i % len(xs)], ys[i % len(ys)])
        opt.update(model, grads)
        core.eval(model.parameters(), opt.state)
        losses.append(loss)
    return losses


OPTIMIZERS = {
    "sgd": ("SGD", dict(learning_rate=0.1)),
    "sgd_momentum": ("SGD", dict(learning_rate=0.05, momentum=0.9, weight_decay=0.01, dampening=0.1)),
    "sgd_nesterov": ("SGD", dict(learning_rate=0.05, momentum=0.8, nesterov=True)),
    "rmsprop": ("RMSprop", dict(learning_rate=0.01, alpha=0.9)),
    "adagrad": ("Adagrad", dict(learning_rate=0.1)),
    "adadelta": ("AdaDelta", dict(learning_rate=1.0, rho=0.8)),
    "adam": ("Adam", dict(learning_rate=0.01)),
    "adam_bc": ("Adam", dict(learning_rate=0.01, betas=[0.8, 0.95], bias_correction=True)),
    "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
    "adamw_bc": ("AdamW", dict(learning_rate=0.01, bias_correction=True)),
    "adamax": ("Adamax", dict(learning_rate=0.02)),
    "lion": ("Lion", dict(learning_rate=0.01, weight_decay=0.1)),
    "adafactor": ("Adafactor", dict()),
    "adafactor_lr": ("Adafactor", dict(learning_rate=0.01, relative_step=False, beta_1=0.9, weight_decay=0.01)),
    "adafactor_warmup": ("Adafactor", dict(warmup_init=True, scale_parameter=False)),
    "muon": ("Muon", dict(learning_rate=0.02)),
    "muon_plain": ("Muon", dict(learning_rate=0.02, nesterov=False, weight_decay=0.0, ns_steps=3)),
}

STEPS = 5


def data():
    xs = [both(rand((4, 6), seed=10 + i)) for i in range(3)]
    ys = [both(rand((4, 3), seed=20 + i)) for i in range(3)]
    return xs, ys


def run_both(make_opt_ox, make_opt_mlx, steps=STEPS):
    om, mm = make_model(nn), make_model(mlx_nn)
    copy_weights(om, mm)
    oo, mo = make_opt_ox(), make_opt_mlx()
    xs, ys = data()
    ol = train(ox, nn, om, oo, [x[0] for x in xs], [y[0] for y in ys], steps)
    ml = train(mlx_core, mlx_nn, mm, mo, [x[1] for x in xs], [y[1] for y in ys], steps)
    return om, mm, oo, mo, ol, ml


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_optimizer_steps(case):
    name, kwargs = OPTIMIZERS[case]
    om, mm, oo, mo, ol, ml = run_both(lambda: getattr(optim, name)(**kwargs),
                                      lambda: getattr(mlx_optim, name)(**kwargs))
    tol = dict(rtol=2e-4, atol=2e-5)
    for a, b in zip(ol, ml):
        assert_close(a, b, **tol)
    assert_trees_close(om.parameters(), mm.parameters(), **tol)
    assert_trees_close(oo.state, mo.state, **tol)


SCHEDULES = {
    "exponential": ("exponential_decay", (0.1, 0.9)),
    "step": ("step_decay", (0.1, 0.5, 3)),
    "cosine": ("cosine_decay", (0.1, 8)),
    "cosine_end": ("cosine_decay", (0.1, 8, 0.01)),
    "linear": ("linear_schedule", (0.0, 0.1, 5)),
}


@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_schedule_values(case):
    name, args = SCHEDULES[case]
    s_ox, s_mlx = getattr(optim, name)(*args), getattr(mlx_optim, name)(*args)
    for step in range(12):
        o, m = s_ox(ox.array(step)), s_mlx(mlx_core.array(step))
        np.testing.assert_allclose(np.array(o), np.array(m), rtol=1e-6, atol=1e-7)


def test_join_schedules_and_errors():
    def mk(mod):
        warm = mod.linear_schedule(0, 0.1, 4)
        cos = mod.cosine_decay(0.1, 10)
        return mod.join_schedules([warm, cos, mod.exponential_decay(0.05, 0.5)], [4, 9])

    so, sm = mk(optim), mk(mlx_optim)
    for step in range(16):
        np.testing.assert_allclose(np.array(so(ox.array(step))), np.array(sm(mlx_core.array(step))), rtol=1e-6,
                                   atol=1e-7)
    with pytest.raises(ValueError):
        optim.join_schedules([], [])
    with pytest.raises(ValueError):
        optim.join_schedules([optim.linear_schedule(0, 1, 2)], [3])
    with pytest.raises(ValueError):
        optim.linear_schedule(0, 1, 0)


@pytest.mark.parametrize("opt", ["SGD", "Adam", "AdamW"])
def test_scheduled_learning_rate(opt):
    def sched(mod):
        return mod.join_schedules([mod.linear_schedule(0.0, 0.05, 3), mod.cosine_decay(0.05, 5)], [3])

    om, mm, oo, mo, ol, ml = run_both(lambda: getattr(optim, opt)(learning_rate=sched(optim)),
                                      lambda: getattr(mlx_optim, opt)(learning_rate=sched(mlx_optim)), steps=6)
    assert_trees_close(om.parameters(), mm.parameters(), rtol=2e-4, atol=2e-5)
    assert_close(oo.learning_rate, mo.learning_rate)
    assert oo.step.item() == mo.step.item() == 6
    assert oo.step.dtype == ox.uint64


def test_learning_rate_setter_and_state():
    o = optim.Adam(learning_rate=0.1)
    assert o.learning_rate.item() == pytest.approx(0.1)
    o.learning_rate = 0.5
    assert o.learning_rate.item() == 0.5
    model = make_model(nn)
    o.init(model.trainable_parameters())
    assert sorted(o.state) == ["layers", "learning_rate", "step"]
    assert sorted(o.state["layers"][0]) == ["bias", "weight"]
    assert sorted(o.state["layers"][0]["weight"]) == ["m", "v"]
    assert o.state["layers"][1] == {}
    # apply_gradients returns new parameters without touching the model
    grads = nn.value_and_grad(model, loss_fn(ox, model))(ox.ones((2, 6)), ox.zeros((2, 3)))[1]
    before = np.array(model.layers[0].weight)
    new = o.apply_gradients(grads, model)
    assert np.array_equal(np.array(model.layers[0].weight), before)
    assert not np.array_equal(np.array(new["layers"][0]["weight"]), before)
    # replacing the state re-initializes what is missing
    o.state = {"step": ox.array(0, ox.uint64), "learning_rate": ox.array(0.1)}
    o.update(model, grads)
    assert sorted(o.state["layers"][0]["weight"]) == ["m", "v"]
    with pytest.raises(ValueError):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.RMSprop(0.1, alpha=-1)


def test_multi_optimizer():
    def mk(mod):
        return mod.MultiOptimizer([mod.Adam(0.01), mod.SGD(0.1)], [lambda name, g: name.endswith("weight")])

    om, mm, oo, mo, _, _ = run_both(lambda: mk(optim), lambda: mk(mlx_optim), steps=3)
    assert_trees_close(om.parameters(), mm.parameters(), rtol=2e-4, atol=2e-5)
    assert_trees_close(oo.state, mo.state, rtol=2e-4, atol=2e-5)
    with pytest.raises(ValueError):
        optim.MultiOptimizer([optim.SGD(0.1)], [lambda *a: True])


def test_clip_grad_norm():
    om, mm = make_model(nn), make_model(mlx_nn)
    copy_weights(om, mm)
    for max_norm in (0.01, 100.0):
        og, mg = om.parameters(), mm.parameters()
        oc, on = optim.clip_grad_norm(og, max_norm)
        mc, mn = mlx_optim.clip_grad_norm(mg, max_norm)
        assert_close(on, mn)
        assert_trees_close(oc, mc)


def test_compiled_functional_step():
    """The functional compiled step (parameters in, parameters out) works and matches eager."""
    model = make_model(nn)
    params = model.trainable_parameters()
    x, y = ox.array(rand((4, 6), seed=1)), ox.array(rand((4, 3), seed=2))

    def step(params, x, y):
        def loss(p):
            model.update(p)
            return ox.mean(ox.square(model(x) - y))

        value, grads = ox.value_and_grad(loss)(params)
        new = optim.SGD(0.1).apply_gradients(grads, params)
        return value, new

    eager_v, eager_p = step(params, x, y)
    comp_v, comp_p = ox.compile(step)(params, x, y)
    assert_close(comp_v, eager_v)
    from oxmx.utils import tree_flatten

    for (k1, a), (k2, b) in zip(tree_flatten(comp_p), tree_flatten(eager_p)):
        assert k1 == k2
        assert_close(a, b)


def test_compile_with_state_capture():
    """MLX's idiom: ``partial(mx.compile, inputs=state, outputs=state)`` over model and optimizer
    state. oxmx.core.compile does not capture state yet (reported gap): then this is an xfail."""
    om, mm = make_model(nn), make_model(mlx_nn)
    copy_weights(om, mm)
    results = []
    for core, nnmod, om_, opt in ((mlx_core, mlx_nn, mm, mlx_optim.Adam(0.01)), (ox, nn, om, optim.Adam(0.01))):
        vg = nnmod.value_and_grad(om_, loss_fn(core, om_))
        state = [om_.state, opt.state]
        try:
            @partial(core.compile, inputs=state, outputs=state)
            def step(x, y):
                loss, grads = vg(x, y)
                opt.update(om_, grads)
                return loss
        except ValueError as e:
            pytest.xfail("oxmx.core.compile has no inputs/outputs state capture: {}".format(e))
        xs, ys = data()
        k = 0 if core is ox else 1
        losses = [step(xs[i][k], ys[i][k]) for i in range(3)]
        core.eval(state)
        results.append((losses, om_))
    (ml, mmod), (ol, omod) = results
    for a, b in zip(ol, ml):
        assert_close(a, b, rtol=2e-4, atol=2e-5)
    assert_trees_close(omod.parameters(), mmod.parameters(), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_optimizer_on_parameter_ranks(case):
    """apply_gradients on a tree of scalar, vector, matrix and rank-3/4 parameters."""
    name, kwargs = OPTIMIZERS[case]
    shapes = {"s": (), "v": (5,), "m": (4, 3), "t": [(2, 3, 4), (3, 2, 2, 2)]}
    rng = np.random.default_rng(0)

    def tree(scale):
        return {k: ([rng.standard_normal(s).astype(np.float32) * scale for s in v] if isinstance(v, list)
                    else rng.standard_normal(v).astype(np.float32) * scale) for k, v in shapes.items()}

    params = tree(1.0)
    grads = [tree(0.1) for _ in range(3)]

    def conv(core, t):
        return {k: ([core.array(x) for x in v] if isinstance(v, list) else core.array(v)) for k, v in t.items()}

    oo, mo = getattr(optim, name)(**kwargs), getattr(mlx_optim, name)(**kwargs)
    op, mp = conv(ox, params), conv(mlx_core, params)
    for g in grads:
        op = oo.apply_gradients(conv(ox, g), op)
        mp = mo.apply_gradients(conv(mlx_core, g), mp)
    assert_trees_close(op, mp, rtol=2e-4, atol=2e-5)
    assert_trees_close(oo.state, mo.state, rtol=2e-4, atol=2e-5)
