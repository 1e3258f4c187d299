#!/usr/bin/env python3
"""NumPy oracle for repeat/tile/roll/flip/diag/diagonal/trace/pad(edge) tests.

Writes crates/oxmx-core/tests/fixtures/arrange.json. Rerun: python3 scripts/gen_arrange_fixtures.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(7)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "arrange.json")


def enc(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": a.reshape(-1).tolist()}


cases = []
for shape in [(3,), (2, 3), (2, 3, 4)]:
    x = rng.standard_normal(shape).astype(np.float32)
    for axis in [None] + list(range(-len(shape), len(shape))):
        cases.append({"op": "repeat", "x": enc(x), "repeats": 3, "axis": axis, "expected": enc(np.repeat(x, 3, axis=axis))})
        for shift in [1, -2, 7]:
            cases.append({"op": "roll", "x": enc(x), "shift": shift, "axis": axis, "expected": enc(np.roll(x, shift, axis=axis))})
    for reps in [[2], [2, 1], [1, 3, 2]]:
        cases.append({"op": "tile", "x": enc(x), "reps": reps, "expected": enc(np.tile(x, reps))})
    cases.append({"op": "flip", "x": enc(x), "axes": [], "expected": enc(np.flip(x))})
    cases.append({"op": "flip", "x": enc(x), "axes": [0], "expected": enc(np.flip(x, 0))})
    widths = [[1, 2]] * len(shape)
    cases.append({"op": "pad_edge", "x": enc(x), "widths": widths, "expected": enc(np.pad(x, widths, mode="edge"))})
for shape in [(4, 4), (3, 5), (2, 3, 4)]:
    x = rng.standard_normal(shape).astype(np.float32)
    for off in [0, 1, -1, 2]:
        cases.append({"op": "diagonal", "x": enc(x), "offset": off, "axis1": 0, "axis2": 1, "expected": enc(np.diagonal(x, off, 0, 1))})
        cases.append({"op": "trace", "x": enc(x), "offset": off, "axis1": 0, "axis2": 1, "expected": enc(np.trace(x, off, 0, 1).astype(np.float32))})
    if len(shape) == 3:
        cases.append({"op": "diagonal", "x": enc(x), "offset": 1, "axis1": -1, "axis2": 0, "expected": enc(np.diagonal(x, 1, -1, 0))})
for k in [0, 2, -1]:
    v = rng.standard_normal(4).astype(np.float32)
    cases.append({"op": "diag", "x": enc(v), "offset": k, "expected": enc(np.diag(v, k))})
    m = rng.standard_normal((4, 5)).astype(np.float32)
    cases.append({"op": "diag", "x": enc(m), "offset": k, "expected": enc(np.diag(m, k))})
with open(OUT, "w") as f:
    json.dump({"cases": cases}, f)
print(f"wrote {len(cases)} cases")
