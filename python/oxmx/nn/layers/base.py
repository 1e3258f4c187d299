"""``nn.Module``: a dict of parameters (arrays) and sub-modules, as ``mlx.nn.Module``.

A module's entries are its parameters and children: arrays, modules, and lists or dicts of
them. Attribute access reads and writes the entries (``self.weight = mx.zeros(...)`` stores the
entry ``"weight"``); anything that is not an array, list, tuple or dict is a plain attribute.
Entries whose key starts with ``_`` are not parameters.
"""

import textwrap

import oxmx.core as mx
from oxmx.utils import tree_flatten, tree_unflatten

__all__ = ["Module"]


# The nested tree of dotted names (list levels keep MLX's `{}` gaps): oxmx.utils' own.
unflatten_weights = tree_unflatten


def _walk(module, key, value, filter_fn, map_fn, is_leaf_fn):
    """The filtered-and-mapped image of ``value`` (the entry ``key`` of ``module``)."""
    if is_leaf_fn(module, key, value):
        return map_fn(value)
    if isinstance(value, Module):
        return {
            k: _walk(value, k, v, filter_fn, map_fn, is_leaf_fn)
            for k, v in value.items()
            if filter_fn(value, k, v)
        }
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            path = "{}.{}".format(key, k)
            out[k] = _walk(module, path, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(module, path, v) else {}
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value):
            path = "{}.{}".format(key, i)
            out.append(_walk(module, path, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(module, path, v) else {})
        return out
    raise RuntimeError("Unexpected leaf found while traversing the module")


class Module(dict):
    """The base class of layers and models (see the module docstring)."""

    def __init__(self):
        self._no_grad = set()
        self._training = True

    # ---- entries as attributes
    def __getattr__(self, key):
        try:
            value = self[key]
        except KeyError:
            raise AttributeError("{!r} object has no attribute {!r}".format(type(self).__name__, key)) from None
        return value

    def __setattr__(self, key, value):
        if isinstance(value, (mx.array, dict, list, tuple)):
            if key in self.__dict__:
                object.__delattr__(self, key)
            self[key] = value
        else:
            if key in self:
                del self[key]
            object.__setattr__(self, key, value)

    def __delattr__(self, key):
        if key in self:
            del self[key]
        else:
            object.__delattr__(self, key)

    # ---- mode and state
    @property
    def training(self):
        """Whether the module is in training mode (``train()``/``eval()`` set it)."""
        return self._training

    @property
    def state(self):
        """The module itself: its entries are its whole state (for ``mx.compile`` and ``mx.eval``)."""
        return self

    def _extra_repr(self):
        return ""

    def __repr__(self):
        kids = tree_flatten(self.children(), is_leaf=self.is_module)
        text = "{}({}".format(type(self).__name__, self._extra_repr())
        for k, v in kids:
            text += "\n" + textwrap.indent("({}): {}".format(k, repr(v)), "  ")
        if kids:
            text += "\n"
        return text + ")"

    # ---- filters
    @staticmethod
    def is_module(value):
        return isinstance(value, Module)

    @staticmethod
    def valid_child_filter(module, key, value):
        return isinstance(value, (dict, list))

    @staticmethod
    def valid_parameter_filter(module, key, value):
        return isinstance(value, (dict, list, mx.array)) and not key.startswith("_")

    @staticmethod
    def trainable_parameter_filter(module, key, value):
        return Module.valid_parameter_filter(module, key, value) and key not in module._no_grad

    def filter_and_map(self, filter_fn, map_fn=None, is_leaf_fn=None):
        """A tree of the entries that ``filter_fn(module, key, value)`` keeps, through ``map_fn``
        at the leaves (``is_leaf_fn(module, key, value)``; by default: not a module, dict or list)."""
        map_fn = map_fn or (lambda x: x)
        is_leaf_fn = is_leaf_fn or (lambda m, k, v: not isinstance(v, (Module, dict, list, tuple)))
        return {k: _walk(self, k, v, filter_fn, map_fn, is_leaf_fn) for k, v in self.items() if filter_fn(self, k, v)}

    # ---- trees of parameters and modules
    def parameters(self):
        """All parameters (arrays) as a nested dict."""
        return self.filter_and_map(self.valid_parameter_filter)

    def trainable_parameters(self):
        """The parameters that are not frozen, as a nested dict."""
        return self.filter_and_map(self.trainable_parameter_filter)

    def children(self):
        """The direct sub-modules (inside lists and dicts too)."""
        return self.filter_and_map(self.valid_child_filter, is_leaf_fn=lambda m, k, v: isinstance(v, Module))

    def leaf_modules(self):
        """The sub-modules that have no sub-modules of their own."""

        def is_leaf(m, k, v):
            return isinstance(v, Module) and len(tree_flatten(v.children(), is_leaf=self.is_module)) == 0

        return self.filter_and_map(self.valid_child_filter, is_leaf_fn=is_leaf)

    def named_modules(self):
        """``(dotted.name, module)`` for this module (name ``""``) and every sub-module."""
        out = []
        stack = [("", self)]
        while stack:
            prefix, m = stack.pop()
            out.append((prefix, m))
            prefix = "." + prefix if prefix else ""
            stack.extend(tree_flatten(m.children(), prefix=prefix, is_leaf=self.is_module))
        return out

    def modules(self):
        """This module and every sub-module."""
        return [m for _, m in self.named_modules()]

    def apply_to_modules(self, apply_fn):
        """``apply_fn(dotted.name, module)`` on this module and every sub-module."""
        stack = [("", self)]
        while stack:
            prefix, m = stack.pop()
            apply_fn(prefix, m)
            prefix = "." + prefix if prefix else ""
            stack.extend(tree_flatten(m.children(), prefix=prefix, is_leaf=self.is_module))
        return self

    # ---- updates
    def update(self, parameters, strict=True):
        """Replaces parameters with the arrays of the (possibly partial) tree ``parameters``.

        With ``strict``, a key the module lacks, or a non-array where it has an array, is a
        ``ValueError``."""

        def put(dst, key, new):
            cur = dst[key]
            if isinstance(cur, mx.array):
                if strict and not isinstance(new, mx.array):
                    raise ValueError("Received invalid type: {}.".format(type(new).__name__))
                dst[key] = new
            else:
                walk(cur, new)

        def walk(dst, params):
            if isinstance(params, dict):
                for k, new in params.items():
                    if isinstance(dst, dict) and k in dst:
                        put(dst, k, new)
                    elif strict:
                        raise ValueError('Module does not have parameter named "{}".'.format(k))
            elif isinstance(params, (list, tuple)):
                for i, new in enumerate(params):
                    if isinstance(dst, (list, tuple)) and i < len(dst):
                        if isinstance(dst, tuple):
                            if strict:
                                raise ValueError("Cannot update a parameter inside a tuple.")
                            continue
                        put(dst, i, new)
                    elif strict:
                        raise ValueError(
                            "List index {} is out of bounds for destination of length {}.".format(i, len(dst)))
            elif strict:
                raise ValueError("Received invalid type: {}.".format(type(params).__name__))

        walk(self, parameters)
        return self

    def update_modules(self, modules, strict=True):
        """Replaces sub-modules with those of the (possibly partial) tree ``modules``."""

        def put(dst, key, new):
            cur = dst[key]
            if isinstance(cur, Module) and isinstance(new, Module):
                dst[key] = new
            elif isinstance(cur, (dict, list)):
                walk(cur, new)
            elif strict and new != {}:
                raise ValueError("Received invalid type: {}.".format(type(new).__name__))

        def walk(dst, mods):
            if isinstance(mods, dict):
                for k, new in mods.items():
                    if isinstance(dst, dict) and k in dst:
                        put(dst, k, new)
                    elif strict:
                        raise ValueError('Module does not have sub-module named "{}".'.format(k))
            elif isinstance(mods, list):
                for i, new in enumerate(mods):
                    if isinstance(dst, list) and i < len(dst):
                        put(dst, i, new)
                    elif strict:
                        raise ValueError(
                            "List index {} is out of bounds for destination of length {}.".format(i, len(dst)))
            elif strict:
                raise ValueError("Received invalid type: {}.".format(type(mods).__name__))

        walk(self, modules)
        return self

    def apply(self, map_fn, filter_fn=None):
        """Replaces each parameter ``p`` (that ``filter_fn`` keeps) with ``map_fn(p)``."""
        filter_fn = filter_fn or self.valid_parameter_filter
        self.update(self.filter_and_map(filter_fn, map_fn))
        return self

    def set_dtype(self, dtype, predicate=lambda d: mx.issubdtype(d, mx.floating)):
        """Casts the parameters whose dtype satisfies ``predicate`` (floating ones by default)."""
        predicate = predicate or (lambda d: True)
        self.apply(lambda x: x.astype(dtype) if predicate(x.dtype) else x)

    # ---- freezing and modes
    def _local_parameter_keys(self):
        """Dotted paths of this module's own arrays (not those of its sub-modules)."""
        own = self.filter_and_map(lambda m, k, v: not isinstance(v, Module) and m.valid_parameter_filter(m, k, v))
        return [k for k, _ in tree_flatten(own)]

    def _check_keys(self, keys, strict):
        if isinstance(keys, str):
            keys = [keys]
        if strict:
            for k in keys:
                if k not in self:
                    raise KeyError("Module doesn't contain member {}.".format(k))
        return keys

    def freeze(self, *, recurse=True, keys=None, strict=False):
        """Excludes parameters from ``trainable_parameters()`` (all, or those named ``keys``) of this
        module and, with ``recurse``, of its sub-modules."""

        def one(_, m):
            ks = m._local_parameter_keys() if keys is None else m._check_keys(keys, strict)
            m._no_grad.update(ks)

        if recurse:
            self.apply_to_modules(one)
        else:
            one("", self)
        return self

    def unfreeze(self, *, recurse=True, keys=None, strict=False):
        """Undoes ``freeze`` (for all parameters, or those named ``keys``)."""

        def one(_, m):
            if keys is None:
                m._no_grad.clear()
            else:
                m._no_grad.difference_update(m._check_keys(keys, strict))

        if recurse:
            self.apply_to_modules(one)
        else:
            one("", self)
        return self

    def train(self, mode=True):
        """Sets training mode (``mode``) on this module and its sub-modules."""

        def one(_, m):
            m._set_training_mode(mode)

        self.apply_to_modules(one)
        return self

    def _set_training_mode(self, mode):
        self._training = mode

    def eval(self):
        """Sets evaluation mode (``train(False)``)."""
        return self.train(False)

    # ---- weights on disk
    def load_weights(self, file_or_weights, strict=True):
        """Loads parameters from a ``.safetensors``/``.npz`` file or a list of ``(name, array)``.

        With ``strict``, extra, missing, non-array and mis-shaped weights are ``ValueError``s."""
        weights = file_or_weights
        if isinstance(weights, str) or hasattr(weights, "__fspath__"):
            weights = list(mx.load(str(weights)).items())
        elif isinstance(weights, dict):
            weights = list(weights.items())
        if strict:
            new = dict(weights)
            cur = dict(tree_flatten(self.parameters()))
            extra = sorted(set(new) - set(cur))
            if extra:
                raise ValueError(
                    "Received {} parameters not in model: \n{}.".format(len(extra), ",\n".join(extra)))
            missing = sorted(set(cur) - set(new))
            if missing:
                raise ValueError("Missing {} parameters: \n{}.".format(len(missing), ",\n".join(missing)))
            for k, v in cur.items():
                w = new[k]
                if not isinstance(w, mx.array):
                    raise ValueError("Expected mx.array but received {} for parameter {}".format(type(w), k))
                if tuple(w.shape) != tuple(v.shape):
                    raise ValueError(
                        "Expected shape {} but received shape {} for parameter {}".format(
                            tuple(v.shape), tuple(w.shape), k))
        if len(weights) != 0:
            self.update(unflatten_weights(weights), strict=False)
        return self

    def save_weights(self, file):
        """Saves the parameters to ``file`` (``.safetensors`` or ``.npz``)."""
        file = str(file)
        params = dict(tree_flatten(self.parameters()))
        if file.endswith(".npz"):
            mx.savez(file, **params)
        elif file.endswith(".safetensors"):
            mx.save_safetensors(file, params)
        else:
            raise ValueError("Unsupported file extension for {}. Use '.npz' or '.safetensors'.".format(file))
