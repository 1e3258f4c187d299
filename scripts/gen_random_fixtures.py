"""Expected values for oxmx's random namespace, produced by MLX (CPU build).

Writes crates/oxmx-core/tests/fixtures/random.json. Float samples are stored as their uint32
bit patterns so the test can compare bit for bit.
"""
import json
import os

import mlx.core as mx
import numpy as np


def u32(a):
    return [int(x) for x in np.array(a).astype(np.uint32).ravel()]


def f32bits(a):
    return [int(x) for x in np.array(a, dtype=np.float32).view(np.uint32).ravel()]


out = {"keys": [], "splits": [], "uniform": [], "normal": [], "randint": [], "bernoulli": [],
       "gumbel": [], "laplace": [], "truncated_normal": [], "permutation": [], "categorical": [], "seed": []}

for seed in [0, 1, 7, 42, 2**32 + 5, 2**63 + 12345]:
    out["keys"].append({"seed": str(seed), "key": u32(mx.random.key(seed))})

for seed, num in [(0, 2), (0, 3), (1, 5), (42, 1), (123456789, 4)]:
    out["splits"].append({"seed": seed, "num": num, "keys": u32(mx.random.split(mx.random.key(seed), num))})

for seed, shape, lo, hi in [(0, [4], 0.0, 1.0), (0, [5], 0.0, 1.0), (7, [3, 7], -2.0, 3.0), (11, [1], 0.0, 1.0),
                            (3, [1001], -1.0, 1.0), (9, [2, 3, 4], 5.0, 6.0)]:
    k = mx.random.key(seed)
    out["uniform"].append({"seed": seed, "shape": shape, "low": lo, "high": hi,
                           "bits": f32bits(mx.random.uniform(lo, hi, shape, key=k))})

for seed, shape, loc, scale in [(0, [8], 0.0, 1.0), (7, [33], 0.0, 1.0), (5, [4, 5], 1.0, 2.0), (2, [1000], 0.0, 1.0)]:
    k = mx.random.key(seed)
    out["normal"].append({"seed": seed, "shape": shape, "loc": loc, "scale": scale,
                          "bits": f32bits(mx.random.normal(shape, key=k, loc=loc, scale=scale))})

for seed, shape, lo, hi in [(11, [64], -5, 17), (2, [3, 9], 0, 1000), (4, [17], -100, -3)]:
    k = mx.random.key(seed)
    out["randint"].append({"seed": seed, "shape": shape, "low": lo, "high": hi,
                           "values": [int(x) for x in np.array(mx.random.randint(lo, hi, shape, key=k)).ravel()]})

for seed, p, shape in [(11, 0.3, [64]), (5, 0.9, [4, 4])]:
    k = mx.random.key(seed)
    out["bernoulli"].append({"seed": seed, "p": p, "shape": shape,
                             "values": [bool(x) for x in np.array(mx.random.bernoulli(p, shape, key=k)).ravel()]})

for seed, shape in [(11, [64]), (3, [5, 6])]:
    k = mx.random.key(seed)
    out["gumbel"].append({"seed": seed, "shape": shape, "values": [float(x) for x in np.array(mx.random.gumbel(shape, key=k)).ravel()]})
    out["laplace"].append({"seed": seed, "shape": shape, "loc": 0.5, "scale": 2.0,
                           "values": [float(x) for x in np.array(mx.random.laplace(shape, key=k, loc=0.5, scale=2.0)).ravel()]})

for seed, lo, hi, shape in [(11, -1.0, 2.0, [64]), (8, 0.0, 1.0, [20])]:
    k = mx.random.key(seed)
    out["truncated_normal"].append({"seed": seed, "lower": lo, "upper": hi, "shape": shape,
                                    "values": [float(x) for x in np.array(mx.random.truncated_normal(lo, hi, shape, key=k)).ravel()]})

for seed, n in [(11, 10), (0, 100)]:
    out["permutation"].append({"seed": seed, "n": n, "values": u32(mx.random.permutation(n, key=mx.random.key(seed)))})

logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32))
for seed in [0, 5]:
    out["categorical"].append({"seed": seed, "logits": [float(x) for x in logits.ravel()], "shape": [3, 4],
                               "values": u32(mx.random.categorical(mx.array(logits), key=mx.random.key(seed))),
                               "samples3": u32(mx.random.categorical(mx.array(logits), num_samples=3, key=mx.random.key(seed))),
                               "samples3_axis0": u32(mx.random.categorical(mx.array(logits.T), axis=0, num_samples=3,
                                                                          key=mx.random.key(seed)))})

# Array-valued distribution parameters that broadcast to the sample shape.
k = mx.random.key(21)
lo = np.array([0.0, -1.0, 10.0], dtype=np.float32)
hi = np.array([[1.0], [5.0]], dtype=np.float32)
out["array_params"] = {
    "seed": 21, "shape": [2, 3], "low": [float(x) for x in lo], "high": [float(x) for x in hi.ravel()],
    "uniform": f32bits(mx.random.uniform(mx.array(lo), mx.array(hi), (2, 3), key=k)),
    "normal": f32bits(mx.random.normal((2, 3), loc=mx.array(lo), scale=mx.array(hi), key=k)),
    "randint": [int(x) for x in np.array(mx.random.randint(mx.array(lo.astype(np.int32)), mx.array(hi.astype(np.int32) + 20), (2, 3), key=k)).ravel()],
    "bernoulli": [int(x) for x in np.array(mx.random.bernoulli(mx.array(np.array([0.1, 0.5, 0.9], dtype=np.float32)), (2, 3), key=k)).ravel()],
    "truncated_normal": [float(x) for x in np.array(mx.random.truncated_normal(mx.array(lo - 1), mx.array(hi), (2, 3), key=k)).ravel()],
}

mx.random.seed(3)
out["seed"].append({"seed": 3, "shape": [3], "draws": [f32bits(mx.random.uniform(shape=(3,))) for _ in range(3)]})

path = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "random.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print("wrote", os.path.normpath(path))
