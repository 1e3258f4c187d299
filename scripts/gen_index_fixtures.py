#!/usr/bin/env python3
"""Oracle data for indexing tests: NumPy computes the expected results.

Writes crates/oxmx-core/tests/fixtures/index.json. Rerun: python3 scripts/gen_index_fixtures.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(1234)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "index.json")


def arr(shape):
    return rng.standard_normal(shape).astype(np.float32)


def ints(low, high, shape):
    return rng.integers(low, high, shape).astype(np.int32)


def enc(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}


def py_index(items):
    out = []
    for it in items:
        k = it[0]
        if k == "int":
            out.append(it[1])
        elif k == "slice":
            out.append(slice(*it[1]))
        elif k == "new":
            out.append(None)
        elif k == "ellipsis":
            out.append(Ellipsis)
        elif k == "array":
            out.append(np.asarray(it[1], dtype=np.int32))
    return tuple(out)


cases = []
# NumPy-style indexing: (shape, index items)
index_cases = [
    ((5, 6), [("int", 1)]),
    ((5, 6), [("int", -1), ("slice", [None, None, -2])]),
    ((4, 5, 6), [("slice", [1, 4, 1]), ("new",), ("ellipsis",), ("int", 2)]),
    ((4, 5, 6), [("ellipsis",), ("slice", [None, None, -1])]),
    ((7,), [("array", ints(-7, 7, (3, 2)).tolist())]),
    ((4, 5, 6), [("array", [0, 3, -1]), ("slice", [None, None, 2])]),
    ((4, 5, 6), [("slice", [None, None, None]), ("array", [[1, 2], [3, 4]]), ("array", [0, 5])]),
    ((4, 5, 6), [("array", [1, 2]), ("slice", [None, None, None]), ("array", [0, 5])]),
    ((4, 5, 6), [("int", 2), ("slice", [None, None, None]), ("array", [0, 5, 1])]),
    ((3, 4), [("new",), ("array", [2, 0]), ("new",)]),
]
for shape, items in index_cases:
    x = arr(shape)
    cases.append({"kind": "index", "x": enc(x), "index": items, "expected": enc(x[py_index(items)])})

# Functional updates: a.at[idx].set / add
for shape, items in [((5, 6), [("int", 1)]), ((4, 5, 6), [("slice", [1, None, 2]), ("new",), ("ellipsis",), ("int", -1)]),
                     ((6,), [("array", [0, 2, 2, 5])]), ((4, 5), [("array", [1, 1, 3]), ("array", [0, 0, 4])])]:
    x = arr(shape)
    idx = py_index(items)
    sel_shape = x[idx].shape
    v = arr(sel_shape)
    s = x.copy(); s[idx] = v
    a = x.copy(); np.add.at(a, idx, v)
    cases.append({"kind": "set", "x": enc(x), "index": items, "values": enc(v), "expected": enc(s)})
    cases.append({"kind": "add", "x": enc(x), "index": items, "values": enc(v), "expected": enc(a)})

for shape, axis, ishape in [((5, 6), 0, (3,)), ((5, 6), 1, (2, 2)), ((4, 5, 6), -1, (7,)), ((8,), None, (2, 3))]:
    x = arr(shape)
    n = x.size if axis is None else x.shape[axis]
    i = ints(-n, n, ishape)
    cases.append({"kind": "take", "x": enc(x), "indices": enc(i), "axis": axis, "expected": enc(np.take(x, i, axis=axis))})

for shape, axis, ishape in [((5, 6), 0, (3, 6)), ((5, 6), 1, (5, 2)), ((4, 5, 6), -1, (4, 1, 3)), ((4, 5, 6), 1, (1, 5, 6))]:
    x = arr(shape)
    ax = axis % len(shape)
    i = ints(0, shape[ax], ishape)
    cases.append({"kind": "take_along_axis", "x": enc(x), "indices": enc(i), "axis": axis,
                  "expected": enc(np.take_along_axis(x, i, axis=axis))})
    # put_along_axis with unique indices along the axis (duplicate writes have no fixed order).
    perm = np.argsort(rng.random((shape[ax],) + tuple(d for k, d in enumerate(shape) if k != ax)), axis=0)
    perm = np.moveaxis(perm, 0, ax)
    ui = np.take(perm, np.arange(min(2, shape[ax])), axis=ax).astype(np.int32)
    v = arr(ui.shape)
    p = x.copy(); np.put_along_axis(p, ui, v, axis=axis)
    cases.append({"kind": "put_along_axis", "x": enc(x), "indices": enc(ui), "values": enc(v), "axis": axis, "expected": enc(p)})

with open(OUT, "w") as f:
    json.dump({"cases": cases}, f)
print(f"wrote {len(cases)} cases to {OUT}")
