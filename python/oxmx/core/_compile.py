"""``mx.compile`` with MLX's state capture (``inputs=`` / ``outputs=``).

The compiled graph itself is oxmx-core's (``oxmx._core.compile``); this layer only routes the
captured state through it, as MLX does: the arrays found in ``inputs`` (a tree of lists, tuples
and dicts — a ``Module`` or an optimizer's ``state`` among them) become extra inputs of the graph,
and the arrays found in ``outputs`` after the function ran become extra outputs, written back
into that tree after every call. A typical use is a training step that updates a model and an
optimizer in place: ``partial(mx.compile, inputs=state, outputs=state)``.
"""

from oxmx import _core
from oxmx.utils import _children

__all__ = ["compile"]


def _is_array(x):
    return isinstance(x, _core.array)


def _arrays(tree, out):
    """The arrays of ``tree`` in MLX's order (containers depth first, other leaves skipped)."""
    if _is_array(tree):
        out.append(tree)
        return out
    for _, child in _children(tree) or ():
        _arrays(child, out)
    return out


def _fill(tree, arrays):
    """Replaces the array leaves of ``tree`` in place with the next ones from ``arrays``.

    Only mutable containers can take a new leaf; an array directly inside a tuple is an error,
    as in MLX."""
    for key, child in _children(tree) or ():
        if _is_array(child):
            if isinstance(tree, tuple):
                raise ValueError("[compile] Cannot update an array held in a tuple of the captured state.")
            tree[key] = next(arrays)
        else:
            _fill(child, arrays)


def _replace(tree, old, new):
    """Puts ``new[i]`` back wherever ``tree`` still holds the very object ``old[i]``."""
    where = {id(o): n for o, n in zip(old, new)}
    for key, child in _children(tree) or ():
        if _is_array(child):
            if id(child) in where and not isinstance(tree, tuple):
                tree[key] = where[id(child)]
        else:
            _replace(child, old, new)


class _CapturingCompiled:
    """A compiled function whose graph also reads ``inputs`` and writes ``outputs``."""

    def __init__(self, fun, inputs, outputs, shapeless):
        self._fun = fun
        self._inputs = inputs
        self._outputs = outputs
        self._compiled = _core.compile(self._traced, shapeless=shapeless)
        self.__name__ = getattr(fun, "__name__", "compiled")
        self.__doc__ = getattr(fun, "__doc__", None)
        self.__wrapped__ = fun

    def _traced(self, args, kwargs, captured):
        # The graph's captured inputs arrive as tracers: the function must see them in the state.
        originals = _arrays(self._inputs, []) if self._inputs is not None else []
        if self._inputs is not None:
            _fill(self._inputs, iter(captured))
        try:
            out = self._fun(*args, **kwargs)
            new_state = _arrays(self._outputs, []) if self._outputs is not None else []
        finally:
            # Leaves the function did not replace get their own arrays back (not the tracers).
            if self._inputs is not None:
                _replace(self._inputs, captured, originals)
        return out, new_state

    def __call__(self, *args, **kwargs):
        captured = _arrays(self._inputs, []) if self._inputs is not None else []
        out, new_state = self._compiled(args, kwargs, captured)
        if self._outputs is not None:
            _fill(self._outputs, iter(new_state))
        return out


def compile(fun, inputs=None, outputs=None, shapeless=False):
    """Compiles ``fun`` into a graph that is traced once per input signature and replayed.

    ``inputs`` and ``outputs`` are trees (lists, tuples, dicts, modules) whose arrays the
    function reads and replaces as implicit state, as in MLX."""
    if inputs is None and outputs is None:
        return _core.compile(fun, shapeless=shapeless)
    if not callable(fun):
        raise TypeError("[compile] expected a callable")
    return _CapturingCompiled(fun, inputs, outputs, shapeless)
