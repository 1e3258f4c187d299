"""Prompt (KV) caches (mlx_lm.models.cache): one opaque cache object per model holds every
layer's keys and values, in Rust."""

import os

from oxmx._core import _lm

__all__ = ["make_prompt_cache", "trim_prompt_cache", "can_trim_prompt_cache", "save_prompt_cache",
           "load_prompt_cache"]


def _core_model(model):
    m = getattr(model, "_core", model)
    if not isinstance(m, _lm._Model):
        raise TypeError("expected a model returned by oxmx.lm.load, got {}".format(type(model).__name__))
    return m


def make_prompt_cache(model, max_kv_size=None):
    """A fresh cache for ``model``; ``max_kv_size`` bounds it (a rotating cache, as mlx_lm)."""
    if max_kv_size is not None and max_kv_size <= 0:
        raise ValueError("max_kv_size must be positive")
    return _core_model(model).make_cache(max_kv_size)


def can_trim_prompt_cache(cache):
    return cache.is_trimmable()


def trim_prompt_cache(cache, num_tokens):
    """Removes the last ``num_tokens`` positions; returns how many were removed."""
    if num_tokens < 0:
        raise ValueError("num_tokens must be non-negative")
    return cache.trim(int(num_tokens))


def save_prompt_cache(file_name, cache, metadata=None):
    """Writes the cache as mlx_lm's prompt-cache safetensors file."""
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    cache.save(os.fspath(file_name), meta)


def load_prompt_cache(file_name, return_metadata=False):
    path = os.fspath(file_name)
    if not os.path.exists(path):
        raise FileNotFoundError("prompt cache file not found: {}".format(path))
    cache, meta = _lm.load_prompt_cache(path)
    return (cache, meta) if return_metadata else cache
