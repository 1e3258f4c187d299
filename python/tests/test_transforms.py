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
