"""Transforms of Python functions: grad, value_and_grad, vjp, jvp, vmap, compile."""

import numpy as np
import pytest

import oxmx.core as ox
from conftest import assert_same, run_both

RNG = np.random.default_rng()


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_grad_simple(mlx):
    x = rnd(5)
    for f in [lambda m: m.grad(lambda a: m.sum(m.sin(a) * a)), lambda m: m.grad(lambda a: (a ** 2).mean()),
              lambda m: m.grad(lambda a: m.logsumexp(a * 2.0))]:
        assert_same(*run_both(lambda m: f(m)(m.array(x)), mlx), rtol=1e-5, atol=1e-6)


def test_grad_of_grad(mlx):
    x = rnd()
    assert_same(*run_both(lambda m: m.grad(m.grad(m.sin))(m.array(x)), mlx), rtol=1e-5, atol=1e-6)
    assert_same(*run_both(lambda m: m.grad(m.grad(lambda a: a ** 3))(m.array(x)), mlx), rtol=1e-5, atol=1e-6)


def test_grad_argnums_and_trees(mlx):
    w, b, x = rnd(3, 4), rnd(4), rnd(2, 3)

    def loss(m):
        def f(params, inp):
            return m.mean(m.square(inp @ params["w"] + params["b"][0]))
        return f

    def run(m, argnums):
        params = {"w": m.array(w), "b": [m.array(b)]}
        return m.grad(loss(m), argnums=argnums)(params, m.array(x))

    ours, theirs = run_both(lambda m: run(m, 0), mlx)
    assert_same(ours["w"], theirs["w"], rtol=1e-4, atol=1e-5)
    assert_same(ours["b"][0], theirs["b"][0], rtol=1e-4, atol=1e-5)
    ours, theirs = run_both(lambda m: run(m, (0, 1)), mlx)
    assert isinstance(ours, tuple) and len(ours) == 2
    assert_same(ours[1], theirs[1], rtol=1e-4, atol=1e-5)
    assert_same(ours[0]["w"], theirs[0]["w"], rtol=1e-4, atol=1e-5)


def test_value_and_grad_with_aux(mlx):
    x = rnd(4)

    def run(m):
        def f(a, scale):
            return m.sum(a * a) * scale, a + 1
        (val, aux), g = m.value_and_grad(f)(m.array(x), 2.0)
        return [val, aux, g]

    assert_same(*run_both(run, mlx), rtol=1e-5, atol=1e-5)


def test_grad_errors(mlx):
    with pytest.raises(ValueError):
        ox.grad(lambda a: a * 2)(ox.array([1.0, 2.0]))
    with pytest.raises(ZeroDivisionError):
        ox.grad(lambda a: 1 / 0)(ox.array(1.0))
    with pytest.raises(ValueError):
        ox.grad(lambda a: a.sum(), argnums=3)(ox.array([1.0]))
    with pytest.raises(TypeError):
        ox.grad(3)


def test_vjp_jvp(mlx):
    x, y, c = rnd(3), rnd(3), rnd(3)
    ours, theirs = run_both(lambda m: m.vjp(lambda a, b: [a * b, m.sin(a)], [m.array(x), m.array(y)],
                                            [m.array(c), m.array(c)]), mlx)
    assert_same(list(ours[0]), list(theirs[0]), rtol=1e-5, atol=1e-6)
    assert_same(list(ours[1]), list(theirs[1]), rtol=1e-5, atol=1e-6)
    ours, theirs = run_both(lambda m: m.jvp(lambda a: m.exp(a) * 2, [m.array(x)], [m.array(c)]), mlx)
    assert_same(list(ours[0]), list(theirs[0]), rtol=1e-5, atol=1e-6)
    assert_same(list(ours[1]), list(theirs[1]), rtol=1e-5, atol=1e-6)


def test_vmap(mlx):
    x, y = rnd(4, 3), rnd(3, 4)
    assert_same(*run_both(lambda m: m.vmap(lambda a: m.sum(a * a))(m.array(x)), mlx), rtol=1e-5, atol=1e-5)
    assert_same(*run_both(lambda m: m.vmap(lambda a, b: a * b, in_axes=(0, 1))(m.array(x), m.array(y)), mlx),
                rtol=1e-5, atol=1e-6)
    assert_same(*run_both(lambda m: m.vmap(lambda a, b: a + b, in_axes=(0, None))(m.array(x), m.array(y[:, 0])), mlx),
                rtol=1e-5, atol=1e-6)
    assert_same(*run_both(lambda m: m.vmap(lambda a: a * 2, out_axes=1)(m.array(x)), mlx))


def test_compile(mlx):
    x = rnd(3, 5)

    def gelu(m):
        def f(a):
            return a * (1 + m.erf(a / np.sqrt(2.0))) / 2
        return f

    for shapeless in [False, True]:
        ours, theirs = run_both(lambda m: m.compile(gelu(m), shapeless=shapeless)(m.array(x)), mlx)
        assert_same(ours, theirs, rtol=1e-5, atol=1e-6)
    c = ox.compile(lambda a, b: {"s": a + b, "p": [a * b]})
    for _ in range(3):
        a, b = rnd(4), rnd(4)
        out = c(ox.array(a), ox.array(b))
        np.testing.assert_allclose(np.array(out["s"]), a + b, rtol=1e-6)
        np.testing.assert_allclose(np.array(out["p"][0]), a * b, rtol=1e-6)
    out = c(ox.array(rnd(2, 2)), ox.array(rnd(2, 2)))
    assert out["s"].shape == (2, 2)
    with pytest.raises(ZeroDivisionError):
        ox.compile(lambda a: 1 / 0)(ox.array(rnd(7)))


def test_grad_through_compile(mlx):
    x = rnd(6)
    assert_same(*run_both(lambda m: m.grad(m.compile(lambda a: m.sum(m.tanh(a) ** 2)))(m.array(x)), mlx),
                rtol=1e-5, atol=1e-6)


def test_compile_retraces_on_python_constants(mlx):
    """A non-array argument is a constant of the trace: a new value gives a new trace (as MLX)."""
    for m in (ox, mlx):
        f = m.compile(lambda a, n, mode="mul": a * n if mode == "mul" else a + n)
        a = m.array([1.0, 2.0])
        got = [f(a, 2), f(a, 3), f(a, 3.5), f(a, 3, mode="add"), f(a, True)]
        want = [[2, 4], [3, 6], [3.5, 7], [4, 5], [1, 2]]
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.array(g), w)


def test_compile_keyword_arguments(mlx):
    x, y = rnd(3), rnd(3)
    ours, theirs = run_both(lambda m: m.compile(lambda a, *, b: a * b + 1)(m.array(x), b=m.array(y)), mlx)
    assert_same(ours, theirs, rtol=1e-6, atol=1e-6)


def test_compile_state_capture(mlx):
    """MLX's inputs=/outputs= capture: a counter and an accumulator in a dict and a list,
    updated in place across calls (and a state leaf the function leaves alone)."""
    x = rnd(4)
    results = []
    for m in (ox, mlx):
        state = {"acc": m.zeros((4,)), "n": [m.array(0)], "fixed": m.array(2.0), "tag": "not an array"}

        @__import__("functools").partial(m.compile, inputs=state, outputs=state)
        def step(v):
            state["acc"] = state["acc"] + v * state["fixed"]
            state["n"][0] = state["n"][0] + 1
            return state["acc"].sum()

        outs = [step(m.array(x * (i + 1))) for i in range(3)]
        m.eval(state)
        results.append(([np.array(o) for o in outs], np.array(state["acc"]), int(state["n"][0].item()),
                        float(state["fixed"].item()), state["tag"]))
    (o1, a1, n1, f1, t1), (o2, a2, n2, f2, t2) = results
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    np.testing.assert_allclose(a1, a2, rtol=1e-6)
    assert (n1, f1, t1) == (n2, f2, t2) == (3, 2.0, "not an array")


def test_compile_capture_inputs_only():
    """inputs= alone: the state is read as a graph input, so a new value is seen without a
    retrace (as a closure constant it would be baked in)."""
    w = {"w": ox.array([1.0, 2.0])}
    f = ox.compile(lambda v: (v * w["w"]).sum(), inputs=w)
    assert f(ox.array([1.0, 1.0])).item() == 3.0
    w["w"] = ox.array([10.0, 20.0])
    assert f(ox.array([1.0, 1.0])).item() == 30.0


def test_grad_keeps_non_differentiated_argument_types(mlx):
    """Arguments outside argnums reach the function as the caller's objects (a dict subclass
    stays that class), as in MLX."""

    class Params(dict):
        pass

    for m in (ox, mlx):
        seen = []

        def f(x, p):
            seen.append(type(p))
            return (x * p["s"]).sum()

        g = m.grad(f)(m.array([1.0, 2.0]), Params(s=m.array(3.0)))
        np.testing.assert_allclose(np.array(g), [3.0, 3.0])
        assert seen == [Params], (m, seen)


def test_grad_argnames_and_argnum_lists(mlx):
    """MLX's argnames (keyword arguments differentiated, returned as a dict beside the positional
    part) and its return shapes: one index alone, several as a tuple, None without indices."""
    x, y, z = rnd(3), rnd(3), rnd(3)

    def f(m):
        return lambda a, b=None, c=None: m.sum(m.sin(a) * b * c)

    cases = [dict(argnames="b"), dict(argnums=0, argnames=["b", "c"]), dict(argnums=[0], argnames=["c"]),
             dict(argnums=[0]), dict(argnums=(0,)), dict(argnums=[0], argnames=[])]
    for kw in cases:
        for fn in ("grad", "value_and_grad"):
            def run(m):
                return getattr(m, fn)(f(m), **kw)(m.array(x), b=m.array(y), c=m.array(z))

            ours, theirs = run_both(run, mlx)
            o_flat, t_flat = [], []
            for tree, flat in ((ours, o_flat), (theirs, t_flat)):
                def walk(t):
                    if isinstance(t, (list, tuple)):
                        flat.append(type(t).__name__ + str(len(t)))
                        for v in t:
                            walk(v)
                    elif isinstance(t, dict):
                        flat.append("dict" + ",".join(sorted(t)))
                        for k in sorted(t):
                            walk(t[k])
                    else:
                        flat.append(t)
                walk(tree)
            assert len(o_flat) == len(t_flat), (kw, fn, ours, theirs)
            for a, b in zip(o_flat, t_flat):
                if isinstance(a, str) or a is None:
                    assert a == b, (kw, fn, ours, theirs)
                else:
                    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)
    for m in (ox, mlx):
        with pytest.raises(ValueError) as e:
            m.grad(f(m), argnames="q")(m.array(x), b=m.array(y), c=m.array(z))
        assert "keyword argument 'q'" in str(e.value)
        with pytest.raises(ValueError, match="no argument"):
            m.grad(f(m), argnums=[])(m.array(x), b=m.array(y), c=m.array(z))
