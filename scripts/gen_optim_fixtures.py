#!/usr/bin/env python3
"""Writes crates/oxmx-optim/tests/fixtures/optim.json: oracle runs of optimizers, learning-rate
schedules and clip_grad_norm for crates/oxmx-optim/tests/optim.rs (rerunnable; the output is
committed because CI has no PyTorch).

Oracles
- PyTorch (torch.optim, CPU, float32) for the cases where its update is the same formula as
  MLX's: SGD (plain, momentum, Nesterov, weight decay), RMSprop, Adagrad, AdaDelta, and Adam /
  AdamW with bias_correction=True. Every torch case is also run through mlx.optimizers and the
  script asserts that the two agree, so the fixture also pins MLX's semantics.
- MLX (mlx.optimizers 0.32.4) where PyTorch differs or has no counterpart:
  * SGD with dampening: torch starts the momentum buffer at g (no dampening at the first step),
    MLX at (1 - dampening) * g.
  * Adam / AdamW defaults: MLX applies no bias correction unless asked.
  * Adamax: torch puts eps inside the max (max(b2*u, |g| + eps)) and bias-corrects the first
    moment; MLX uses max(b2*u, |g|) and m / (u + eps) without correction.
  * Lion, Adafactor, Muon (torch 2.9 has none of them with MLX's formulas), schedules,
    clip_grad_norm, float16 runs, and the names of the state entries.

Each optimizer case records the initial parameters, the gradients of every step (numpy,
seeded), the parameters after every step, and (MLX) the final flattened state.
"""
import json
import os

import numpy as np
import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-optim", "tests", "fixtures", "optim.json")

# Parameter paths are dotted like checkpoint keys; shapes cover a scalar-ish [1], a vector, a
# wide and a tall matrix (Adafactor's factored path, Muon's transpose) and a rank-3 array
# (Adafactor over the last two axes, Muon's reshape).
SHAPES = {"layer.w": [3, 4], "layer.b": [4], "s": [1], "k": [2, 3, 2], "t": [4, 3]}
STEPS = 4
MX_DT = {"float32": mx.float32, "float16": mx.float16}
NP_DT = {"float32": np.float32, "float16": np.float16}


def data(seed, dtype):
    """Initial parameters and per-step gradients, rounded to `dtype`."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(NP_DT[dtype]) for k, s in SHAPES.items()}
    grads = [{k: (0.5 * rng.normal(size=s)).astype(NP_DT[dtype]) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def flat(a):
    return [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


def enc_tree(tree):
    return {k: flat(v) for k, v in tree.items()}


# ---------------------------------------------------------------------------------------------
# Schedules: specs shared by the optimizer cases and the schedule fixtures. The Rust test builds
# the same schedule from the spec.

def make_schedule(spec):
    kind = spec["kind"]
    if kind == "exponential_decay":
        return optim.exponential_decay(spec["init"], spec["decay_rate"])
    if kind == "step_decay":
        return optim.step_decay(spec["init"], spec["decay_rate"], spec["step_size"])
    if kind == "cosine_decay":
        return optim.cosine_decay(spec["init"], spec["decay_steps"], spec.get("end", 0.0))
    if kind == "linear_schedule":
        return optim.linear_schedule(spec["init"], spec["end"], spec["steps"])
    if kind == "join_schedules":
        return optim.join_schedules([make_schedule(s) for s in spec["schedules"]], spec["boundaries"])
    raise ValueError(kind)


def mlx_lr(lr):
    return make_schedule(lr) if isinstance(lr, dict) else lr


# ---------------------------------------------------------------------------------------------
# MLX runs

def mlx_optimizer(name, lr, cfg):
    lr = mlx_lr(lr)
    if name == "SGD":
        return optim.SGD(lr, **cfg)
    if name == "RMSprop":
        return optim.RMSprop(lr, **cfg)
    if name == "Adagrad":
        return optim.Adagrad(lr, **cfg)
    if name == "AdaDelta":
        return optim.AdaDelta(lr, **cfg)
    if name == "Adam":
        return optim.Adam(lr, **cfg)
    if name == "AdamW":
        return optim.AdamW(lr, **cfg)
    if name == "Adamax":
        return optim.Adamax(lr, **cfg)
    if name == "Lion":
        return optim.Lion(lr, **cfg)
    if name == "Adafactor":
        return optim.Adafactor(learning_rate=lr, **cfg)
    if name == "Muon":
        return optim.Muon(lr, **cfg)
    raise ValueError(name)


def run_mlx(name, lr, cfg, params, grads, dtype):
    opt = mlx_optimizer(name, lr, cfg)
    p = {k: mx.array(v, dtype=MX_DT[dtype]) for k, v in params.items()}
    steps, lrs = [], []
    for g in grads:
        gm = {k: mx.array(v, dtype=MX_DT[dtype]) for k, v in g.items()}
        p = opt.apply_gradients(gm, p)
        mx.eval(p, opt.state)
        steps.append({k: np.array(v.astype(mx.float32)) for k, v in p.items()})
        lrs.append(float(opt.learning_rate.item()) if "learning_rate" in opt.state else None)
    state = {k: flat(np.array(v.astype(mx.float32))) for k, v in tree_flatten(opt.state)}
    return steps, state, lrs


# ---------------------------------------------------------------------------------------------
# PyTorch runs (float32 only)

def torch_optimizer(name, lr, cfg, tparams):
    common = {"foreach": False}
    if name == "SGD":
        return torch.optim.SGD(tparams, lr=lr, **cfg, **common)
    if name == "RMSprop":
        return torch.optim.RMSprop(tparams, lr=lr, **cfg, **common)
    if name == "Adagrad":
        return torch.optim.Adagrad(tparams, lr=lr, **cfg, **common)
    if name == "AdaDelta":
        return torch.optim.Adadelta(tparams, lr=lr, **cfg, **common)
    if name == "Adam":
        return torch.optim.Adam(tparams, lr=lr, **cfg, **common)
    if name == "AdamW":
        return torch.optim.AdamW(tparams, lr=lr, **cfg, **common)
    raise ValueError(name)


def torch_cfg(name, cfg):
    """MLX argument names and defaults translated to torch's."""
    c = dict(cfg)
    c.pop("bias_correction", None)  # torch always corrects; only bias_correction=True cases run
    if name in ("Adam", "AdamW"):
        c["betas"] = tuple(c.get("betas", (0.9, 0.999)))
        c.setdefault("eps", 1e-8)
        if name == "AdamW":
            c.setdefault("weight_decay", 0.01)  # MLX's default (torch's is also 0.01)
    if name == "RMSprop":
        c.setdefault("alpha", 0.99)
        c.setdefault("eps", 1e-8)
    if name == "Adagrad":
        c.setdefault("eps", 1e-8)  # torch's default is 1e-10
    if name == "AdaDelta":
        c.setdefault("rho", 0.9)
        c.setdefault("eps", 1e-6)
    return c


def run_torch(name, lr, cfg, params, grads):
    tparams = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in params.items()}
    opt = torch_optimizer(name, lr, torch_cfg(name, cfg), list(tparams.values()))
    steps = []
    for g in grads:
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k], dtype=torch.float32)
        opt.step()
        steps.append({k: t.detach().numpy().copy() for k, t in tparams.items()})
    return steps


# ---------------------------------------------------------------------------------------------

WARMUP_COSINE = {
    "kind": "join_schedules",
    "schedules": [{"kind": "linear_schedule", "init": 0.0, "end": 0.1, "steps": 2},
                  {"kind": "cosine_decay", "init": 0.1, "decay_steps": 4, "end": 0.01}],
    "boundaries": [2],
}

# (name, optimizer, learning rate, MLX-named config, oracle, dtype)
CASES = [
    ("sgd_plain", "SGD", 0.1, {}, "torch", "float32"),
    ("sgd_momentum", "SGD", 0.1, {"momentum": 0.9}, "torch", "float32"),
    ("sgd_nesterov", "SGD", 0.1, {"momentum": 0.9, "nesterov": True}, "torch", "float32"),
    ("sgd_weight_decay", "SGD", 0.1, {"momentum": 0.9, "weight_decay": 0.05}, "torch", "float32"),
    ("sgd_dampening", "SGD", 0.1, {"momentum": 0.9, "dampening": 0.3}, "mlx", "float32"),
    ("rmsprop", "RMSprop", 0.01, {}, "torch", "float32"),
    ("rmsprop_alpha", "RMSprop", 0.01, {"alpha": 0.9, "eps": 1e-6}, "torch", "float32"),
    ("adagrad", "Adagrad", 0.1, {}, "torch", "float32"),
    ("adadelta", "AdaDelta", 1.0, {}, "torch", "float32"),
    ("adadelta_rho", "AdaDelta", 0.5, {"rho": 0.8, "eps": 1e-5}, "torch", "float32"),
    ("adam_bias_correction", "Adam", 0.01, {"bias_correction": True}, "torch", "float32"),
    ("adam_betas_bc", "Adam", 0.01, {"betas": [0.8, 0.99], "eps": 1e-6, "bias_correction": True}, "torch", "float32"),
    ("adamw_bias_correction", "AdamW", 0.01, {"weight_decay": 0.1, "bias_correction": True}, "torch", "float32"),
    ("adam_default", "Adam", 0.01, {}, "mlx", "float32"),
    ("adamw_default", "AdamW", 0.01, {}, "mlx", "float32"),
    ("adamax", "Adamax", 0.01, {}, "mlx", "float32"),
    ("lion", "Lion", 0.01, {}, "mlx", "float32"),
    ("lion_weight_decay", "Lion", 0.01, {"betas": [0.95, 0.98], "weight_decay": 0.1}, "mlx", "float32"),
    ("adafactor_default", "Adafactor", None, {}, "mlx", "float32"),
    ("adafactor_lr", "Adafactor", 0.05, {"relative_step": False, "scale_parameter": False}, "mlx", "float32"),
    ("adafactor_beta1_wd", "Adafactor", 0.02, {"relative_step": False, "beta_1": 0.9, "weight_decay": 0.1, "clip_threshold": 0.5}, "mlx", "float32"),
    ("adafactor_warmup", "Adafactor", None, {"warmup_init": True, "decay_rate": -0.5}, "mlx", "float32"),
    ("muon_default", "Muon", 0.02, {}, "mlx", "float32"),
    ("muon_plain", "Muon", 0.02, {"nesterov": False, "weight_decay": 0.0, "momentum": 0.9, "ns_steps": 3}, "mlx", "float32"),
    ("adam_scheduled", "Adam", WARMUP_COSINE, {}, "mlx", "float32"),
    ("sgd_scheduled", "SGD", {"kind": "step_decay", "init": 0.1, "decay_rate": 0.5, "step_size": 2}, {"momentum": 0.9}, "mlx", "float32"),
    ("adam_float16", "Adam", 0.01, {}, "mlx", "float16"),
    ("sgd_float16", "SGD", 0.1, {"momentum": 0.9}, "mlx", "float16"),
    ("adafactor_float16", "Adafactor", None, {}, "mlx", "float16"),
]

# (relative, absolute floor) tolerance the Rust test applies per dtype; also used to check that
# torch and MLX agree. float16 allows about two ulps.
TOL = {"float32": (1e-5, 1e-6), "float16": (2e-3, 1e-3)}


def close(a, b, rtol, atol):
    return np.all(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) <= rtol * np.abs(np.asarray(b, np.float64)) + atol)


def build_cases():
    cases = []
    for i, (case, name, lr, cfg, oracle, dtype) in enumerate(CASES):
        params, grads = data(100 + i, dtype)
        mlx_steps, state, lrs = run_mlx(name, lr, cfg, params, grads, dtype)
        rtol, atol = TOL[dtype]
        if oracle == "torch":
            expected = run_torch(name, lr, cfg, params, grads)
            for t, (e, m) in enumerate(zip(expected, mlx_steps)):
                for k in SHAPES:
                    assert close(m[k], e[k], rtol, atol), f"{case}: MLX and torch differ at step {t + 1}, '{k}'"
        else:
            expected = mlx_steps
        cases.append({
            "name": case,
            "optimizer": name,
            "oracle": oracle,
            "dtype": dtype,
            "lr": lr,
            "config": cfg,
            "rtol": rtol,
            "atol": atol,
            "shapes": SHAPES,
            "params": enc_tree(params),
            "grads": [enc_tree(g) for g in grads],
            "expected": [enc_tree(e) for e in expected],
            "learning_rates": lrs,
            "state": state,
        })
    return cases


SCHEDULES = [
    {"kind": "exponential_decay", "init": 0.1, "decay_rate": 0.9},
    {"kind": "step_decay", "init": 0.1, "decay_rate": 0.9, "step_size": 3},
    {"kind": "cosine_decay", "init": 0.1, "decay_steps": 10},
    {"kind": "cosine_decay", "init": 0.1, "decay_steps": 7, "end": 0.01},
    {"kind": "linear_schedule", "init": 0.0, "end": 0.1, "steps": 5},
    {"kind": "linear_schedule", "init": 0.1, "end": 0.02, "steps": 8},
    WARMUP_COSINE,
    {"kind": "join_schedules",
     "schedules": [{"kind": "linear_schedule", "init": 0.0, "end": 1e-3, "steps": 3},
                   {"kind": "exponential_decay", "init": 1e-3, "decay_rate": 0.5},
                   {"kind": "step_decay", "init": 2e-4, "decay_rate": 0.1, "step_size": 2}],
     "boundaries": [3, 7]},
]


def build_schedules():
    out = []
    for spec in SCHEDULES:
        f = make_schedule(spec)
        # The optimizer passes its uint64 step array; do the same.
        values = [float(f(mx.array(s, dtype=mx.uint64)).item()) for s in range(16)]
        out.append({"spec": spec, "values": values})
    return out


def build_clip():
    rng = np.random.default_rng(7)
    out = []
    for max_norm, dtype, scale in [(1.0, "float32", 1.0), (100.0, "float32", 1.0), (0.0, "float32", 1.0), (2.5, "float32", 3.0),
                                   (1.0, "float16", 300.0)]:
        # Keys sorted, so MLX sums the squares in the order oxmx's BTreeMap does. The float16 case
        # has squares beyond float16's range: the sum must be done in float32.
        g = {k: (scale * rng.normal(size=s)).astype(NP_DT[dtype]) for k, s in sorted(SHAPES.items())}
        gm = {k: mx.array(v, dtype=MX_DT[dtype]) for k, v in g.items()}
        clipped, norm = optim.clip_grad_norm(gm, max_norm)
        mx.eval(clipped, norm)
        out.append({
            "max_norm": max_norm,
            "dtype": dtype,
            "shapes": SHAPES,
            "grads": enc_tree(g),
            "clipped": {k: flat(np.array(v.astype(mx.float32))) for k, v in clipped.items()},
            "norm": float(norm.item()),
        })
    return out


def main():
    torch.set_num_threads(1)
    doc = {
        "generator": "scripts/gen_optim_fixtures.py",
        "versions": {"mlx": mx.__version__, "torch": torch.__version__.split("+")[0], "numpy": np.__version__},
        "cases": build_cases(),
        "schedules": build_schedules(),
        "clip": build_clip(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
        f.flush()
    print(f"wrote {os.path.relpath(OUT)}: {len(doc['cases'])} optimizer cases, {len(doc['schedules'])} schedules, {len(doc['clip'])} clip cases")


if __name__ == "__main__":
    main()
    # mlx 0.32.4 can abort in static destructors at interpreter exit; skip them.
    os._exit(0)
