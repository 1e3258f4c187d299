#!/usr/bin/env python3
"""The comparative benchmark harness (CPU table).

Runs oxmx's workloads (target/release/oxmx-bench) and the same workloads in NumPy, MLX (CPU build)
and PyTorch CPU when installed, in one session, and prints a Markdown table of times and ratios.
Usage: cargo build --release -p oxmx-bench && python3 scripts/bench.py [filter]
(or cargo build --profile iterate -p oxmx-bench && OXMX_BENCH_PROFILE=iterate python3 scripts/bench.py [filter])
"""
import json
import os
import subprocess
import sys
import time

FILTER = sys.argv[1] if len(sys.argv) > 1 else ""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_time(fn, iters, sync=lambda r: None):
    sync(fn())
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        sync(fn())
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


CONV2D = [
    ("conv2d_n1_56x56x64_3x3", 1, 56, 64, 64, 3, 1, 1),
    ("conv2d_n8_56x56x64_3x3", 8, 56, 64, 64, 3, 1, 1),
    ("conv2d_n4_28x28x128_3x3", 4, 28, 128, 128, 3, 1, 1),
    ("conv2d_n4_28x28x128_3x3_s2", 4, 28, 128, 128, 3, 2, 1),
    ("conv2d_n4_56x56x64_1x1_256", 4, 56, 64, 256, 1, 1, 0),
    ("conv2d_n4_224x224x3_7x7_s2", 4, 224, 3, 64, 7, 2, 3),
]


def workloads(lib, xp, sync):
    """(name, thunk, iters) for one library; `xp` is its array namespace."""
    n = 1 << 24
    rng = __import__("numpy").random.default_rng(0)
    xs = rng.uniform(-1, 1, n).astype("float32")
    ys = rng.uniform(-1, 1, n).astype("float32")
    ms = rng.uniform(-1, 1, (4096, 4096)).astype("float32")
    x, y, m = lib["asarray"](xs), lib["asarray"](ys), lib["asarray"](ms)
    sync(x), sync(y), sync(m)
    L = lib
    extra = []
    if "conv2d" in lib:
        # Mirrors CONV2D in crates/oxmx-bench/src/main.rs (NHWC input, OHWI weight).
        for name, nb, hw, c, o, k, stride, pad in CONV2D:
            cx = lib["asarray"](rng.uniform(-1, 1, (nb, hw, hw, c)).astype("float32"))
            cw = lib["asarray"](rng.uniform(-1, 1, (o, k, k, c)).astype("float32"))
            cx, cw = lib["prep_conv"](cx, cw)
            sync(cx), sync(cw)
            # As oxmx-bench: 40 runs for the ~2 ms single-image row, 10 for the others.
            extra.append((name, lambda cx=cx, cw=cw, stride=stride, pad=pad: L["conv2d"](cx, cw, stride, pad), max(10, 40 // nb)))
    f = lib["asarray"](rng.uniform(-1, 1, (512, 4096)).astype("float32"))
    extra.append(("fft_512x4096_f32", lambda: L["fft"](f), 10))
    return extra + [
        ("add_16M_f32", lambda: x + y, 10),
        ("mul_scalar_16M_f32", lambda: x * 3.0, 10),
        ("exp_16M_f32", lambda: L["exp"](x), 5),
        ("tanh_16M_f32", lambda: L["tanh"](x), 5),
        ("gelu_16M_f32", lambda: gelu(L, x), 5),
        ("sum_4096x4096_axis-1", lambda: L["sum"](m, -1), 10),
        ("sum_4096x4096_axis0", lambda: L["sum"](m, 0), 10),
        ("softmax_4096x4096", lambda: L["softmax"](m), 5),
        ("logsumexp_4096x4096", lambda: L["logsumexp"](m), 5),
        ("var_4096x4096", lambda: L["var"](m), 5),
        ("layernorm_4096x4096", lambda: L["layernorm"](m), 5),
    ] + matmul_workloads(lib, rng) + [
        ("sort_1M_f32", lambda: L["sort"](x[: 1 << 20]), 5),
    ]


def gelu(L, x):
    # tanh-GELU written as plain element-wise ops (mirrors crates/oxmx-bench/src/main.rs).
    return x * 0.5 * (L["tanh"]((x + x * x * x * 0.044715) * 0.7978845608028654) + 1.0)


def matmul_workloads(lib, rng):
    out = []
    for n in (1024, 2048, 4096):
        for dt in ("float32", "bfloat16", "float16"):
            if dt != "float32" and n == 4096:
                continue
            mk = lib["matrix"](dt)
            if mk is None:
                continue
            a = mk(rng.uniform(-1, 1, (n, n)).astype("float32"))
            b = mk(rng.uniform(-1, 1, (n, n)).astype("float32"))
            out.append((f"matmul_{n}_{dt}", lambda a=a, b=b: lib["matmul"](a, b), 3 if n >= 4096 else 5))
    mk = lib["matrix"]("float32")
    for m, k, n, at, bt in TRAIN_PRODUCTS:
        a = mk(rng.uniform(-1, 1, (k, m) if at else (m, k)).astype("float32"))
        b = mk(rng.uniform(-1, 1, (n, k) if bt else (k, n)).astype("float32"))
        a, b = (a.T if at else a), (b.T if bt else b)
        name = f"matmul_train_{m}x{k}x{n}{'_at' if at else ''}{'_bt' if bt else ''}_f32"
        out.append((name, lambda a=a, b=b: lib["matmul"](a, b), 50))
    return out


# The training steps' products, (m, k, n, A transposed, B transposed): mirrors
# crates/oxmx-bench/src/main.rs.
TRAIN_PRODUCTS = [
    (256, 784, 512, False, True),
    (256, 512, 512, False, True),
    (512, 256, 784, True, False),
    (256, 512, 512, False, False),
    (2048, 128, 512, False, True),
    (2048, 512, 128, False, True),
    (2048, 128, 128, False, False),
    (512, 2048, 128, True, False),
]


MLP_BATCH, MLP_DIMS = 256, [1024, 1024, 1024, 1024, 10]  # mirrors crates/oxmx-bench/src/transforms.rs


def transform_workloads(name):
    """The MLP forward and value_and_grad workloads, for the peers with autodiff."""
    import numpy as np
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (MLP_BATCH, MLP_DIMS[0])).astype("float32")
    ws = [(rng.uniform(-1, 1, (a, b)) * 0.03).astype("float32") for a, b in zip(MLP_DIMS, MLP_DIMS[1:])]
    if name == "mlx":
        import mlx.core as mx

        def loss(ws, x):
            h = x
            for i, w in enumerate(ws):
                h = h @ w
                if i + 1 < len(ws):
                    h = mx.tanh(h)
            return mx.mean(h * h)

        xm, wm = mx.array(x), [mx.array(w) for w in ws]
        vg = mx.value_and_grad(loss)
        return [("mlp_forward_b256_1024x3", lambda: loss(wm, xm), 10),
                ("mlp_value_and_grad_b256_1024x3", lambda: vg(wm, xm), 10)]
    if name == "torch":
        import torch

        def loss(ws, x):
            h = x
            for i, w in enumerate(ws):
                h = h @ w
                if i + 1 < len(ws):
                    h = torch.tanh(h)
            return (h * h).mean()

        xt = torch.from_numpy(x)
        wt = [torch.from_numpy(w).requires_grad_(True) for w in ws]

        def vg():
            l = loss(wt, xt)
            return l, torch.autograd.grad(l, wt)

        def fwd():
            with torch.no_grad():
                return loss(wt, xt)
        return [("mlp_forward_b256_1024x3", fwd, 10), ("mlp_value_and_grad_b256_1024x3", vg, 10)]
    return []


TRAIN_MLP = [784, 512, 512, 10]  # mirrors crates/oxmx-bench/src/nn.rs
LM = dict(vocab=96, ctx=64, dims=128, heads=4, layers=2, batch=32)


def train_workloads(name):
    """One training step (forward, backward, optimizer update, evaluation) of the MLP and of the
    small transformer LM, as crates/oxmx-bench/src/nn.rs."""
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, TRAIN_MLP[0])).astype("float32")
    y = rng.integers(0, 10, 256)
    tok = rng.integers(0, LM["vocab"], (LM["batch"], LM["ctx"]))
    tgt = rng.integers(0, LM["vocab"], (LM["batch"], LM["ctx"]))
    if name == "mlx":
        import mlx.core as mx
        import mlx.nn as nn
        import mlx.optimizers as optim

        class Mlp(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = [nn.Linear(a, b) for a, b in zip(TRAIN_MLP, TRAIN_MLP[1:])]

            def __call__(self, h):
                for l in self.layers[:-1]:
                    h = nn.relu(l(h))
                return self.layers[-1](h)

        class Lm(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(LM["vocab"], LM["dims"])
                self.positions = nn.Embedding(LM["ctx"], LM["dims"])
                self.transformer = nn.TransformerEncoder(LM["layers"], LM["dims"], LM["heads"], 4 * LM["dims"], norm_first=True)
                self.out_proj = nn.Linear(LM["dims"], LM["vocab"])

            def __call__(self, t):
                h = self.embedding(t) + self.positions(mx.arange(t.shape[1]))
                mask = nn.MultiHeadAttention.create_additive_causal_mask(t.shape[1])
                return self.out_proj(self.transformer(h, mask))

        def stepper(model, opt, xs, ys):
            vg = nn.value_and_grad(model, lambda m, a, b: nn.losses.cross_entropy(m(a), b, reduction="mean"))

            def step():
                loss, g = vg(model, xs, ys)
                opt.update(model, g)
                mx.eval(loss, model.parameters(), opt.state)
            return step
        return [("train_mlp_step_b256_784x512x512x10", stepper(Mlp(), optim.SGD(0.01), mx.array(x), mx.array(y)), 20),
                ("train_transformer_step_b32_l64_d128x2", stepper(Lm(), optim.AdamW(1e-3), mx.array(tok), mx.array(tgt)), 20)]
    if name == "torch":
        import torch
        import torch.nn.functional as F

        class Lm(torch.nn.Module):
            def __init__(self):
                super().__init__()
                d = LM["dims"]
                self.embedding = torch.nn.Embedding(LM["vocab"], d)
                self.positions = torch.nn.Embedding(LM["ctx"], d)
                layer = torch.nn.TransformerEncoderLayer(d, LM["heads"], 4 * d, dropout=0.0, batch_first=True, norm_first=True)
                self.transformer = torch.nn.TransformerEncoder(layer, LM["layers"], norm=torch.nn.LayerNorm(d), enable_nested_tensor=False)
                self.out_proj = torch.nn.Linear(d, LM["vocab"])
                self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(LM["ctx"]))

            def forward(self, t):
                h = self.embedding(t) + self.positions(torch.arange(t.shape[1]))
                return self.out_proj(self.transformer(h, mask=self.mask, is_causal=True))

        mlp = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))

        def stepper(model, opt, xs, ys):
            def step():
                opt.zero_grad()
                out = model(xs)
                loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), ys.reshape(-1))
                loss.backward()
                opt.step()
                return loss.item()
            return step
        lm = Lm()
        return [("train_mlp_step_b256_784x512x512x10", stepper(mlp, torch.optim.SGD(mlp.parameters(), 0.01), torch.from_numpy(x), torch.from_numpy(y)), 20),
                ("train_transformer_step_b32_l64_d128x2", stepper(lm, torch.optim.AdamW(lm.parameters(), 1e-3), torch.from_numpy(tok), torch.from_numpy(tgt)), 20)]
    return []


def fast_workloads(name):
    """mx.fast rows (mirrors crates/oxmx-bench/src/fast.rs): MLX is the only peer with these ops."""
    if name != "mlx":
        return []
    import mlx.core as mx
    import numpy as np
    rng = np.random.default_rng(2)
    out = []
    for dt in ("float32", "float16"):
        x = mx.array(rng.uniform(-1, 1, (4096, 4096)).astype("float32")).astype(getattr(mx, dt))
        w = mx.array(rng.uniform(-1, 1, (4096,)).astype("float32")).astype(getattr(mx, dt))
        r = mx.array(rng.uniform(-1, 1, (1, 32, 1024, 128)).astype("float32")).astype(getattr(mx, dt))
        mx.eval(x, w, r)
        out.append((f"fast_rms_norm_4096x4096_{dt}", lambda x=x, w=w: mx.fast.rms_norm(x, w, 1e-5), 10))
        out.append((f"fast_rope_1x32x1024x128_{dt}", lambda r=r: mx.fast.rope(r, 128, traditional=False, base=10000.0, scale=1.0, offset=7), 10))
    for dt in ("float32", "float16", "bfloat16"):
        q = mx.array(rng.uniform(-1, 1, (1, 32, 1, 128)).astype("float32")).astype(getattr(mx, dt))
        k = mx.array(rng.uniform(-1, 1, (1, 8, 32768, 128)).astype("float32")).astype(getattr(mx, dt))
        v = mx.array(rng.uniform(-1, 1, (1, 8, 32768, 128)).astype("float32")).astype(getattr(mx, dt))
        mx.eval(q, k, v)
        out.append((f"fast_sdpa_decode_gqa32x8_k32768_d128_{dt}",
                    lambda q=q, k=k, v=v: mx.fast.scaled_dot_product_attention(q, k, v, scale=128 ** -0.5, mask="causal"), 10))
    return out


def quant_workloads(name):
    """Quantized rows (mirrors crates/oxmx-bench/src/quant.rs); MLX is the only peer with them."""
    if name != "mlx":
        return []
    import mlx.core as mx
    import numpy as np
    rng = np.random.default_rng(2)
    out = []
    w = mx.array(rng.uniform(-1, 1, (4096, 14336)).astype("float32")).astype(mx.bfloat16)
    x = mx.array(rng.uniform(-1, 1, (1, 14336)).astype("float32")).astype(mx.bfloat16)
    for bits in (4, 8):
        wq, s, b = mx.quantize(w, group_size=64, bits=bits)
        mx.eval(wq, s, b)
        out.append((f"qmv_4096x14336_q{bits}g64_bf16",
                    lambda wq=wq, s=s, b=b, bits=bits: mx.quantized_matmul(x, wq, s, b, True, 64, bits), 20))
    wt = w.T
    out.append(("matvec_4096x14336_bf16", lambda: x @ wt, 20))
    w2 = mx.array(rng.uniform(-1, 1, (4096, 4096)).astype("float32"))
    x2 = mx.array(rng.uniform(-1, 1, (512, 4096)).astype("float32"))
    q2 = mx.quantize(w2, group_size=64, bits=4)
    mx.eval(q2, w2, x2)
    out.append(("qmm_512x4096x4096_q4g64_f32", lambda: mx.quantized_matmul(x2, *q2, True, 64, 4), 5))
    w2t = w2.T
    out.append(("matmul_512x4096x4096_f32", lambda: x2 @ w2t, 5))
    we = mx.array(rng.uniform(-1, 1, (8, 1408, 2048)).astype("float32")).astype(mx.bfloat16)
    xe = mx.array(rng.uniform(-1, 1, (8, 1, 2048)).astype("float32")).astype(mx.bfloat16)
    qe = mx.quantize(we, group_size=64, bits=4)
    idx = mx.array(np.array([0, 3, 1, 3, 7, 2, 5, 0], dtype=np.uint32))
    mx.eval(qe, xe, idx)
    out.append(("gather_qmm_moe_8x1408x2048_q4g64_bf16",
                lambda: mx.gather_qmm(xe, *qe, rhs_indices=idx, transpose=True, group_size=64, bits=4), 20))
    return out


def numpy_lib():
    import numpy as np

    def softmax(m):
        e = np.exp(m - m.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def logsumexp(m):
        mx = m.max(-1, keepdims=True)
        return np.log(np.exp(m - mx).sum(-1)) + mx[..., 0]

    def layernorm(m):
        mu = m.mean(-1, keepdims=True)
        return (m - mu) / np.sqrt(m.var(-1, keepdims=True) + 1e-5)

    lib = dict(asarray=np.asarray, exp=np.exp, tanh=np.tanh, sum=lambda a, ax: a.sum(ax), softmax=softmax,
               logsumexp=logsumexp, var=lambda a: a.var(-1), layernorm=layernorm, sort=np.sort,
               fft=lambda a: np.fft.fft(a, axis=-1), matmul=np.matmul,
               # NumPy has no bfloat16, and its float16 matmul does not use BLAS: f32 only.
               matrix=lambda dt: np.asarray if dt == "float32" else None)
    return lib, np, lambda r: None


def mlx_lib():
    import mlx.core as mx
    mx.set_default_device(mx.cpu)

    def layernorm(m):
        mu = mx.mean(m, -1, keepdims=True)
        return (m - mu) * mx.rsqrt(mx.var(m, -1, keepdims=True) + 1e-5)

    lib = dict(asarray=mx.array, exp=mx.exp, tanh=mx.tanh, sum=lambda a, ax: mx.sum(a, ax),
               softmax=lambda a: mx.softmax(a, -1), logsumexp=lambda a: mx.logsumexp(a, -1),
               var=lambda a: mx.var(a, -1), layernorm=layernorm, sort=lambda a: mx.sort(a, -1),
               matmul=mx.matmul, matrix=lambda dt: (lambda v: mx.array(v).astype(getattr(mx, dt))),
               fft=lambda a: mx.fft.fft(a),
               prep_conv=lambda x, w: (x, w), conv2d=lambda x, w, s, p: mx.conv2d(x, w, stride=s, padding=p))
    return lib, mx, lambda r: mx.eval(r) if r is not None else None


def torch_lib():
    import torch
    lib = dict(asarray=torch.from_numpy, exp=torch.exp, tanh=torch.tanh, sum=lambda a, ax: a.sum(ax),
               softmax=lambda a: torch.softmax(a, -1), logsumexp=lambda a: torch.logsumexp(a, -1),
               var=lambda a: a.var(-1, unbiased=False),
               layernorm=lambda m: torch.nn.functional.layer_norm(m, m.shape[-1:]),
               sort=lambda a: torch.sort(a, -1), matmul=torch.matmul,
               matrix=lambda dt: (lambda v: torch.from_numpy(v).to(getattr(torch, dt))),
               fft=lambda a: torch.fft.fft(a),
               # torch convolves NCHW / OIHW: the layout change happens once, outside the timing.
               prep_conv=lambda x, w: (x.permute(0, 3, 1, 2).contiguous(), w.permute(0, 3, 1, 2).contiguous()),
               conv2d=lambda x, w, s, p: torch.nn.functional.conv2d(x, w, stride=s, padding=p))
    return lib, torch, lambda r: None


def main():
    results = {}
    # OXMX_BENCH_PROFILE=iterate runs the incremental optimised build (cargo build --profile iterate).
    profile = os.environ.get("OXMX_BENCH_PROFILE", "release")
    exe = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), profile, "oxmx-bench")
    out = subprocess.run([exe, FILTER], capture_output=True, text=True, check=True).stdout
    copy_gbps = None
    notes = []
    for line in out.splitlines():
        r = json.loads(line)
        if r["impl"] == "note":
            notes.append(r)
            continue
        if r["impl"] == "machine":
            copy_gbps = r["gbps"]
            continue
        results.setdefault(r["bench"], {})["oxmx"] = r["ms"]
        results[r["bench"]]["oxmx_gbps"] = r["gbps"]
        results[r["bench"]]["oxmx_gflops"] = r["gflops"] if r["bench"].startswith(("matmul", "conv", "qmm")) else None
    for name, make in [("numpy", numpy_lib), ("mlx", mlx_lib), ("torch", torch_lib)]:
        try:
            lib, xp, sync = make()
        except ImportError:
            print(f"note: {name} not installed; skipped", file=sys.stderr)
            continue
        for bench, fn, iters in workloads(lib, xp, sync) + transform_workloads(name) + train_workloads(name) + quant_workloads(name) + fast_workloads(name):
            if FILTER and FILTER not in bench:
                continue
            results.setdefault(bench, {})[name] = median_time(fn, iters, sync) * 1e3
    peers = [p for p in ("numpy", "mlx", "torch") if any(p in r for r in results.values())]
    if copy_gbps:
        print(f"machine copy bandwidth (read+write): {copy_gbps:.1f} GB/s\n")
    print("| workload | oxmx ms | oxmx GB/s or GFLOP/s | " + " | ".join(f"{p} ms | oxmx speed-up vs {p}" for p in peers) + " |")
    print("|---|---:|---:|" + "---:|---:|" * len(peers))
    for bench, r in results.items():
        if "oxmx" not in r:
            continue
        rate = f"{r['oxmx_gflops']:.0f} GFLOP/s" if r.get("oxmx_gflops") else f"{r['oxmx_gbps']:.1f} GB/s"
        cells = [f"{r['oxmx']:.2f}", rate]
        for p in peers:
            if p in r:
                cells += [f"{r[p]:.2f}", f"{r[p] / r['oxmx']:.2f}x"]
            else:
                cells += ["-", "-"]
        print(f"| {bench} | " + " | ".join(cells) + " |")
    for n in notes:
        print(f"\n{n['bench']}: " + ", ".join(f"{k} = {v:.3g}" for k, v in n.items() if k not in ("impl", "bench")))
    plain, fused = results.get("gelu_16M_f32_op_by_op", {}), results.get("gelu_16M_f32_compiled", {})
    if "oxmx" in plain and "oxmx" in fused:
        line = f"\ncompile: tanh-GELU 16M f32 compiled is {plain['oxmx'] / fused['oxmx']:.2f}x the op-by-op time (target >= 3x)"
        if copy_gbps:
            line += f"; it runs at {100 * fused['oxmx_gbps'] / copy_gbps:.0f}% of copy bandwidth (target >= 80%)"
        eager = results.get("gelu_16M_f32", {})
        if "oxmx" in eager:
            line += f"; uncompiled with eval-time fusion: {plain['oxmx'] / eager['oxmx']:.2f}x the op-by-op time"
        print(line)


if __name__ == "__main__":
    main()
