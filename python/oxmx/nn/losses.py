"""Loss functions of ``mlx.nn.losses``. Every one takes ``reduction`` (``"none"``, ``"mean"``
or ``"sum"``) with MLX's default for that loss."""

import math
from typing import Literal

import oxmx.core as mx

Reduction = Literal["none", "mean", "sum"]

__all__ = [
    "cross_entropy", "binary_cross_entropy", "l1_loss", "mse_loss", "nll_loss", "gaussian_nll_loss", "kl_div_loss",
    "smooth_l1_loss", "triplet_loss", "hinge_loss", "huber_loss", "log_cosh_loss", "cosine_similarity_loss",
    "margin_ranking_loss",
]


def _reduce(loss, reduction):
    if reduction == "mean":
        return mx.mean(loss)
    if reduction == "sum":
        return mx.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError("Invalid reduction. Must be 'none', 'mean', or 'sum'.")


def _same_shape(a, b, what_a="Inputs", what_b="targets"):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError("{} shape {} does not match {} shape {}.".format(what_a, tuple(a.shape), what_b, tuple(b.shape)))


def _weigh(loss, weights):
    if weights is None:
        return loss
    if tuple(weights.shape) != tuple(loss.shape):
        raise ValueError("Weights with shape {} is not the same as output loss with shape {}.".format(
            tuple(weights.shape), tuple(loss.shape)))
    return loss * weights


def cross_entropy(logits, targets, weights=None, axis=-1, label_smoothing=0.0, reduction="none"):
    """Cross entropy of ``logits`` against class indices (one axis fewer than ``logits``) or
    class probabilities (same shape), with optional per-sample ``weights`` and label smoothing."""
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError("Label smoothing must in [0, 1), got {}.".format(label_smoothing))
    probs = targets.ndim == logits.ndim
    dropped = list(logits.shape)
    dropped.pop(axis)
    if (probs and tuple(targets.shape) != tuple(logits.shape)) or (not probs and tuple(targets.shape) != tuple(dropped)):
        raise ValueError("Targets shape {} does not match logits shape {}.".format(tuple(targets.shape),
                                                                                  tuple(logits.shape)))
    if probs:
        score = mx.sum(logits * targets, axis=axis)
    else:
        score = mx.take_along_axis(logits, mx.expand_dims(targets, axis), axis).squeeze(axis)
    lse = mx.logsumexp(logits, axis=axis)
    if label_smoothing > 0:
        loss = lse - (1 - label_smoothing) * score - mx.mean(logits, axis=axis) * label_smoothing
    else:
        loss = lse - score
    return _reduce(_weigh(loss, weights), reduction)


def binary_cross_entropy(inputs, targets, weights=None, with_logits=True, reduction="mean"):
    """Binary cross entropy of logits (``with_logits``) or probabilities against 0/1 targets."""
    _same_shape(inputs, targets)
    if with_logits:
        loss = mx.logaddexp(0.0, inputs) - inputs * targets
    else:
        log_p = mx.maximum(mx.log(inputs), -100)
        log_q = mx.maximum(mx.log(1 - inputs), -100)
        loss = -(targets * log_p + (1 - targets) * log_q)
    return _reduce(_weigh(loss, weights), reduction)


def l1_loss(predictions, targets, reduction="mean"):
    """``|predictions - targets|``."""
    _same_shape(predictions, targets, "Predictions")
    return _reduce(mx.abs(predictions - targets), reduction)


def mse_loss(predictions, targets, reduction="mean"):
    """``(predictions - targets)^2``."""
    _same_shape(predictions, targets, "Predictions")
    return _reduce(mx.square(predictions - targets), reduction)


def nll_loss(inputs, targets, axis=-1, reduction="none"):
    """Negative log likelihood of class indices ``targets`` under log-probabilities ``inputs``."""
    loss = -mx.take_along_axis(inputs, mx.expand_dims(targets, -1), axis).squeeze(-1)
    return _reduce(loss, reduction)


def gaussian_nll_loss(inputs, targets, vars, full=False, eps=1e-6, reduction="mean"):  # noqa: A002
    """Negative log likelihood of ``targets`` under normals of mean ``inputs`` and variance ``vars``
    (clamped to ``eps``); ``full`` adds the constant ``log(2 pi) / 2``."""
    _same_shape(inputs, targets)
    _same_shape(inputs, vars, "Inputs", "vars")
    vars = mx.maximum(vars, eps)  # noqa: A001
    loss = 0.5 * (mx.log(vars) + mx.square(targets - inputs) / vars)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def kl_div_loss(inputs, targets, axis=-1, reduction="none"):
    """KL divergence ``sum(exp(t) * (t - i))`` of log-probabilities ``targets`` from ``inputs``."""
    return _reduce(mx.sum(mx.exp(targets) * (targets - inputs), axis), reduction)


def smooth_l1_loss(predictions, targets, beta=1.0, reduction="mean"):
    """``0.5 d^2 / beta`` where ``d = |predictions - targets| < beta``, else ``d - 0.5 beta``."""
    _same_shape(predictions, targets, "Predictions")
    d = mx.abs(predictions - targets)
    return _reduce(mx.where(d < beta, 0.5 * mx.square(d) / beta, d - 0.5 * beta), reduction)


def triplet_loss(anchors, positives, negatives, axis=-1, p=2, margin=1.0, eps=1e-6, reduction="none"):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``d(x, y) = (sum |x - y|^p + eps)^(1/p)``."""

    def dist(d):
        s = mx.sum(mx.power(mx.abs(d), p), axis) + eps
        return mx.sqrt(s) if p == 2 else mx.power(s, 1.0 / p)

    return _reduce(mx.maximum(dist(anchors - positives) - dist(anchors - negatives) + margin, 0), reduction)


def hinge_loss(inputs, targets, reduction="none"):
    """``max(1 - inputs * targets, 0)`` for targets in {-1, 1}."""
    return _reduce(mx.maximum(1 - inputs * targets, 0), reduction)


def huber_loss(inputs, targets, delta=1.0, reduction="none"):
    """Quadratic for errors up to ``delta``, linear beyond."""
    err = mx.abs(inputs - targets)
    quad = mx.minimum(err, delta)
    return _reduce(0.5 * quad**2 + delta * (err - quad), reduction)


def log_cosh_loss(inputs, targets, reduction="none"):
    """``log(cosh(inputs - targets))``, computed stably."""
    e = inputs - targets
    return _reduce(mx.logaddexp(e, -e) - math.log(2), reduction)


def cosine_similarity_loss(x1, x2, axis=1, eps=1e-8, reduction="none"):
    """Cosine similarity of ``x1`` and ``x2`` along ``axis`` (norm product clamped to ``eps``)."""
    n1 = mx.sqrt(mx.sum(mx.square(x1), axis=axis))
    n2 = mx.sqrt(mx.sum(mx.square(x2), axis=axis))
    return _reduce(mx.sum(x1 * x2, axis=axis) / mx.maximum(n1 * n2, eps), reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin=0.0, reduction="none"):
    """``max(0, -targets * (inputs1 - inputs2) + margin)``."""
    if not (tuple(inputs1.shape) == tuple(inputs2.shape) == tuple(targets.shape)):
        raise ValueError(
            "The shapes of the arguments do not match. The provided shapes are inputs1.shape={}, inputs2.shape={}, "
            "and targets.shape={}.".format(tuple(inputs1.shape), tuple(inputs2.shape), tuple(targets.shape)))
    return _reduce(mx.maximum(0, -targets * (inputs1 - inputs2) + margin), reduction)
