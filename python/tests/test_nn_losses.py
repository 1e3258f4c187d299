"""oxmx.nn.losses against mlx.nn.losses, for every reduction."""

import numpy as np
import pytest

import oxmx.nn as nn
from conftest import needs_mlx
from nn_helpers import seeded  # noqa: F401 (autouse fixture: fixed seeds)
from nn_helpers import assert_close, both, mlx_nn, rand

pytestmark = needs_mlx

REDUCTIONS = ["none", "mean", "sum"]
rng = np.random.default_rng(0)
LOGITS = rand((4, 5), seed=1, scale=2)
LABELS = np.array([0, 3, 4, 1], dtype=np.int32)
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
A, B, C = rand((4, 6), seed=2), rand((4, 6), seed=3), rand((4, 6), seed=4)
SIGNS = np.where(rand((4, 6), seed=5) > 0, 1.0, -1.0).astype(np.float32)
P01 = (1 / (1 + np.exp(-A))).astype(np.float32)
T01 = (rand((4, 6), seed=6) > 0).astype(np.float32)
W4 = np.abs(rand((4,), seed=7)).astype(np.float32)
W46 = np.abs(rand((4, 6), seed=8)).astype(np.float32)
LOGP = np.log(PROBS).astype(np.float32)
LOGQ = np.log(np.roll(PROBS, 1, axis=1)).astype(np.float32)

CASES = {
    "ce_indices": ("cross_entropy", [LOGITS, LABELS], {}),
    "ce_probs": ("cross_entropy", [LOGITS, PROBS.astype(np.float32)], {}),
    "ce_weights_smooth": ("cross_entropy", [LOGITS, LABELS], {"weights": W4, "label_smoothing": 0.1}),
    "ce_axis0": ("cross_entropy", [LOGITS.T.copy(), LABELS], {"axis": 0}),
    "bce_logits": ("binary_cross_entropy", [A, T01], {}),
    "bce_probs": ("binary_cross_entropy", [P01, T01], {"with_logits": False, "weights": W46}),
    "nll": ("nll_loss", [LOGP, LABELS], {}),
    "kl": ("kl_div_loss", [LOGP, LOGQ], {}),
    "mse": ("mse_loss", [A, B], {}),
    "l1": ("l1_loss", [A, B], {}),
    "smooth_l1": ("smooth_l1_loss", [A, B], {"beta": 0.5}),
    "huber": ("huber_loss", [A, B], {"delta": 0.7}),
    "log_cosh": ("log_cosh_loss", [A, B], {}),
    "hinge": ("hinge_loss", [A, SIGNS], {}),
    "triplet": ("triplet_loss", [A, B, C], {"margin": 0.5}),
    "triplet_p1": ("triplet_loss", [A, B, C], {"p": 1, "axis": 0}),
    "triplet_p3": ("triplet_loss", [A, B, C], {"p": 3, "eps": 0.01}),
    "cosine": ("cosine_similarity_loss", [A, B], {}),
    "cosine_axis": ("cosine_similarity_loss", [A, B], {"axis": -1, "eps": 1e-3}),
    "margin_ranking": ("margin_ranking_loss", [A, B, SIGNS], {"margin": 0.2}),
    "gaussian_nll": ("gaussian_nll_loss", [A, B, np.abs(C)], {}),
    "gaussian_nll_full": ("gaussian_nll_loss", [A, B, np.abs(C)], {"full": True, "eps": 0.1}),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss(case, reduction):
    name, args, kwargs = CASES[case]
    pairs = [both(a) for a in args]
    okw, mkw = dict(kwargs), dict(kwargs)
    for k, v in kwargs.items():
        if isinstance(v, np.ndarray):
            okw[k], mkw[k] = both(v)
    ours = getattr(nn.losses, name)(*[p[0] for p in pairs], reduction=reduction, **okw)
    theirs = getattr(mlx_nn.losses, name)(*[p[1] for p in pairs], reduction=reduction, **mkw)
    assert_close(ours, theirs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_default_reduction(case):
    name, args, kwargs = CASES[case]
    pairs = [both(a) for a in args]
    if any(isinstance(v, np.ndarray) for v in kwargs.values()):
        return
    assert_close(getattr(nn.losses, name)(*[p[0] for p in pairs], **kwargs),
                 getattr(mlx_nn.losses, name)(*[p[1] for p in pairs], **kwargs))


def test_loss_errors():
    o = both(LOGITS)[0]
    ol = both(LABELS)[0]
    with pytest.raises(ValueError):
        nn.losses.cross_entropy(o, ol, label_smoothing=1.0)
    with pytest.raises(ValueError):
        nn.losses.cross_entropy(o, both(LABELS[:3])[0])
    with pytest.raises(ValueError):
        nn.losses.mse_loss(o, ol)
    with pytest.raises(ValueError):
        nn.losses.mse_loss(o, o, reduction="max")
    with pytest.raises(ValueError):
        nn.losses.cross_entropy(o, ol, weights=both(W46)[0])
    a = both(A)[0]
    with pytest.raises(ValueError):
        nn.losses.margin_ranking_loss(a, a, o)


def test_bf16_cross_entropy():
    o, m = both(rand((4, 5), seed=1, dtype="bfloat16"), "bfloat16")
    ol, ml = both(LABELS)
    assert_close(nn.losses.cross_entropy(o, ol, reduction="mean"), mlx_nn.losses.cross_entropy(m, ml, reduction="mean"),
                 "bfloat16")
