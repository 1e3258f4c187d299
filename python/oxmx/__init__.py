"""oxmx: MLX's Python API on oxmx's Rust core.

``import oxmx.core as mx`` gives the array type, dtypes and ops of ``mlx.core``.
"""

from . import core  # noqa: F401
from . import lm  # noqa: F401  (mlx_lm's API: load, generate, stream_generate, convert)

__all__ = ["core"]
