"""``load`` (mlx_lm.utils.load): a model folder, GGUF file, the oxmx models folder or a Hugging
Face repo id in the local Hub cache, giving ``(model, tokenizer)``."""

import json
import os

import oxmx.core as mx
from oxmx._core import _lm

from .tokenizer_utils import TokenizerWrapper, load_tokenizer

__all__ = ["Model", "load", "load_model", "default_model_path", "resolve_model_path"]


class Model:
    """A loaded language model: ``model(tokens [B, L], cache=None) -> logits [B, L, vocab]``."""

    def __init__(self, core):
        self._core = core

    def __call__(self, inputs, cache=None):
        if isinstance(inputs, (list, tuple)):
            inputs = mx.array(inputs)
        return self._core(inputs, cache)

    @property
    def model_type(self):
        return self._core.model_type

    @property
    def num_layers(self):
        return self._core.num_layers

    @property
    def layers(self):
        """One entry per decoder layer (only their count is exposed)."""
        return [None] * self._core.num_layers

    @property
    def vocab_size(self):
        return self._core.vocab_size

    @property
    def args(self):
        """config.json as a dict (for GGUF files, the config derived from the metadata)."""
        return json.loads(self._core.config_json())

    config = args

    def parameters(self):
        from oxmx.utils import tree_unflatten

        return tree_unflatten(list(self._core.parameters().items()))

    def make_cache(self, max_kv_size=None):
        return self._core.make_cache(max_kv_size)

    def __repr__(self):
        return "Model({}, {} layers, vocab {})".format(self.model_type, self.num_layers, self.vocab_size)


def default_model_path():
    """The default model's path (``$OXMX_MODELS_DIR`` or ~/.cache/oxmx/models, SmolLM2-135M-
    Instruct Q4_1 GGUF), or None when it is not installed."""
    d, name = _lm.models_dir()
    p = os.path.join(d, name)
    return p if os.path.isfile(p) else None


def resolve_model_path(path_or_hf_repo):
    """A local path for ``path_or_hf_repo``: an existing path, a name in the models folder, or
    a Hugging Face repo id (through the local Hub cache; downloads when the network allows)."""
    if not isinstance(path_or_hf_repo, (str, os.PathLike)):
        raise TypeError("path_or_hf_repo must be a str or os.PathLike, got {}".format(type(path_or_hf_repo).__name__))
    p = os.path.expanduser(os.fspath(path_or_hf_repo))
    if os.path.exists(p):
        return p
    d, _ = _lm.models_dir()
    in_models = os.path.join(d, p)
    if not os.path.isabs(p) and os.path.exists(in_models):
        return in_models
    try:
        resolved = _lm.resolve_repo(p)
    except Exception as e:
        raise FileNotFoundError("model '{}' not found locally and not resolvable from the Hub: {}".format(p, e)) from None
    if resolved is None:
        raise FileNotFoundError("model '{}' not found: no such file or folder (nor in {})".format(p, d))
    return resolved


def load_model(model_path, lazy=False, strict=True, model_config=None, dtype=None, adapter_path=None):
    """The model alone (weights as float32 unless ``dtype`` says otherwise; ``"auto"`` keeps the
    file's dtype)."""
    if model_config:
        raise ValueError("model_config overrides are not supported by oxmx.lm (edit config.json instead)")
    if adapter_path is not None:
        adapter_path = os.path.expanduser(os.fspath(adapter_path))
        if not os.path.exists(adapter_path):
            raise FileNotFoundError("adapter path not found: {}".format(adapter_path))
    return Model(_lm.load_model(resolve_model_path(model_path), adapter_path, dtype))


def load(path_or_hf_repo, tokenizer_config=None, model_config=None, adapter_path=None, lazy=False,
         return_config=False, revision=None, trust_remote_code=False, dtype=None):
    """``(model, tokenizer)`` (and the config with ``return_config=True``), as mlx_lm.load."""
    path = resolve_model_path(path_or_hf_repo)
    model = load_model(path, lazy=lazy, model_config=model_config, dtype=dtype, adapter_path=adapter_path)
    eos = model._core.eos_token_ids
    tokenizer = load_tokenizer(path, tokenizer_config, eos_token_ids=eos or None)
    if return_config:
        return model, tokenizer, model.args
    return model, tokenizer


__all__ += ["TokenizerWrapper"]
