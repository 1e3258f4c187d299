"""``Sequential``."""

from .base import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Calls its modules (or plain callables) in order, each on the previous one's output."""

    def __init__(self, *modules):
        super().__init__()
        self.layers = list(modules)

    def __call__(self, x):
        for m in self.layers:
            x = m(x)
        return x
