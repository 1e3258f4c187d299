"""oxmx.utils against mlx.utils on the same trees."""

import pytest

import oxmx.utils as ou

mu = pytest.importorskip("mlx.utils")

TREES = [
    {"a": [1, {"b": 2}], "c": (3, 4)},
    [1, [2, 3], {"x": 4, "y": [5]}],
    {"layers": [{"w": 1, "b": 2}, {"w": 3, "b": 4}], "head": {"w": 5}},
    {"a": None, "b": []},
    7,
    {"model": {"layers": [[1, 2], [3]], "n": 0}},
]


@pytest.mark.parametrize("tree", TREES, ids=repr)
def test_flatten_unflatten(tree):
    assert ou.tree_flatten(tree) == mu.tree_flatten(tree)
    assert ou.tree_flatten(tree, prefix=".p") == mu.tree_flatten(tree, prefix=".p")
    assert ou.tree_flatten(tree, destination={}) == mu.tree_flatten(tree, destination={})
    flat = mu.tree_flatten(tree)
    if flat and flat[0][0] != "":
        assert ou.tree_unflatten(flat) == mu.tree_unflatten(flat)
        assert ou.tree_unflatten(dict(flat)) == mu.tree_unflatten(dict(flat))
    leaf = lambda x: isinstance(x, list)  # noqa: E731
    assert ou.tree_flatten(tree, is_leaf=leaf) == mu.tree_flatten(tree, is_leaf=leaf)


@pytest.mark.parametrize("tree", TREES, ids=repr)
def test_map_reduce(tree):
    f = lambda x: None if x is None else x * 10  # noqa: E731
    assert ou.tree_map(f, tree) == mu.tree_map(f, tree)
    g = lambda x, y: None if x is None else x + y  # noqa: E731
    assert ou.tree_map(g, tree, tree) == mu.tree_map(g, tree, tree)
    h = lambda p, x: (p, x)  # noqa: E731
    assert ou.tree_map_with_path(h, tree) == mu.tree_map_with_path(h, tree)
    num = lambda a, b: (a or 0) + (b or 0)  # noqa: E731
    assert ou.tree_reduce(num, tree) == mu.tree_reduce(num, tree)
    assert ou.tree_reduce(num, tree, 100) == mu.tree_reduce(num, tree, 100)


def test_merge():
    a = {"x": [1, None], "y": {"p": 2}}
    b = {"x": [None, 3], "y": {"q": 4}}
    assert ou.tree_merge(a, b) == mu.tree_merge(a, b)
    with pytest.raises(ValueError):
        ou.tree_merge({"x": 1}, {"x": 2})
    assert ou.tree_merge({"x": 1}, {"x": 2}, lambda u, v: u + v) == mu.tree_merge({"x": 1}, {"x": 2}, lambda u, v: u + v)


def test_tree_unflatten_keeps_list_gaps_like_mlx():
    flat = [("layers.0.w", 1), ("layers.2.w", 2), ("head", 3)]
    assert ou.tree_unflatten(flat) == mu.tree_unflatten(flat) == {"layers": [{"w": 1}, {}, {"w": 2}], "head": 3}
