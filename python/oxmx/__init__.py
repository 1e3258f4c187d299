"""oxmx: MLX's Python API on oxmx's Rust core.

``import oxmx.core as mx`` gives the array type, dtypes and ops of ``mlx.core``.
"""

from . import core  # noqa: F401
from . import lm  # noqa: F401  (mlx_lm's API: load, generate, stream_generate, convert)


def __getattr__(name):  # oxmx.nn / oxmx.optimizers load on first use (``import oxmx.nn`` works too)
    if name in ("nn", "optimizers"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError("module 'oxmx' has no attribute {!r}".format(name))

__all__ = ["core"]
