"""Expected values for oxmx's linalg namespace, produced by MLX (CPU build) with numpy for the
inputs (fresh random, well conditioned) and where MLX has no answer (broadcast solve).

Writes crates/oxmx-core/tests/fixtures/linalg.json. Each case stores its inputs and MLX's
outputs as flat row-major lists with their shapes; factors that are not unique (QR's, SVD's
and eigenvectors) are checked in the Rust test by reconstruction, the rest compared directly.
"""
import json
import os

import mlx.core as mx
import numpy as np

rng = np.random.default_rng(20261122)
CPU = mx.cpu
DT = {"float32": np.float32, "float64": np.float64}
MX = {"float32": mx.float32, "float64": mx.float64}


def flat(a):
    a = np.array(a)
    if np.iscomplexobj(a):
        return [float(x) for z in a.ravel() for x in (z.real, z.imag)]
    return [float(x) for x in a.ravel()]


def arr(a, dt):
    return {"shape": list(a.shape), "dtype": dt, "data": flat(a)}


def mxa(a, dt):
    return mx.array(a.astype(DT[dt]), dtype=MX[dt])


def general(shape):
    return rng.standard_normal(shape)


def well_conditioned(shape):
    n = shape[-1]
    return rng.standard_normal(shape) + n * np.eye(n)


def spd(shape):
    b = rng.standard_normal(shape)
    return b @ np.swapaxes(b, -1, -2) + shape[-1] * np.eye(shape[-1])


out = {k: [] for k in ["inv", "tri_inv", "pinv", "cholesky", "cholesky_inv", "qr", "svd", "eigh", "eig", "lu", "solve",
                       "solve_triangular", "norm", "cross"]}

for shape, dt in [([1, 1], "float32"), ([4, 4], "float32"), ([3, 5, 5], "float64"), ([16, 16], "float32"), ([2, 2, 3, 3], "float64")]:
    a = well_conditioned(shape).astype(DT[dt])
    out["inv"].append({"a": arr(a, dt), "out": arr(mx.linalg.inv(mxa(a, dt), stream=CPU), dt)})

for shape, dt, upper in [([4, 4], "float32", False), ([4, 4], "float32", True), ([2, 6, 6], "float64", True), ([1, 1], "float64", False)]:
    a = well_conditioned(shape).astype(DT[dt])  # both triangles filled: the kernel must ignore one
    out["tri_inv"].append({"a": arr(a, dt), "upper": upper, "out": arr(mx.linalg.tri_inv(mxa(a, dt), upper=upper, stream=CPU), dt)})

for shape, dt in [([4, 3], "float32"), ([3, 5], "float64"), ([2, 4, 2], "float32"), ([5, 5], "float64")]:
    a = general(shape).astype(DT[dt])
    out["pinv"].append({"a": arr(a, dt), "out": arr(mx.linalg.pinv(mxa(a, dt), stream=CPU), dt)})
# Rank deficient: an outer product; the cutoff must drop the noise-level singular values.
a = np.outer([1.0, 2.0, -1.0], [0.5, 1.0, 3.0, -2.0]).astype(np.float32)
out["pinv"].append({"a": arr(a, "float32"), "out": arr(mx.linalg.pinv(mxa(a, "float32"), stream=CPU), "float32")})

for shape, dt, upper in [([4, 4], "float32", False), ([4, 4], "float32", True), ([2, 3, 3], "float64", False), ([8, 8], "float64", True)]:
    s = spd(shape)
    # Garbage in the triangle that must not be read.
    junk = np.triu(np.full(shape, 7.5), 1) if not upper else np.tril(np.full(shape, 7.5), -1)
    keep = np.tril(s) if not upper else np.triu(s)
    a = (keep + junk).astype(DT[dt])
    l = mx.linalg.cholesky(mxa(a, dt), upper=upper, stream=CPU)
    out["cholesky"].append({"a": arr(a, dt), "upper": upper, "out": arr(l, dt)})
    f = np.array(l)
    out["cholesky_inv"].append({"a": arr(f, dt), "upper": upper, "out": arr(mx.linalg.cholesky_inv(mxa(f, dt), upper=upper, stream=CPU), dt)})

for shape, dt in [([4, 4], "float32"), ([6, 3], "float64"), ([3, 6], "float32"), ([2, 5, 4], "float64"), ([1, 1], "float32"), ([12, 12], "float64")]:
    a = general(shape).astype(DT[dt])
    q, r = mx.linalg.qr(mxa(a, dt), stream=CPU)
    out["qr"].append({"a": arr(a, dt), "q": arr(q, dt), "r": arr(r, dt)})

for shape, dt in [([4, 4], "float32"), ([6, 3], "float64"), ([3, 6], "float32"), ([2, 5, 4], "float64"), ([16, 10], "float32")]:
    a = general(shape).astype(DT[dt])
    _, s, _ = mx.linalg.svd(mxa(a, dt), stream=CPU)
    out["svd"].append({"a": arr(a, dt), "s": arr(s, dt)})

for shape, dt, uplo in [([4, 4], "float32", "L"), ([4, 4], "float64", "U"), ([3, 5, 5], "float32", "L"), ([10, 10], "float64", "L")]:
    s = general(shape)
    s = s + np.swapaxes(s, -1, -2)
    # Fill the unread triangle with junk: the result must only depend on `uplo`'s triangle.
    a = np.tril(s) + np.triu(np.full(shape, 3.0), 1) if uplo == "L" else np.triu(s) + np.tril(np.full(shape, 3.0), -1)
    a = a.astype(DT[dt])
    w = mx.linalg.eigvalsh(mxa(a, dt), UPLO=uplo, stream=CPU)
    out["eigh"].append({"a": arr(a, dt), "sym": arr(s.astype(DT[dt]), dt), "uplo": uplo, "w": arr(w, dt)})

for shape, dt in [([4, 4], "float32"), ([2, 3, 3], "float64"), ([6, 6], "float64"), ([1, 1], "float32")]:
    a = general(shape).astype(DT[dt])
    w = np.array(mx.linalg.eigvals(mxa(a, dt), stream=CPU))
    out["eig"].append({"a": arr(a, dt), "w": flat(w), "w_shape": list(w.shape)})
# A rotation: purely imaginary pair.
a = np.array([[0.0, -2.0], [2.0, 0.0]], dtype=np.float32)
out["eig"].append({"a": arr(a, "float32"), "w": flat(np.array(mx.linalg.eigvals(mxa(a, "float32"), stream=CPU))), "w_shape": [2]})

for shape, dt in [([5, 5], "float32"), ([4, 3], "float64"), ([3, 5], "float32"), ([2, 4, 4], "float64"), ([6, 6], "float64")]:
    a = general(shape).astype(DT[dt])
    p, l, u = mx.linalg.lu(mxa(a, dt), stream=CPU)
    lu, piv = mx.linalg.lu_factor(mxa(a, dt), stream=CPU)
    out["lu"].append({"a": arr(a, dt), "p": flat(p), "l": arr(l, dt), "u": arr(u, dt), "lu": arr(lu, dt), "piv": flat(piv)})

for ashape, bshape, dt in [([4, 4], [4, 2], "float32"), ([3, 4, 4], [3, 4, 1], "float64"), ([5, 5], [5], "float32"), ([3, 4, 4], [4], "float64"),
                           ([2, 1, 3, 3], [4, 3, 2], "float64"), ([12, 12], [12, 3], "float64")]:
    a = well_conditioned(ashape).astype(DT[dt])
    b = general(bshape).astype(DT[dt])
    if len(bshape) == 1 and len(ashape) > 2:
        # MLX fails on a batched matrix with a vector; oxmx broadcasts the vector (NumPy 2).
        x = np.linalg.solve(a.astype(np.float64), b.astype(np.float64)[:, None])[..., 0].astype(DT[dt])
    elif len(bshape) > 1 and ashape[:-2] != bshape[:-2]:
        x = np.linalg.solve(a.astype(np.float64), b.astype(np.float64)).astype(DT[dt])  # MLX errors on batch broadcast
    else:
        x = np.array(mx.linalg.solve(mxa(a, dt), mxa(b, dt), stream=CPU))
    out["solve"].append({"a": arr(a, dt), "b": arr(b, dt), "out": arr(x, dt)})

for ashape, bshape, dt, upper in [([4, 4], [4, 2], "float32", False), ([4, 4], [4, 3], "float64", True), ([3, 5, 5], [3, 5, 1], "float32", True),
                                  ([6, 6], [6], "float64", False)]:
    a = well_conditioned(ashape).astype(DT[dt])
    b = general(bshape).astype(DT[dt])
    x = mx.linalg.solve_triangular(mxa(a, dt), mxa(b, dt), upper=upper, stream=CPU)
    out["solve_triangular"].append({"a": arr(a, dt), "b": arr(b, dt), "upper": upper, "out": arr(x, dt)})

inf = float("inf")
norm_cases = [
    ([5], None, None, False), ([5], 2, None, False), ([5], 1, None, False), ([5], 0, None, False), ([5], inf, None, False),
    ([5], -inf, None, False), ([5], 3, None, False), ([5], 0.5, None, True), ([5], -1, None, False),
    ([3, 4], None, None, False), ([3, 4], None, None, True), ([2, 3, 4], None, None, False), ([2, 3, 4], None, None, True),
    ([3, 4], "fro", None, False), ([3, 4], "nuc", None, False), ([3, 4], 2, None, False), ([3, 4], -2, None, False),
    ([3, 4], 1, None, False), ([3, 4], -1, None, False), ([3, 4], inf, None, False), ([3, 4], -inf, None, True),
    ([2, 3, 4], 2, [2, 0], False), ([2, 3, 4], inf, [2, 0], False), ([2, 3, 4], 1, [2, 0], True), ([2, 3, 4], "nuc", [0, 2], True),
    ([2, 3, 4], -2, [1, 2], False), ([2, 3, 4], "fro", [-1, -2], True), ([2, 3, 4], None, [1], False), ([2, 3, 4], 3, [-1], True),
    ([2, 3, 4], inf, [0], False), ([2, 3, 4], 0, [1], True), ([4, 5], -inf, [1, 0], False),
]
for shape, ord_, axis, keepdims in norm_cases:
    a = general(shape).astype(np.float32)
    a.ravel()[::4] = 0.0  # zeros exercise ord 0 and -inf
    r = mx.linalg.norm(mx.array(a), ord=ord_, axis=axis, keepdims=keepdims)
    ordv = ord_ if isinstance(ord_, str) or ord_ is None else ("inf" if ord_ == inf else "-inf" if ord_ == -inf else float(ord_))
    out["norm"].append({"a": arr(a, "float32"), "ord": ordv, "axis": axis, "keepdims": keepdims, "out": arr(r, "float32")})

for ashape, bshape, axis in [([3], [3], -1), ([4, 3], [4, 3], -1), ([3, 5], [3, 1], 0), ([2], [3], -1), ([2, 2], [2], -1), ([2, 3, 4], [3], 1)]:
    a = general(ashape).astype(np.float32)
    b = general(bshape).astype(np.float32)
    if ashape == [2, 3, 4]:
        b = general([1, 3, 1]).astype(np.float32)
    r = mx.linalg.cross(mx.array(a), mx.array(b), axis=axis)
    out["cross"].append({"a": arr(a, "float32"), "b": arr(b, "float32"), "axis": axis, "out": arr(r, "float32")})

path = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "linalg.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
