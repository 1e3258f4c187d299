"""``convert`` (mlx_lm.convert): a Hugging Face folder or GGUF file to an MLX folder, optionally
quantized or cast, by oxmx-lm."""

import os

from oxmx._core import _lm

__all__ = ["convert"]


def convert(hf_path, mlx_path="mlx_model", quantize=False, q_group_size=None, q_bits=None, q_mode="affine",
            dtype=None, upload_repo=None, revision=None, dequantize=False, quant_predicate=None,
            trust_remote_code=False):
    """Writes ``mlx_path`` (config.json, safetensors shards, tokenizer files). ``quant_predicate``
    may name one of mlx_lm's mixed recipes (``"mixed_3_6"``, ...); callables are not supported."""
    from .utils import resolve_model_path

    if upload_repo is not None:
        raise ValueError("upload_repo is not supported by oxmx.lm (no Hub uploads)")
    if quant_predicate is not None and not isinstance(quant_predicate, str):
        raise TypeError("quant_predicate must be a recipe name (str); callables are not supported by oxmx.lm")
    src = resolve_model_path(hf_path)
    for line in _lm.convert(src, os.path.expanduser(os.fspath(mlx_path)), bool(quantize), q_group_size, q_bits,
                            q_mode, dtype, bool(dequantize), quant_predicate):
        print("[INFO] " + line)
