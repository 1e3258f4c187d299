"""Samplers and logits processors (mlx_lm.sample_utils). Each is a Python object that can be
called as mlx_lm's are, and that ``generate`` hands to the Rust loop as a plain configuration,
so sampling stays in Rust."""

import oxmx.core as mx
from oxmx._core import _lm

__all__ = [
    "Sampler",
    "make_sampler",
    "make_logits_processors",
    "make_repetition_penalty",
    "make_presence_penalty",
    "make_frequency_penalty",
    "make_logit_bias",
    "greedy_sampler",
]


class Sampler:
    """``sampler(logprobs [B, V]) -> token ids [B]``: temperature, top-p, min-p, XTC and top-k as
    ``make_sampler`` configured them (temperature 0 is the argmax)."""

    def __init__(self, temp=0.0, top_p=0.0, min_p=0.0, min_tokens_to_keep=1, top_k=0,
                 xtc_probability=0.0, xtc_threshold=0.1, xtc_special_tokens=None, seed=None):
        self._args = (
            float(temp), float(top_p), float(min_p), int(min_tokens_to_keep), int(top_k),
            float(xtc_probability), float(xtc_threshold),
            [int(t) for t in (xtc_special_tokens or [])], None if seed is None else int(seed),
        )
        if self._args[3] < 0 or self._args[4] < 0:
            raise ValueError("min_tokens_to_keep and top_k must be non-negative")
        _lm.check_sampler(self._args)

    @property
    def temp(self):
        return self._args[0]

    def __call__(self, logprobs):
        return _lm.sample(self._args, logprobs)

    def __repr__(self):
        names = ("temp", "top_p", "min_p", "min_tokens_to_keep", "top_k", "xtc_probability", "xtc_threshold")
        return "Sampler({})".format(", ".join("{}={}".format(n, v) for n, v in zip(names, self._args)))


def make_sampler(temp=0.0, top_p=0.0, min_p=0.0, min_tokens_to_keep=1, top_k=0, xtc_probability=0.0,
                 xtc_threshold=0.1, xtc_special_tokens=None):
    """A sampler for ``generate``/``stream_generate`` (mlx_lm's arguments and defaults)."""
    return Sampler(temp, top_p, min_p, min_tokens_to_keep, top_k, xtc_probability, xtc_threshold,
                   xtc_special_tokens)


greedy_sampler = Sampler()


class LogitsProcessor:
    """A built-in ``processor(tokens, logits [B, V]) -> logits`` run in Rust."""

    def __init__(self, spec):
        self._spec = spec

    def __call__(self, tokens, logits):
        if isinstance(tokens, mx.array):
            tokens = tokens.reshape(-1).tolist()
        return _lm.apply_processor(self._spec, [int(t) for t in tokens], logits)

    def __repr__(self):
        return "LogitsProcessor{}".format(self._spec)


def _penalty(kind, penalty, context_size):
    if not isinstance(penalty, (int, float)) or (kind == "repetition_penalty" and penalty < 0):
        raise ValueError("penalty must be a non-negative float, got {!r}".format(penalty))
    context_size = 20 if context_size is None else int(context_size)
    if context_size < 0:
        raise ValueError("context_size must be non-negative")
    return LogitsProcessor((kind, float(penalty), context_size))


def make_repetition_penalty(penalty, context_size=20):
    return _penalty("repetition_penalty", penalty, context_size)


def make_presence_penalty(penalty, context_size=20):
    return _penalty("presence_penalty", penalty, context_size)


def make_frequency_penalty(penalty, context_size=20):
    return _penalty("frequency_penalty", penalty, context_size)


def make_logit_bias(logit_bias):
    return LogitsProcessor(("logit_bias", [(int(k), float(v)) for k, v in logit_bias.items()]))


def make_logits_processors(logit_bias=None, repetition_penalty=None, repetition_context_size=20,
                           presence_penalty=None, presence_context_size=20, frequency_penalty=None,
                           frequency_context_size=20):
    """mlx_lm's ``make_logits_processors``: logit bias first, then the penalties that are set
    and non-zero."""
    out = []
    if logit_bias:
        out.append(make_logit_bias(logit_bias))
    for make, penalty, ctx in (
        (make_repetition_penalty, repetition_penalty, repetition_context_size),
        (make_presence_penalty, presence_penalty, presence_context_size),
        (make_frequency_penalty, frequency_penalty, frequency_context_size),
    ):
        if penalty is not None and penalty != 0:
            out.append(make(penalty, ctx))
    return out
