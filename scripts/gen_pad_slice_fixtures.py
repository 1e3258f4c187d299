"""Expected values for pad modes (NumPy's np.pad, which MLX matches) and dynamic slice /
slice_update (MLX, in-range starts). Writes crates/oxmx-core/tests/fixtures/pad_slice.json.
Rerun: python3 scripts/gen_pad_slice_fixtures.py
"""
import json
import os

import mlx.core as mx
import numpy as np

rng = np.random.default_rng(7)
out = {"pad": [], "slice": [], "slice_update": []}

for shape, widths in [((5,), [(3, 4)]), ((5,), [(6, 0)]), ((5,), [(0, 11)]), ((1,), [(2, 3)]), ((3, 4), [(2, 1), (0, 5)]),
                      ((2, 3, 2), [(1, 1), (4, 2), (0, 3)]), ((2, 2), [(0, 0), (3, 3)])]:
    a = rng.integers(-9, 10, shape).astype(np.int32)
    for mode in ("reflect", "symmetric", "edge"):
        r = np.pad(a, widths, mode=mode)
        m = np.array(mx.pad(mx.array(a), widths, mode=mode))
        assert (m == r).all(), (shape, widths, mode)
        out["pad"].append({"shape": list(shape), "data": a.ravel().tolist(), "widths": widths, "mode": mode,
                           "out_shape": list(r.shape), "out": r.ravel().tolist()})

for shape, start, axes, size in [((3, 4), [1, 2], [0, 1], [2, 2]), ((3, 4), [1], [0], [1, 4]), ((3, 4), [1], [1], [2, 1]),
                                 ((2, 5, 3), [3, 1], [1, 2], [2, 2, 2]), ((6,), [0], [0], [6])]:
    a = rng.integers(-9, 10, shape).astype(np.int32)
    r = np.array(mx.slice(mx.array(a), mx.array(start), tuple(axes), tuple(size)))
    out["slice"].append({"shape": list(shape), "data": a.ravel().tolist(), "start": start, "axes": axes, "size": size,
                         "out": r.ravel().tolist()})

for shape, ushape, start, axes in [((3, 4), (1, 2), [2, 1], [0, 1]), ((3, 4), (3, 1), [2], [1]), ((2, 5, 3), (2, 2, 3), [1], [1]),
                                   ((4, 4), (2,), [1, 2], [0, 1])]:
    a = rng.integers(-9, 10, shape).astype(np.int32)
    u = rng.integers(100, 200, ushape).astype(np.int32)
    r = np.array(mx.slice_update(mx.array(a), mx.array(u), mx.array(start), tuple(axes)))
    out["slice_update"].append({"shape": list(shape), "data": a.ravel().tolist(), "ushape": list(ushape), "update": u.ravel().tolist(),
                                "start": start, "axes": axes, "out": r.ravel().tolist()})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-core", "tests", "fixtures", "pad_slice.json")
with open(path, "w") as fh:
    json.dump(out, fh)
print("wrote", path)
