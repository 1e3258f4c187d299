"""Oracle data for oxmx-nn's basic layers, activations and losses.

PyTorch (CPU) is the oracle wherever it defines the same function as MLX; where the two differ
(log_cosh, hinge, triplet, cosine similarity and the activations torch lacks), MLX is the oracle and
the case says so in its "oracle" field. Also writes a PyTorch state_dict as safetensors to test
loading by name. Rerun: python3 scripts/gen_nn_fixtures.py (needs torch, mlx, safetensors).
Writes crates/oxmx-nn/tests/fixtures/{nn.json,torch_mlp.safetensors}.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import mlx.core as mx
import mlx.nn as mnn
from safetensors.torch import save_file

torch.manual_seed(0)
rng = np.random.default_rng(2024)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "oxmx-nn", "tests", "fixtures")


def r(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def enc(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "data": [float(v) for v in a.astype(np.float64).ravel()]}


cases = {"layers": [], "activations": [], "losses": []}

# ---- layers: torch modules with their own weights, inputs and outputs.
x = r(2, 3, 8)
lin = torch.nn.Linear(8, 5)
cases["layers"].append({"kind": "linear", "weight": enc(lin.weight.detach()), "bias": enc(lin.bias.detach()),
                        "x": enc(x), "y": enc(lin(t(x)).detach())})
lin_nb = torch.nn.Linear(8, 4, bias=False)
cases["layers"].append({"kind": "linear", "weight": enc(lin_nb.weight.detach()), "x": enc(x), "y": enc(lin_nb(t(x)).detach())})
emb = torch.nn.Embedding(10, 6)
idx = rng.integers(0, 10, size=(3, 4))
h = r(3, 6)
cases["layers"].append({"kind": "embedding", "weight": enc(emb.weight.detach()), "x": enc(idx),
                        "y": enc(emb(torch.from_numpy(idx)).detach()),
                        "h": enc(h), "as_linear": enc(t(h) @ emb.weight.detach().T)})
ln = torch.nn.LayerNorm(8, eps=1e-5)
with torch.no_grad():
    ln.weight.copy_(t(r(8))); ln.bias.copy_(t(r(8)))
cases["layers"].append({"kind": "layer_norm", "weight": enc(ln.weight.detach()), "bias": enc(ln.bias.detach()),
                        "eps": 1e-5, "x": enc(x), "y": enc(ln(t(x)).detach())})
ln2 = torch.nn.LayerNorm(8, eps=1e-3, elementwise_affine=False)
cases["layers"].append({"kind": "layer_norm", "eps": 1e-3, "x": enc(x), "y": enc(ln2(t(x)).detach())})
rms = torch.nn.RMSNorm(8, eps=1e-5)
with torch.no_grad():
    rms.weight.copy_(t(r(8)))
cases["layers"].append({"kind": "rms_norm", "weight": enc(rms.weight.detach()), "eps": 1e-5, "x": enc(x), "y": enc(rms(t(x)).detach())})

# ---- activations on one input with a wide range.
a = r(4, 6, scale=3.0)
ta = t(a)
torch_acts = {
    "relu": F.relu(ta), "relu6": F.relu6(ta), "leaky_relu": F.leaky_relu(ta, 0.01), "elu": F.elu(ta), "selu": F.selu(ta),
    "celu": F.celu(ta), "gelu": F.gelu(ta), "gelu_approx": F.gelu(ta, approximate="tanh"), "silu": F.silu(ta),
    "mish": F.mish(ta), "hardswish": F.hardswish(ta), "hard_tanh": F.hardtanh(ta), "hard_shrink": F.hardshrink(ta, 0.5),
    "softplus": F.softplus(ta), "softsign": F.softsign(ta), "softshrink": F.softshrink(ta, 0.5), "sigmoid": torch.sigmoid(ta),
    "log_sigmoid": F.logsigmoid(ta), "tanh": torch.tanh(ta), "glu": F.glu(ta, -1), "softmax": F.softmax(ta, -1),
    "log_softmax": F.log_softmax(ta, -1), "softmin": F.softmin(ta, -1), "prelu": F.prelu(ta, torch.tensor([0.25])),
}
for name, y in torch_acts.items():
    cases["activations"].append({"name": name, "oracle": "torch", "x": enc(a), "y": enc(y)})
ma = mx.array(a)
for name, y in {"gelu_fast_approx": mnn.gelu_fast_approx(ma), "step": mnn.step(ma)}.items():
    cases["activations"].append({"name": name, "oracle": "mlx", "x": enc(a), "y": enc(np.array(y))})

# ---- losses
logits = r(5, 7, scale=2.0)
labels = rng.integers(0, 7, size=(5,))
probs = np.exp(r(5, 7)); probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
w5 = np.abs(r(5)).astype(np.float32)
L = cases["losses"]


def add(name, oracle, inputs, y, **params):
    L.append({"name": name, "oracle": oracle, "inputs": {k: enc(v) for k, v in inputs.items()}, "params": params, "y": enc(y)})


tl, tlab, tp = t(logits), torch.from_numpy(labels), t(probs)
add("cross_entropy", "torch", {"logits": logits, "targets": labels}, F.cross_entropy(tl, tlab, reduction="none"), reduction="none")
add("cross_entropy", "torch", {"logits": logits, "targets": probs}, F.cross_entropy(tl, tp, reduction="none"), reduction="none")
add("cross_entropy", "torch", {"logits": logits, "targets": labels}, F.cross_entropy(tl, tlab, label_smoothing=0.1), reduction="mean", label_smoothing=0.1)
add("cross_entropy", "torch", {"logits": logits, "targets": labels, "weights": w5},
    (F.cross_entropy(tl, tlab, reduction="none") * t(w5)).sum(), reduction="sum")
lg3 = r(2, 7, 3)
lab3 = rng.integers(0, 7, size=(2, 3))
add("cross_entropy", "torch", {"logits": lg3, "targets": lab3}, F.cross_entropy(t(lg3), torch.from_numpy(lab3), reduction="none"), reduction="none", axis=1)
bl, bt = r(4, 3), rng.integers(0, 2, size=(4, 3)).astype(np.float32)
add("binary_cross_entropy", "torch", {"inputs": bl, "targets": bt}, F.binary_cross_entropy_with_logits(t(bl), t(bt)), reduction="mean", with_logits=True)
bp = (1 / (1 + np.exp(-bl))).astype(np.float32)
add("binary_cross_entropy", "torch", {"inputs": bp, "targets": bt}, F.binary_cross_entropy(t(bp), t(bt), reduction="none"), reduction="none", with_logits=False)
lp = np.log(probs)
add("nll_loss", "torch", {"inputs": lp, "targets": labels}, F.nll_loss(t(lp), tlab, reduction="none"), reduction="none")
lq = F.log_softmax(t(r(5, 7)), -1).numpy()
add("kl_div_loss", "torch", {"inputs": lq, "targets": lp}, F.kl_div(t(lq), t(lp), reduction="none", log_target=True).sum(-1), reduction="none")
p, q = r(3, 4), r(3, 4)
add("mse_loss", "torch", {"predictions": p, "targets": q}, F.mse_loss(t(p), t(q)), reduction="mean")
add("l1_loss", "torch", {"predictions": p, "targets": q}, F.l1_loss(t(p), t(q), reduction="sum"), reduction="sum")
add("smooth_l1_loss", "torch", {"predictions": p, "targets": q}, F.smooth_l1_loss(t(p), t(q), beta=0.5), reduction="mean", beta=0.5)
add("huber_loss", "torch", {"inputs": p, "targets": q}, F.huber_loss(t(p), t(q), delta=0.7, reduction="none"), reduction="none", delta=0.7)
yt = np.sign(r(3, 4)).astype(np.float32)
add("margin_ranking_loss", "torch", {"inputs1": p, "inputs2": q, "targets": yt},
    F.margin_ranking_loss(t(p), t(q), t(yt), margin=0.2, reduction="none"), reduction="none", margin=0.2)
var = np.abs(r(3, 4)).astype(np.float32) + 0.1
add("gaussian_nll_loss", "torch", {"inputs": p, "targets": q, "vars": var}, F.gaussian_nll_loss(t(p), t(q), t(var), full=True), reduction="mean", full=True)
mp, mq, mn = mx.array(p), mx.array(q), mx.array(r(3, 4))
add("log_cosh_loss", "mlx", {"inputs": p, "targets": q}, np.array(mnn.losses.log_cosh_loss(mp, mq)), reduction="none")
add("hinge_loss", "mlx", {"inputs": p, "targets": yt}, np.array(mnn.losses.hinge_loss(mp, mx.array(yt))), reduction="none")
add("triplet_loss", "mlx", {"anchors": p, "positives": q, "negatives": np.array(mn)},
    np.array(mnn.losses.triplet_loss(mp, mq, mn, margin=0.5)), reduction="none", margin=0.5)
add("cosine_similarity_loss", "mlx", {"x1": p, "x2": q}, np.array(mnn.losses.cosine_similarity_loss(mp, mq, axis=1)), reduction="none", axis=1)

# ---- initialisers: MLX's sample statistics on large shapes (our samples come from another
# generator, so the test compares moments and bounds, not values).
import mlx.nn.init as minit
mx.random.seed(0)
cases["init"] = []
for name, shape, make in [
    ("glorot_normal", [256, 384], lambda: minit.glorot_normal()),
    ("glorot_uniform", [64, 3, 3, 32], lambda: lambda a: minit.glorot_uniform()(a, gain=2.0)),
    ("he_normal", [300, 200], lambda: minit.he_normal()),
    ("he_normal_fan_out", [300, 200], lambda: minit.he_normal()),
    ("he_uniform", [128, 5, 96], lambda: minit.he_uniform()),
    ("normal", [400, 300], lambda: minit.normal(0.5, 2.0)),
    ("uniform", [400, 300], lambda: minit.uniform(-0.3, 0.7)),
]:
    a = mx.zeros(shape)
    v = make()(a, mode="fan_out") if name.endswith("fan_out") else make()(a)
    v = np.array(v, dtype=np.float64)
    cases["init"].append({"name": name, "shape": shape, "mean": float(v.mean()), "std": float(v.std()),
                          "min": float(v.min()), "max": float(v.max())})

with open(os.path.join(OUT, "nn.json"), "w") as f:
    json.dump(cases, f)


# ---- a PyTorch model saved by name, for load_weights.
class TorchMlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)])
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        return self.layers[1](self.norm(torch.relu(self.layers[0](x))))


m = TorchMlp()
with torch.no_grad():
    m.norm.weight.copy_(t(r(8))); m.norm.bias.copy_(t(r(8)))
xin = r(4, 6)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(OUT, "torch_mlp.safetensors"))
with open(os.path.join(OUT, "torch_mlp.json"), "w") as f:
    json.dump({"x": enc(xin), "y": enc(m(t(xin)).detach())}, f)
print("wrote", OUT)
os._exit(0)
