"""``oxmx.nn``: neural-network layers, losses and initializers with ``mlx.nn``'s API.

``import oxmx.nn as nn`` gives ``nn.Module``, the layers, the activation functions,
``nn.losses``, ``nn.init``, ``nn.value_and_grad`` and ``nn.quantize``.
"""

from . import init, losses  # noqa: F401
from .layers import *  # noqa: F401,F403
from .layers import Module, quantize  # noqa: F401
from .utils import average_gradients, checkpoint, value_and_grad  # noqa: F401
