"""Oracle data for oxmx's quantization ops, produced by MLX 0.32.4 (CPU).

Writes crates/oxmx-core/tests/fixtures/quant.safetensors: for every case `c<i>` the input
`c<i>.w` (f32/f16/bf16), MLX's packed weight `c<i>.wq`, `c<i>.scales`, `c<i>.biases` (affine
only) and `c<i>.deq` (mx.dequantize of those), plus `c<i>.x` and `c<i>.y` =
mx.quantized_matmul(x, wq, ...) for transpose=True and `c<i>.yt` for transpose=False (square
enough shapes only). The case parameters are in the file's metadata as JSON under "cases".
Inputs include awkward groups: constant, zeros, negatives only, huge ranges, tiny values.
"""
import json
import os

import mlx.core as mx
import numpy as np

mx.set_default_device(mx.cpu)
rng = np.random.default_rng(20261202)
DT = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def awkward(shape, gs):
    w = rng.standard_normal(shape).astype(np.float32)
    flat = w.reshape(-1, gs)
    n = flat.shape[0]
    kinds = rng.integers(0, 8, n)
    for i, k in enumerate(kinds):
        if k == 1:
            flat[i] = np.float32(rng.standard_normal())  # constant group
        elif k == 2:
            flat[i] = 0.0
        elif k == 3:
            flat[i] = -np.abs(flat[i])  # negatives only
        elif k == 4:
            flat[i] = np.abs(flat[i]) * 1000.0  # positives, large
        elif k == 5:
            flat[i] *= 1e-4  # tiny
        elif k == 6:
            flat[i, 0] = 50.0  # one outlier
        elif k == 7:
            flat[i] = np.round(flat[i] * 4) / 4  # values on a lattice (ties)
    return flat.reshape(shape)


cases = []
tensors = {}
configs = []
for bits in [2, 3, 4, 5, 6, 8]:
    for gs in [32, 64, 128]:
        configs.append(("affine", gs, bits))
configs += [("mxfp4", 32, 4), ("mxfp8", 32, 8), ("nvfp4", 16, 4)]
dtypes = ["float32", "float16", "bfloat16"]
i = 0
for ci, (mode, gs, bits) in enumerate(configs):
    for di, dt in enumerate(dtypes):
        # Two shapes per (config, dtype) rotating through a few, including a 3-d batch.
        shapes = [(4, 2 * gs), (2, 3, 128), (8, gs)]
        for shape in [shapes[(ci + di) % 3], shapes[(ci + di + 1) % 3]]:
            if shape[-1] % gs:
                continue
            w_np = awkward(shape, gs)
            w = mx.array(w_np).astype(DT[dt])
            q = mx.quantize(w, group_size=gs, bits=bits, mode=mode)
            wq, scales = q[0], q[1]
            biases = q[2] if mode == "affine" else None
            deq = mx.dequantize(wq, scales, biases, group_size=gs, bits=bits, mode=mode)
            k = f"c{i}"
            tensors[k + ".w"] = w
            tensors[k + ".wq"] = wq
            tensors[k + ".scales"] = scales
            if biases is not None:
                tensors[k + ".biases"] = biases
            tensors[k + ".deq"] = deq
            # Matmuls against the quantized matrix (values only checked with tolerance).
            if len(shape) == 2:
                x = mx.array(rng.standard_normal((3, shape[-1])).astype(np.float32)).astype(DT[dt])
                y = mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=gs, bits=bits, mode=mode)
                tensors[k + ".x"] = x
                tensors[k + ".y"] = y
                if shape[0] * 1 == shape[0] and shape[0] % 1 == 0 and mode == "affine":
                    xt = mx.array(rng.standard_normal((2, shape[0])).astype(np.float32)).astype(DT[dt])
                    yt = mx.quantized_matmul(xt, wq, scales, biases, transpose=False, group_size=gs, bits=bits, mode=mode)
                    tensors[k + ".xt"] = xt
                    tensors[k + ".yt"] = yt
            cases.append({"id": k, "mode": mode, "group_size": gs, "bits": bits, "dtype": dt, "shape": list(shape)})
            i += 1

# gather_qmm: experts [E, N, K] quantized, tokens [T, 1, K], per-token expert ids.
for mode, gs, bits in [("affine", 64, 4), ("affine", 32, 8), ("mxfp4", 32, 4)]:
    E, N, K, T = 4, 16, 128, 6
    w = mx.array(rng.standard_normal((E, N, K)).astype(np.float32))
    q = mx.quantize(w, group_size=gs, bits=bits, mode=mode)
    biases = q[2] if mode == "affine" else None
    x = mx.array(rng.standard_normal((T, 1, K)).astype(np.float32))
    ridx = mx.array(rng.integers(0, E, (T,)).astype(np.uint32))
    y = mx.gather_qmm(x, q[0], q[1], biases, rhs_indices=ridx, transpose=True, group_size=gs, bits=bits, mode=mode)
    k = f"g{mode}{bits}"
    tensors[k + ".wq"] = q[0]
    tensors[k + ".scales"] = q[1]
    if biases is not None:
        tensors[k + ".biases"] = biases
    tensors[k + ".x"] = x
    tensors[k + ".ridx"] = ridx
    tensors[k + ".y"] = y

mx.eval(tensors)
path = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-core", "tests", "fixtures", "quant.safetensors")
mx.save_safetensors(path, tensors, metadata={"cases": json.dumps(cases)})
print(len(cases), "cases,", os.path.getsize(path), "bytes")

# A small model quantized by mlx.nn.quantize with a per-layer predicate (the checkpoint format of
# mlx-community models): its weights and its output on a fixed input, for oxmx-nn's loader test.
import mlx.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(32, 64)
        self.proj = nn.Linear(64, 128)
        self.out = nn.Linear(128, 64, bias=False)
        self.head = nn.Linear(64, 8)  # left dense by the predicate

    def __call__(self, t):
        h = self.embed(t)
        h = self.out(nn.gelu(self.proj(h)))
        return self.head(h), self.embed.as_linear(h)


mx.random.seed(3)
model = Tiny()
nn.quantize(model, group_size=64, bits=4, class_predicate=lambda p, m: False if p == "head" else (
    {"group_size": 32, "bits": 8} if p == "out" else hasattr(m, "to_quantized")))
tok = mx.array(np.array([[1, 5, 31, 0]], dtype=np.int32))
y, logits = model(tok)
from mlx.utils import tree_flatten
weights = dict(tree_flatten(model.parameters()))
weights["__input"] = tok
weights["__y"] = y
weights["__logits"] = logits
mx.eval(weights)
mpath = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-nn", "tests", "fixtures", "quant_model.safetensors")
mx.save_safetensors(mpath, weights)
print(sorted(k for k in weights), os.path.getsize(mpath), "bytes")
os._exit(0)
