"""``oxmx.lm``: mlx_lm's Python API (``load``, ``generate``, ``stream_generate``, ``convert``,
samplers, prompt caches) over oxmx-lm, the Rust LLM toolkit.

Models and tokenizers are oxmx-lm's: Hugging Face / mlx-community folders and GGUF files load
as they do in the ``oxmx`` command line. Generation runs in Rust on its own thread; Python only
receives the tokens (the GIL is free while the model runs).

    from oxmx.lm import load, generate
    model, tokenizer = load("~/.cache/oxmx/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    text = generate(model, tokenizer, prompt="Hello", max_tokens=32)
"""

from .convert import convert
from .generate import GenerationResponse, generate, generate_step, stream_generate
from .utils import default_model_path, load

__all__ = [
    "GenerationResponse",
    "convert",
    "default_model_path",
    "generate",
    "generate_step",
    "load",
    "stream_generate",
]
