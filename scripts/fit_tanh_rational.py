#!/usr/bin/env python3
"""Fits the rational approximation behind oxmx's f32 `tanh` (crates/oxmx-core/src/backend/cpu/fastmath.rs).

tanh(x) ~ x * P(x^2) / Q(x^2) on [0, CLAMP], P of degree 6 and Q of degree 3 (Q(0) = 1), minimising the
relative error: linearised weighted least squares (x P - tanh(x) Q, divided by the previous Q) with
Lawson's reweighting towards the minimax solution. Prints the coefficients rounded to f32 and the
error of an f32 evaluation with fused multiply-adds (simulated in float64), which is what the Rust
code does. Rerun: python3 scripts/fit_tanh_rational.py
"""
import numpy as np

CLAMP = 9.02  # tanh(x) rounds to 1.0 in f32 for x >= 9.0109
NP, NQ = 6, 3


def fit(iters=60, n=6000):
    t = (1 - np.cos(np.linspace(0, np.pi, n))) / 2  # denser near both ends
    x = t * CLAMP
    x[0] = 1e-4
    f = np.tanh(x)
    u = x * x / CLAMP**2  # scaled so the least-squares columns are well conditioned
    w = np.ones_like(x)
    qprev = np.ones_like(x)
    for _ in range(iters):
        cols = [x * u**k for k in range(NP + 1)] + [-f * u**k for k in range(1, NQ + 1)]
        a = np.stack(cols, 1) / (f * qprev)[:, None]
        b = 1.0 / qprev
        sw = np.sqrt(w)
        sol, *_ = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)
        p, q = sol[: NP + 1], np.concatenate([[1.0], sol[NP + 1 :]])
        qprev = sum(q[k] * u**k for k in range(NQ + 1))
        err = (x * sum(p[k] * u**k for k in range(NP + 1)) / qprev - f) / f
        w = w * np.abs(err)
        w /= w.sum()
    return [p[k] / CLAMP ** (2 * k) for k in range(NP + 1)], [q[k] / CLAMP ** (2 * k) for k in range(NQ + 1)]


def eval_f32(ps, qs, xs):
    f32 = np.float32

    def fma(a, b, c):
        return (np.float64(a) * np.float64(b) + np.float64(c)).astype(f32)

    x = np.minimum(np.abs(xs.astype(f32)), f32(CLAMP))
    s = (x * x).astype(f32)
    p = np.full_like(s, f32(ps[-1]))
    for c in ps[-2::-1]:
        p = fma(p, s, f32(c))
    q = np.full_like(s, f32(qs[-1]))
    for c in qs[-2::-1]:
        q = fma(q, s, f32(c))
    return ((x * p).astype(f32) / q).astype(f32)


def max_ulps(xs, ps, qs):
    got = eval_f32(ps, qs, xs).astype(np.float64)
    ref = np.tanh(xs.astype(np.float32).astype(np.float64))
    return (np.abs(got - ref) / np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64)).max()


if __name__ == "__main__":
    ps, qs = fit()
    print("P:", ", ".join(repr(float(np.float32(c))) for c in ps))
    print("Q:", ", ".join(repr(float(np.float32(c))) for c in qs))
    print("max ulps on [0, 20]: %.2f" % max_ulps(np.linspace(0, 20, 400001), ps, qs))
    print("max ulps on [0, 1e-3]: %.2f" % max_ulps(np.linspace(0, 1e-3, 100001), ps, qs))
