"""``oxmx.optimizers``: optimizers and learning-rate schedules with ``mlx.optimizers``' API."""

from .optimizers import (  # noqa: F401
    SGD,
    AdaDelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    MultiOptimizer,
    Muon,
    Optimizer,
    RMSprop,
    clip_grad_norm,
)
from .schedulers import cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay  # noqa: F401
