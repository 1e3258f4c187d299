"""Expected values for einsum / einsum_path, median, gather_mm and block_masked_mm, from MLX
(CPU build) on random inputs. Writes crates/oxmx-core/tests/fixtures/contract.json.
Rerun: python3 scripts/gen_contract_fixtures.py
"""
import json
import os

import mlx.core as mx
import numpy as np

rng = np.random.default_rng(20261122)


def arr(shape, dtype="float32"):
    if dtype.startswith("int"):
        v = rng.integers(-5, 6, shape).astype(dtype)
    elif dtype == "bool":
        v = rng.integers(0, 2, shape).astype(bool)
    else:
        v = rng.standard_normal(shape).astype("float32")
    return v


def enc(a):
    a = np.array(a)
    dt = str(a.dtype)
    # float32 values are written with their shortest round-trip repr to keep the file small.
    data = [float(str(np.float32(x))) if a.dtype == np.float32 else float(x) if a.dtype.kind == "f" else int(x)
            for x in (a.ravel() if a.dtype == np.float32 else a.astype(np.float64 if a.dtype.kind == "f" else np.int64).ravel())]
    data = ["nan" if isinstance(x, float) and x != x else x for x in data]
    return {"dtype": dt, "shape": list(a.shape), "data": data}


def mxenc(a):
    name = str(a.dtype).split(".")[-1]
    v = np.array(a.astype(mx.float32) if name in ("float16", "bfloat16") else a)
    e = enc(v)
    e["dtype"] = name
    return e


def to_mx(v, dtype=None):
    a = mx.array(v)
    return a.astype(getattr(mx, dtype)) if dtype else a


out = {"einsum": [], "einsum_path": [], "median": [], "gather_mm": [], "block_masked_mm": []}

EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->ji", [(3, 5)]),
    ("ij->", [(3, 5)]),
    ("ij", [(3, 5)]),
    ("ji", [(3, 5)]),
    ("i,i->", [(6,), (6,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...i,...i->...", [(3, 4, 5), (4, 5)]),
    ("ijk,kj->i", [(2, 3, 4), (4, 3)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ("ab,bc,cd,de->ae", [(5, 2), (2, 6), (6, 3), (3, 4)]),
    ("abc,cd,dea->be", [(2, 3, 4), (4, 5), (5, 6, 2)]),
    ("iij->j", [(3, 3, 4)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,i,i->i", [(5,), (5,), (5,)]),
    ("ij,jk->ki", [(1, 4), (4, 5)]),
    ("ij,j->i", [(3, 1), (4,)]),
    (",ij->ij", [(), (2, 3)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 5, 8)]),
]
for sub, shapes in EINSUM:
    for dt in ("float32", "int32"):
        ins = [arr(s, dt) for s in shapes]
        # MLX's matmul rejects integers, so integer einsums take NumPy as the oracle.
        r = mxenc(mx.einsum(sub, *[to_mx(v) for v in ins])) if dt == "float32" else enc(np.einsum(sub, *ins))
        out["einsum"].append({"subscripts": sub, "inputs": [enc(v) for v in ins], "out": r})

for sub, shapes in [("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]), ("ab,bc,cd,de->ae", [(5, 2), (2, 6), (6, 3), (3, 4)]),
                    ("ij,jk->ik", [(3, 4), (4, 5)]), ("abc,cd,dea->be", [(2, 3, 4), (4, 5), (5, 6, 2)])]:
    path, info = mx.einsum_path(sub, *[mx.zeros(s) for s in shapes])
    out["einsum_path"].append({"subscripts": sub, "shapes": [list(s) for s in shapes],
                               "path": [list(p) for p in path], "info": info})

for shape, axis, keepdims, dt in [((7,), None, False, "float32"), ((6,), None, False, "float32"), ((3, 4, 5), 1, False, "float32"),
                                  ((3, 4, 5), (0, 2), True, "float32"), ((3, 4, 5), -1, True, "int32"), ((4, 6), 0, False, "float16"),
                                  ((2, 3, 4), None, True, "float32"), ((5, 2), (0, 1), False, "int32")]:
    v = arr(shape, "int32" if dt == "int32" else "float32")
    if dt == "float32" and len(shape) == 3:
        v.ravel()[3] = np.nan
    a = to_mx(v, dt if dt == "float16" else None)
    r = mx.median(a, axis=axis, keepdims=keepdims)
    out["median"].append({"input": mxenc(a), "axis": None if axis is None else ([axis] if isinstance(axis, int) else list(axis)),
                          "keepdims": keepdims, "out": mxenc(r)})

for ash, bsh, li, ri in [((3, 4, 5), (2, 5, 6), [0, 2, 1], [1, 1, 0]), ((3, 4, 5), (2, 5, 6), [[0], [2]], [1, 0]),
                         ((3, 4, 5), (2, 5, 6), [0, 2], None), ((3, 4, 5), (2, 5, 6), None, [1, 0, 1]),
                         ((2, 3, 2, 5), (4, 5, 3), [5, 0, 3], [3, 3, 1]), ((1, 3, 4), (6, 4, 2), [0, 0, 0, 0], [5, 1, 2, 0])]:
    a, b = arr(ash), arr(bsh)
    lim = None if li is None else mx.array(np.array(li, dtype=np.uint32))
    rim = None if ri is None else mx.array(np.array(ri, dtype=np.uint32))
    r = mx.gather_mm(mx.array(a), mx.array(b), lim, rim)
    out["gather_mm"].append({"a": enc(a), "b": enc(b), "lhs": None if li is None else enc(np.array(li, dtype=np.uint32)),
                             "rhs": None if ri is None else enc(np.array(ri, dtype=np.uint32)), "out": mxenc(r)})

for (m, k, n), bs, batch, kinds in [((40, 35, 33), 32, (), ("bool", "bool", "bool")), ((64, 33, 40), 32, (), ("float32", None, "float32")),
                                    ((33, 40, 20), 32, (2,), (None, "bool", "bool")), ((66, 20, 65), 64, (), ("float32", "bool", None))]:
    a, b = arr(batch + (m, k)), arr(batch + (k, n))
    def mk(kind, r, c):
        if kind is None:
            return None
        sh = batch + (-(-r // bs), -(-c // bs))
        return rng.integers(0, 2, sh).astype(bool) if kind == "bool" else rng.uniform(0, 2, sh).astype("float32")
    mo, ml, mr = mk(kinds[0], m, n), mk(kinds[1], m, k), mk(kinds[2], k, n)
    r = mx.block_masked_mm(mx.array(a), mx.array(b), bs, None if mo is None else mx.array(mo),
                           None if ml is None else mx.array(ml), None if mr is None else mx.array(mr))
    out["block_masked_mm"].append({"a": enc(a), "b": enc(b), "block_size": bs,
                                   "mask_out": None if mo is None else enc(mo), "mask_lhs": None if ml is None else enc(ml),
                                   "mask_rhs": None if mr is None else enc(mr), "out": mxenc(r)})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-core", "tests", "fixtures", "contract.json")
with open(path, "w") as fh:
    json.dump(out, fh)
print("wrote", path, os.path.getsize(path), "bytes")
