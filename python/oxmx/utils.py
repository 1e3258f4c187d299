"""``oxmx.utils``: helpers over trees (nested lists, tuples and dicts), as ``mlx.utils``.

Trees are Python containers, so these are Python: lists and tuples are indexed by position,
dicts by key; anything else (or whatever ``is_leaf`` accepts) is a leaf.
"""

from itertools import zip_longest as _zip_longest

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "tree_map_with_path", "tree_reduce", "tree_merge"]


def _children(tree):
    """(key, child) pairs of a list/tuple/dict node, or None for a leaf."""
    if isinstance(tree, (list, tuple)):
        return list(enumerate(tree))
    if isinstance(tree, dict):
        return list(tree.items())
    return None


def tree_flatten(tree, prefix="", is_leaf=None, destination=None):
    """The leaves of ``tree`` as ``(dotted.path, leaf)`` pairs (or into ``destination``, a list
    or a dict). ``prefix`` is put before every path (its first character is dropped, so a prefix
    of ``".model"`` gives ``"model.0"``)."""
    if destination is None:
        destination = []
    add = destination.append if isinstance(destination, list) else (
        lambda kv: destination.__setitem__(kv[0], kv[1]))

    def walk(node, path):
        kids = None if (is_leaf is not None and is_leaf(node)) else _children(node)
        if kids is None:
            add((path[1:], node))
            return
        for k, child in kids:
            walk(child, "{}.{}".format(path, k))

    walk(tree, prefix)
    return destination


def tree_unflatten(tree):
    """The nested structure that ``tree_flatten`` produced ``tree`` from: levels whose keys are
    all integers become lists, the others dicts."""
    items = list(tree.items()) if isinstance(tree, dict) else list(tree)
    if len(items) == 1 and items[0][0] == "":
        return items[0][1]
    groups = {}
    for key, value in items:
        head, _, rest = key.partition(".")
        groups.setdefault(head, []).append((rest, value))

    def build(entries):
        if len(entries) == 1 and entries[0][0] == "":
            return entries[0][1]
        return tree_unflatten(entries)

    if groups and all(k.isdigit() for k in groups):
        # Missing indices are empty dicts, as in MLX (`layers.0` and `layers.2` keep their places).
        out = [{} for _ in range(max(int(k) for k in groups) + 1)]
        for k, v in groups.items():
            out[int(k)] = build(v)
        return out
    return {k: build(v) for k, v in groups.items()}


def tree_map(fn, tree, *rest, is_leaf=None):
    """``fn`` applied to each leaf of ``tree`` (and the matching nodes of ``rest``), in a tree of
    the same structure."""
    kids = None if (is_leaf is not None and is_leaf(tree)) else _children(tree)
    if kids is None:
        return fn(tree, *rest)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *[r[k] for r in rest], is_leaf=is_leaf) for k, v in kids}
    return type(tree)(tree_map(fn, v, *[r[i] for r in rest], is_leaf=is_leaf) for i, v in kids)


def tree_map_with_path(fn, tree, *rest, is_leaf=None, path=None):
    """Like ``tree_map`` with ``fn(path, leaf, *rest)``; ``path`` is the dotted path."""
    kids = None if (is_leaf is not None and is_leaf(tree)) else _children(tree)
    if kids is None:
        return fn(path, tree, *rest)

    def sub(k):
        return str(k) if path is None else "{}.{}".format(path, k)

    if isinstance(tree, dict):
        return {k: tree_map_with_path(fn, v, *[r[k] for r in rest], is_leaf=is_leaf, path=sub(k)) for k, v in kids}
    return type(tree)(tree_map_with_path(fn, v, *[r[i] for r in rest], is_leaf=is_leaf, path=sub(i)) for i, v in kids)


_NOTHING = object()


def tree_reduce(fn, tree, initializer=None, is_leaf=None):
    """Folds ``fn(accumulator, leaf)`` over the leaves (the first leaf starts the fold when no
    ``initializer`` is given)."""
    acc = _NOTHING if initializer is None else initializer
    for _, leaf in tree_flatten(tree, is_leaf=is_leaf):
        acc = leaf if acc is _NOTHING else fn(acc, leaf)
    return None if acc is _NOTHING else acc


def _is_empty(t):
    return t is None or (isinstance(t, (list, tuple, dict)) and len(t) == 0)


def tree_merge(tree_a, tree_b, merge_fn=None):
    """Merges two trees of the same shape where each position is set in at most one of them
    (``merge_fn(a, b)`` decides when both are)."""
    if _is_empty(tree_a):
        return tree_b
    if _is_empty(tree_b):
        return tree_a
    if isinstance(tree_a, dict) and isinstance(tree_b, dict):
        out = dict(tree_a)
        for k, v in tree_b.items():
            out[k] = tree_merge(tree_a[k], v, merge_fn) if k in tree_a else v
        return out
    if isinstance(tree_a, (list, tuple)) and isinstance(tree_b, (list, tuple)) and type(tree_a) is type(tree_b):
        return type(tree_a)(tree_merge(a, b, merge_fn) for a, b in _zip_longest(tree_a, tree_b))
    if merge_fn is None:
        raise ValueError("Trees contain elements at the same locations but no merge function was provided")
    return merge_fn(tree_a, tree_b)
