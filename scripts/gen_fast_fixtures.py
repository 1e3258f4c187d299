"""Expected values for oxmx's `fast` namespace, produced by MLX 0.32.4 (CPU build):
mx.fast.rms_norm, layer_norm, rope and scaled_dot_product_attention on fresh random inputs of
several shapes and dtypes (float32, float16, bfloat16), every mask kind, grouped/multi-query
heads, query length != key length, sinks, and the rope variants.

Writes crates/oxmx-core/tests/fixtures/fast.json. Inputs are rounded to their dtype before MLX
sees them and stored exactly (as float32 values); outputs are MLX's, converted to float32.
"""
import json
import os

import mlx.core as mx
import numpy as np

mx.set_default_device(mx.cpu)
rng = np.random.default_rng(20261202)
MX = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def to_mx(a, dt):
    return mx.array(np.asarray(a, dtype=np.float32)).astype(MX[dt])


def enc(a):
    """An mx array as {"shape", "dtype", "data"} (values as float32)."""
    dt = {mx.float32: "float32", mx.float16: "float16", mx.bfloat16: "bfloat16", mx.bool_: "bool", mx.int32: "int32"}[a.dtype]
    if a.dtype == mx.bool_:
        data = [bool(x) for x in np.array(a).ravel()]
    elif a.dtype == mx.int32:
        data = [int(x) for x in np.array(a).ravel()]
    else:
        # Shortest decimal that reads back as the same float32 (exact for every input dtype).
        data = [float(str(np.float32(x))) for x in np.array(a.astype(mx.float32)).ravel()]
    return {"shape": list(a.shape), "dtype": dt, "data": data}


def rnd(shape, dt, lo=-1.0, hi=1.0):
    return to_mx(rng.uniform(lo, hi, size=shape), dt)


out = {"rms_norm": [], "layer_norm": [], "rope": [], "sdpa": []}

for dt in ["float32", "float16", "bfloat16"]:
    for shape, with_w in [((4, 16), True), ((2, 3, 64), False), ((1, 3, 130), True), ((3, 1), True)]:
        x = rnd(shape, dt, -2, 2)
        w = rnd((shape[-1],), dt, 0.5, 1.5) if with_w else None
        y = mx.fast.rms_norm(x, w, 1e-5)
        out["rms_norm"].append({"x": enc(x), "weight": enc(w) if w is not None else None, "eps": 1e-5, "out": enc(y)})
    for shape, with_w, with_b in [((4, 16), True, True), ((2, 3, 64), False, False), ((1, 3, 130), True, False), ((2, 33), False, True)]:
        x = rnd(shape, dt, -2, 2)
        w = rnd((shape[-1],), dt, 0.5, 1.5) if with_w else None
        b = rnd((shape[-1],), dt) if with_b else None
        y = mx.fast.layer_norm(x, w, b, 1e-5)
        out["layer_norm"].append(
            {"x": enc(x), "weight": enc(w) if w is not None else None, "bias": enc(b) if b is not None else None, "eps": 1e-5, "out": enc(y)}
        )

rope_cases = [
    # shape, dims, traditional, base, scale, offset, freqs
    ((2, 3, 5, 16), 16, False, 10000.0, 1.0, 0, False),
    ((2, 3, 5, 16), 16, True, 10000.0, 1.0, 3, False),
    ((2, 5, 32), 16, False, 500.0, 0.5, 7, False),
    ((2, 5, 32), 16, True, 10000.0, 2.0, 1, False),
    ((2, 2, 4, 16), 8, False, None, 1.0, 2, True),
    ((2, 2, 4, 16), 16, True, None, 1.0, 0, True),
    ((2, 3, 6, 16), 16, False, 10000.0, 1.0, "array_scalar", False),
    ((2, 3, 6, 16), 16, False, 10000.0, 1.0, "array_batch", False),
    ((2, 3, 6, 16), 12, True, 10000.0, 1.0, "array_batch", False),
    ((1, 2, 1, 64), 64, False, 10000.0, 1.0, 1000, False),
]
for dt in ["float32", "float16", "bfloat16"]:
    for shape, dims, trad, base, scale, offset, with_f in rope_cases:
        x = rnd(shape, dt)
        freqs = mx.array(rng.uniform(1.0, 50.0, size=(dims // 2,)).astype(np.float32)) if with_f else None
        if offset == "array_scalar":
            off = mx.array(4, dtype=mx.int32)
        elif offset == "array_batch":
            off = mx.array(rng.integers(0, 20, size=(shape[0],)).astype(np.int32))
        else:
            off = offset
        y = mx.fast.rope(x, dims, traditional=trad, base=base, scale=scale, offset=off, freqs=freqs)
        out["rope"].append(
            {
                "x": enc(x),
                "dims": dims,
                "traditional": trad,
                "base": base,
                "scale": scale,
                "offset": enc(off) if isinstance(off, mx.array) else off,
                "freqs": enc(freqs) if freqs is not None else None,
                "out": enc(y),
            }
        )

sdpa_cases = [
    # B, Hq, Hkv, qL, kL, D, Dv, mask, sinks
    (1, 2, 2, 4, 4, 16, 16, None, False),
    (2, 4, 2, 3, 9, 16, 16, "causal", False),
    (1, 4, 1, 1, 20, 32, 32, None, False),
    (1, 4, 2, 1, 40, 16, 16, "causal", False),
    (2, 2, 2, 5, 5, 8, 8, "causal", False),
    (1, 4, 2, 6, 6, 16, 16, "bool", False),
    (2, 2, 1, 3, 7, 16, 16, "bool_b1", False),
    (1, 2, 2, 4, 10, 16, 16, "additive", False),
    (2, 4, 2, 3, 5, 16, 16, "additive_full", False),
    (1, 4, 2, 2, 8, 16, 16, None, True),
    (1, 4, 4, 3, 3, 16, 16, "causal", True),
    (1, 2, 2, 2, 6, 16, 8, None, False),
    (1, 1, 1, 24, 40, 8, 8, "causal", False),
]
for dt in ["float32", "float16", "bfloat16"]:
    for B, Hq, Hkv, qL, kL, D, Dv, mk, with_s in sdpa_cases:
        q, k, v = rnd((B, Hq, qL, D), dt), rnd((B, Hkv, kL, D), dt), rnd((B, Hkv, kL, Dv), dt)
        if mk is None or mk == "causal":
            m = mk
        elif mk == "bool":
            m = mx.array(rng.uniform(size=(qL, kL)) > 0.3)
            m = m | mx.eye(qL, kL, dtype=mx.bool_)  # no fully-masked row
        elif mk == "bool_b1":
            m = mx.array(rng.uniform(size=(B, 1, qL, kL)) > 0.4)
            m = m | (mx.arange(kL) == 0)
        elif mk == "additive":
            m = rnd((qL, kL), dt, -2, 2)
        else:
            m = rnd((B, Hq, qL, kL), dt, -2, 2)
        sinks = rnd((Hq,), dt, -1, 2) if with_s else None
        scale = float(D) ** -0.5
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=m, sinks=sinks)
        out["sdpa"].append(
            {
                "q": enc(q),
                "k": enc(k),
                "v": enc(v),
                "scale": scale,
                "mask": m if (m is None or isinstance(m, str)) else enc(m),
                "sinks": enc(sinks) if sinks is not None else None,
                "out": enc(y),
            }
        )

path = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "fast.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("wrote", path, os.path.getsize(path), "bytes")
os._exit(0)
