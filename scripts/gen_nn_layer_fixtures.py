"""Oracle data for oxmx-nn's convolution, pooling, normalisation, attention, Transformer,
recurrent, positional, upsampling and bilinear layers.

PyTorch (CPU, float64 from float32-rounded weights and inputs) is the oracle wherever it defines
the same function as MLX; PyTorch is channels first, so inputs, outputs and weights are
transposed to MLX's channels-last layouts here, and PyTorch's parameters are mapped to MLX's names
(e.g. GRU biases folded into `b`/`bhn`). Where MLX's semantics differ from PyTorch's (GroupNorm's
default interleaved grouping, RoPE, ALiBi, SinusoidalPositionalEncoding, cubic and non-integer
nearest upsampling) the `mlx` package (float32) is the oracle and the case says so in its
"oracle" field.

Rerun (fixed seeds, deterministic): python3 scripts/gen_nn_layer_fixtures.py
Writes crates/oxmx-nn/tests/fixtures/layers/*.json. Needs torch and mlx.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import mlx.core as mx
import mlx.nn as mnn

torch.manual_seed(0)
rng = np.random.default_rng(7)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-nn", "tests", "fixtures", "layers")
os.makedirs(OUT, exist_ok=True)


def r(*shape, scale=1.0):
    """Float32 normal samples with three decimals (short in JSON, exact enough in float32)."""
    return np.round(rng.standard_normal(shape) * scale, 3).astype(np.float32)


def t(a):
    """Float64 torch tensor of (float32-rounded) values."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))


def enc(a):
    if isinstance(a, torch.Tensor):
        a = a.detach().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    assert np.all(np.isfinite(a)), "non-finite oracle values"
    return {"shape": list(a.shape), "data": [float(f"{v:.7g}") for v in a.ravel()]}


def p32(x):
    """A torch parameter's float32-rounded values (numpy)."""
    return x.detach().float().numpy()


def round_params(m):
    """Round a torch module's parameters and buffers to float32, then run it in float64."""
    with torch.no_grad():
        for p in list(m.parameters()) + list(m.buffers()):
            if p.is_floating_point():
                p.copy_(p.float().double())
    return m.double()


def randomize(m, scale=0.5):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(t(r(*p.shape, scale=scale)))
    return m


def round3(m):
    """Round a torch module's parameters to three decimals (short fixtures)."""
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.round(p, decimals=3))
    return m


def cl(x):
    """Channels first (torch) -> channels last (MLX)."""
    return x.permute(0, *range(2, x.ndim), 1)


def cf(x):
    """Channels last -> channels first."""
    return x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))


def conv_w(w):
    """torch conv weight [out, in/g, *k] -> MLX [out, *k, in/g]."""
    return w.permute(0, *range(2, w.ndim), 1)


def convT_w(w):
    """torch transposed-conv weight [in, out, *k] -> MLX [out, *k, in]."""
    return w.permute(1, *range(2, w.ndim), 0)


files = {}


def add(family, case):
    files.setdefault(family, []).append(case)


# ---------------------------------------------------------------- convolutions
conv_cases = [
    # (nd, in, out, kernel, stride, padding, dilation, groups, bias, spatial)
    (1, 4, 4, 3, 2, 1, 2, 2, True, (8,)),
    (1, 3, 2, 2, 1, 0, 1, 1, False, (5,)),
    (2, 4, 4, (3, 2), (2, 1), (1, 0), (1, 2), 2, True, (5, 6)),
    (2, 2, 3, 3, 1, 1, 1, 1, True, (4, 4)),
    (3, 2, 3, 2, 1, 1, 1, 1, True, (2, 3, 2)),
    (3, 3, 3, (2, 1, 2), (1, 2, 1), (0, 1, 1), 1, 3, False, (2, 3, 3)),
]
for nd, cin, cout, k, s, p, d, g, b, sp in conv_cases:
    mod = [None, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d][nd](cin, cout, k, s, p, d, g, bias=b)
    round3(mod)
    round_params(mod)
    x = r(2 if nd == 1 else 1, *sp, cin)
    y = mod(cf(t(x)))
    tup = lambda v: list(v) if isinstance(v, tuple) else [v] * nd
    case = {"layer": f"Conv{nd}d", "oracle": "torch", "in_channels": cin, "out_channels": cout,
            "kernel_size": tup(k), "stride": tup(s), "padding": tup(p), "dilation": tup(d), "groups": g,
            "params": {"weight": enc(conv_w(mod.weight))}, "x": enc(x), "y": enc(cl(y))}
    if b:
        case["params"]["bias"] = enc(mod.bias)
    add("conv", case)

convT_cases = [
    # (nd, in, out, kernel, stride, padding, dilation, output_padding, bias, spatial)
    (1, 3, 2, 3, 2, 1, 1, 1, True, (4,)),
    (1, 2, 3, 3, 1, 0, 2, 0, False, (4,)),
    (2, 2, 2, (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), True, (3, 2)),
    (3, 2, 2, 2, 2, 0, 1, 1, True, (2, 2, 2)),
]
for nd, cin, cout, k, s, p, d, op, b, sp in convT_cases:
    cls = [None, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d][nd]
    mod = cls(cin, cout, k, stride=s, padding=p, output_padding=op, bias=b, dilation=d)
    round3(mod)
    round_params(mod)
    x = r(2, *sp, cin)
    y = mod(cf(t(x)))
    tup = lambda v: list(v) if isinstance(v, tuple) else [v] * nd
    case = {"layer": f"ConvTranspose{nd}d", "oracle": "torch", "in_channels": cin, "out_channels": cout,
            "kernel_size": tup(k), "stride": tup(s), "padding": tup(p), "dilation": tup(d), "output_padding": tup(op),
            "params": {"weight": enc(convT_w(mod.weight))}, "x": enc(x), "y": enc(cl(y))}
    if b:
        case["params"]["bias"] = enc(mod.bias)
    add("conv", case)

# ---------------------------------------------------------------- pooling
pool_cases = [
    # (kind, nd, kernel, stride, padding, spatial)
    ("Max", 1, 3, 2, 1, (7,)),
    ("Avg", 1, 3, 2, 1, (7,)),
    ("Max", 1, 2, None, 0, (6,)),
    ("Max", 2, (3, 2), (2, 1), (1, 0), (5, 4)),
    ("Avg", 2, 3, 2, 1, (5, 4)),
    ("Avg", 2, 2, None, 0, (4, 4)),
    ("Max", 2, 2, None, 0, (4, 2)),
    ("Max", 3, 2, 1, 0, (2, 3, 3)),
    ("Avg", 3, 2, 2, 1, (3, 2, 3)),
]
for kind, nd, k, s, p, sp in pool_cases:
    fn = getattr(F, f"{kind.lower()}_pool{nd}d")
    x = r(2, *sp, 2)
    kw = {"kernel_size": k, "stride": s if s is not None else k, "padding": p}
    y = fn(cf(t(x)), **kw)
    tup = lambda v: list(v) if isinstance(v, tuple) else [v] * nd
    add("pool", {"layer": f"{kind}Pool{nd}d", "oracle": "torch", "kernel_size": tup(k),
                 "stride": None if s is None else tup(s), "padding": tup(p), "x": enc(x), "y": enc(cl(y))})

# ---------------------------------------------------------------- normalisation
for shape, affine, track in [((6, 3), True, True), ((3, 4, 3), True, True), ((2, 3, 2, 3), True, True),
                             ((3, 4, 3), False, True), ((3, 4, 3), True, False)]:
    c = shape[-1]
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)]
    bn = cls(c, eps=1e-5, momentum=0.1, affine=affine, track_running_stats=track)
    if affine:
        randomize(bn)
    if track:
        with torch.no_grad():
            bn.running_mean.copy_(t(r(c, scale=0.3)))
            bn.running_var.copy_(t(np.abs(r(c)) + 0.5))
    round_params(bn)
    params = {}
    if affine:
        params["weight"] = enc(bn.weight)
        params["bias"] = enc(bn.bias)
    if track:
        params["running_mean"] = enc(bn.running_mean)
        params["running_var"] = enc(bn.running_var)
    x = r(*shape)
    xt = cf(t(x)) if len(shape) > 2 else t(x)
    to_cl = (lambda y: cl(y)) if len(shape) > 2 else (lambda y: y)
    bn.eval()
    y_eval = to_cl(bn(xt))
    bn.train()
    y_train = to_cl(bn(xt))
    case = {"layer": "BatchNorm", "oracle": "torch", "num_features": c, "affine": affine, "track_running_stats": track,
            "params": params, "x": enc(x), "y_train": enc(y_train), "y_eval": enc(y_eval)}
    if track:
        case["running_mean_after"] = enc(bn.running_mean)
        case["running_var_after"] = enc(bn.running_var)
    add("norm", case)

for groups, shape, affine in [(2, (2, 3, 2, 6), True), (3, (2, 4, 6), True), (4, (3, 8), False)]:
    c = shape[-1]
    x = r(*shape)
    w, b = r(c), r(c)
    # PyTorch's grouping (contiguous channel blocks): torch.nn.GroupNorm.
    gn = torch.nn.GroupNorm(groups, c, eps=1e-5, affine=affine)
    if affine:
        with torch.no_grad():
            gn.weight.copy_(t(w)); gn.bias.copy_(t(b))
    round_params(gn)
    xt = cf(t(x))
    y = cl(gn(xt))
    params = {"weight": enc(w), "bias": enc(b)} if affine else {}
    add("norm", {"layer": "GroupNorm", "oracle": "torch", "num_groups": groups, "dims": c, "affine": affine,
                 "pytorch_compatible": True, "params": params, "x": enc(x), "y": enc(y)})
    # MLX's default grouping (channel c in group c % num_groups) has no PyTorch equivalent.
    m = mnn.GroupNorm(groups, c, affine=affine, pytorch_compatible=False)
    if affine:
        m.weight = mx.array(w); m.bias = mx.array(b)
    y = np.array(m(mx.array(x)))
    add("norm", {"layer": "GroupNorm", "oracle": "mlx", "num_groups": groups, "dims": c, "affine": affine,
                 "pytorch_compatible": False, "params": params, "x": enc(x), "y": enc(y)})

for shape, affine in [((2, 3, 4, 3), True), ((2, 5, 4), False)]:
    c = shape[-1]
    cls = {3: torch.nn.InstanceNorm1d, 4: torch.nn.InstanceNorm2d}[len(shape)]
    inorm = cls(c, eps=1e-5, affine=affine)
    if affine:
        randomize(inorm)
    round_params(inorm)
    x = r(*shape)
    y = cl(inorm(cf(t(x))))
    params = {"weight": enc(inorm.weight), "bias": enc(inorm.bias)} if affine else {}
    add("norm", {"layer": "InstanceNorm", "oracle": "torch", "dims": c, "affine": affine, "params": params,
                 "x": enc(x), "y": enc(y)})

# ---------------------------------------------------------------- attention
# nn.MultiheadAttention (packed in-projection) mapped onto MLX's four Linear layers.
for bias in [False, True]:
    mha = torch.nn.MultiheadAttention(8, 2, bias=bias, batch_first=True)
    randomize(mha)
    round_params(mha)
    q, k, v = r(2, 3, 8), r(2, 4, 8), r(2, 4, 8)
    mask = r(3, 4)
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    params = {"query_proj.weight": enc(wq), "key_proj.weight": enc(wk), "value_proj.weight": enc(wv),
              "out_proj.weight": enc(mha.out_proj.weight)}
    if bias:
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        params.update({"query_proj.bias": enc(bq), "key_proj.bias": enc(bk), "value_proj.bias": enc(bv),
                       "out_proj.bias": enc(mha.out_proj.bias)})
    y, _ = mha(t(q), t(k), t(v), need_weights=False)
    ym, _ = mha(t(q), t(k), t(v), attn_mask=t(mask), need_weights=False)
    add("attention", {"layer": "MultiHeadAttention", "oracle": "torch", "dims": 8, "num_heads": 2, "bias": bias,
                      "params": params, "queries": enc(q), "keys": enc(k), "values": enc(v), "mask": enc(mask),
                      "y": enc(y), "y_masked": enc(ym)})

# All of MLX's dimension options, computed with torch's functional ops.
dims, heads, qd, kd, vd, vdims, vout = 8, 4, 6, 5, 7, 12, 10
W = {"query_proj": (dims, qd), "key_proj": (dims, kd), "value_proj": (vdims, vd), "out_proj": (vout, vdims)}
params, tw = {}, {}
for name, (o, i) in W.items():
    w, b = r(o, i, scale=0.4), r(o, scale=0.2)
    params[f"{name}.weight"], params[f"{name}.bias"] = enc(w), enc(b)
    tw[name] = (t(w), t(b))
q, k, v = r(2, 3, qd), r(2, 5, kd), r(2, 5, vd)
bool_mask = rng.random((2, 1, 3, 5)) > 0.3
bool_mask[..., 0] = True


def heads_of(x):
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def ref_mha(mask):
    qq = heads_of(F.linear(t(q), *tw["query_proj"]))
    kk = heads_of(F.linear(t(k), *tw["key_proj"]))
    vv = heads_of(F.linear(t(v), *tw["value_proj"]))
    o = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask)
    o = o.transpose(1, 2).reshape(2, 3, vdims)
    return F.linear(o, *tw["out_proj"])


add("attention", {"layer": "MultiHeadAttention", "oracle": "torch", "dims": dims, "num_heads": heads, "bias": True,
                  "query_input_dims": qd, "key_input_dims": kd, "value_input_dims": vd, "value_dims": vdims,
                  "value_output_dims": vout, "params": params, "queries": enc(q), "keys": enc(k), "values": enc(v),
                  "bool_mask": enc(bool_mask.astype(np.float64)), "y": enc(ref_mha(None)),
                  "y_bool_masked": enc(ref_mha(torch.from_numpy(bool_mask)))})

# ---------------------------------------------------------------- transformer
def mha_params(prefix, m, out):
    wq, wk, wv = m.in_proj_weight.chunk(3)
    out[f"{prefix}.query_proj.weight"] = enc(wq)
    out[f"{prefix}.key_proj.weight"] = enc(wk)
    out[f"{prefix}.value_proj.weight"] = enc(wv)
    out[f"{prefix}.out_proj.weight"] = enc(m.out_proj.weight)


def zero_attn_biases(model):
    # MLX's Transformer attention has no biases.
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.MultiheadAttention):
                mod.in_proj_bias.zero_()
                mod.out_proj.bias.zero_()


def layer_params(prefix, layer, out, decoder):
    if decoder:
        mha_params(f"{prefix}.self_attention", layer.self_attn, out)
        mha_params(f"{prefix}.cross_attention", layer.multihead_attn, out)
        norms = ["norm1", "norm2", "norm3"]
    else:
        mha_params(f"{prefix}.attention", layer.self_attn, out)
        norms = ["norm1", "norm2"]
    for i, n in enumerate(norms):
        ln = getattr(layer, n)
        out[f"{prefix}.ln{i + 1}.weight"] = enc(ln.weight)
        out[f"{prefix}.ln{i + 1}.bias"] = enc(ln.bias)
    for n in ["linear1", "linear2"]:
        lin = getattr(layer, n)
        out[f"{prefix}.{n}.weight"] = enc(lin.weight)
        out[f"{prefix}.{n}.bias"] = enc(lin.bias)


for norm_first in [True, False]:
    tr = torch.nn.Transformer(d_model=4, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=6,
                              dropout=0.0, batch_first=True, norm_first=norm_first)
    randomize(tr, scale=0.4)
    zero_attn_biases(tr)
    round_params(tr)
    tr.eval()
    params = {}
    for i, l in enumerate(tr.encoder.layers):
        layer_params(f"encoder.layers.{i}", l, params, False)
    for i, l in enumerate(tr.decoder.layers):
        layer_params(f"decoder.layers.{i}", l, params, True)
    for part in ["encoder", "decoder"]:
        n = getattr(tr, part).norm
        params[f"{part}.ln.weight"] = enc(n.weight)
        params[f"{part}.ln.bias"] = enc(n.bias)
    src, tgt = r(2, 4, 4), r(2, 3, 4)
    src_mask = r(4, 4, scale=0.5)
    tgt_mask = torch.triu(torch.full((3, 3), float("-inf"), dtype=torch.float64), 1)
    # Outside no_grad: PyTorch's inference fast path returns NaN in float64.
    y = tr(t(src), t(tgt), src_mask=t(src_mask), tgt_mask=tgt_mask)
    memory = tr.encoder(t(src), mask=t(src_mask))
    enc_layer0 = tr.encoder.layers[0](t(src), src_mask=t(src_mask))
    add("transformer", {"layer": "Transformer", "oracle": "torch", "dims": 4, "num_heads": 2, "num_encoder_layers": 2,
                        "num_decoder_layers": 1, "mlp_dims": 6, "norm_first": norm_first, "params": params,
                        "src": enc(src), "tgt": enc(tgt), "src_mask": enc(src_mask), "memory": enc(memory),
                        "encoder_layer0": enc(enc_layer0), "y": enc(y)})

# ---------------------------------------------------------------- recurrent
def rnn_case(kind, batched, with_h0, bias=True, nonlinearity="tanh"):
    d, h, L, n = 3, 4, 5, 2
    if kind == "RNN":
        m = torch.nn.RNN(d, h, batch_first=True, bias=bias, nonlinearity=nonlinearity)
    else:
        m = getattr(torch.nn, kind)(d, h, batch_first=True, bias=bias)
    randomize(m, scale=0.5)
    round_params(m)
    x = r(n, L, d) if batched else r(L, d)
    hs = (n, h) if batched else (h,)
    h0 = r(*hs) if with_h0 else None
    c0 = r(*hs) if (with_h0 and kind == "LSTM") else None
    P = {}
    wi, wh = m.weight_ih_l0, m.weight_hh_l0
    if kind == "RNN":
        P["Wxh"], P["Whh"] = enc(wi), enc(wh)
        if bias:
            P["bias"] = enc(m.bias_ih_l0 + m.bias_hh_l0)
    elif kind == "GRU":
        P["Wx"], P["Wh"] = enc(wi), enc(wh)
        if bias:
            bi, bh = m.bias_ih_l0, m.bias_hh_l0
            P["b"] = enc(bi + torch.cat([bh[: 2 * h], torch.zeros(h, dtype=bh.dtype)]))
            P["bhn"] = enc(bh[2 * h:])
    else:
        P["Wx"], P["Wh"] = enc(wi), enc(wh)
        if bias:
            P["bias"] = enc(m.bias_ih_l0 + m.bias_hh_l0)
    xt = t(x)
    case = {"layer": kind, "oracle": "torch", "input_size": d, "hidden_size": h, "bias": bias,
            "nonlinearity": nonlinearity, "params": P, "x": enc(x)}
    with torch.no_grad():
        if kind == "LSTM":
            # Step by step to collect every cell state (torch returns only the last one).
            hh = t(h0) if h0 is not None else torch.zeros(hs, dtype=torch.float64)
            cc = t(c0) if c0 is not None else torch.zeros(hs, dtype=torch.float64)
            ys, cs = [], []
            for i in range(L):
                step = xt[:, i: i + 1] if batched else xt[i: i + 1]
                o, (hh1, cc1) = m(step, (hh.unsqueeze(0), cc.unsqueeze(0)))
                hh, cc = hh1.squeeze(0), cc1.squeeze(0)
                ys.append(hh)
                cs.append(cc)
            axis = 1 if batched else 0
            case["y"], case["cell"] = enc(torch.stack(ys, axis)), enc(torch.stack(cs, axis))
            if with_h0:
                case["h0"], case["c0"] = enc(h0), enc(c0)
        else:
            y, _ = m(xt, t(h0).unsqueeze(0) if with_h0 else None)
            case["y"] = enc(y)
            if with_h0:
                case["h0"] = enc(h0)
    add("recurrent", case)


for kind in ["RNN", "GRU", "LSTM"]:
    rnn_case(kind, batched=True, with_h0=False)
    rnn_case(kind, batched=True, with_h0=True)
    rnn_case(kind, batched=False, with_h0=True, bias=False)
rnn_case("RNN", batched=True, with_h0=True, nonlinearity="relu")

# ---------------------------------------------------------------- bilinear
for bias in [True, False]:
    bl = torch.nn.Bilinear(4, 5, 3, bias=bias)
    randomize(bl)
    round_params(bl)
    x1, x2 = r(2, 3, 4), r(2, 3, 5)
    params = {"weight": enc(bl.weight.transpose(1, 2))}
    if bias:
        params["bias"] = enc(bl.bias)
    add("bilinear", {"layer": "Bilinear", "oracle": "torch", "input1_dims": 4, "input2_dims": 5, "output_dims": 3,
                     "bias": bias, "params": params, "x1": enc(x1), "x2": enc(x2), "y": enc(bl(t(x1), t(x2)))})

# ---------------------------------------------------------------- positional (MLX oracle)
for shape, dims, trad, base, scale, offset in [((1, 2, 4, 8), 8, False, 10000.0, 1.0, 0),
                                                ((1, 2, 4, 8), 6, True, 500.0, 0.5, 3),
                                                ((2, 3, 10), 8, False, 10000.0, 1.0, 7),
                                                ((1, 2, 4, 6), 6, True, 10000.0, 2.0, 0)]:
    x = r(*shape)
    y = np.array(mnn.RoPE(dims, traditional=trad, base=base, scale=scale)(mx.array(x), offset=offset))
    add("positional", {"layer": "RoPE", "oracle": "mlx", "dims": dims, "traditional": trad, "base": base,
                       "scale": scale, "offset": offset, "x": enc(x), "y": enc(y)})
x = r(2, 1, 3, 8)
offs = np.array([1, 4], dtype=np.int32)
y = np.array(mx.fast.rope(mx.array(x), 8, traditional=False, base=10000.0, scale=1.0, offset=mx.array(offs)))
add("positional", {"layer": "RoPE", "oracle": "mlx", "dims": 8, "traditional": False, "base": 10000.0, "scale": 1.0,
                   "offset_array": enc(offs), "x": enc(x), "y": enc(y)})
freqs = np.abs(r(3)) * 10 + 1
y = np.array(mx.fast.rope(mx.array(x), 6, traditional=True, base=None, scale=1.0, offset=2, freqs=mx.array(freqs)))
add("positional", {"layer": "rope_freqs", "oracle": "mlx", "dims": 6, "traditional": True, "scale": 1.0, "offset": 2,
                   "freqs": enc(freqs), "x": enc(x), "y": enc(y)})

for dims, kw in [(8, {}), (6, {"min_freq": 0.01, "max_freq": 1.0, "scale": 1.0, "cos_first": True, "full_turns": True}),
                 (2, {"scale": 0.5})]:
    # Small positions: float32 angles of hundreds of radians differ by ulps between libms.
    x = np.round(rng.random((2, 5)) * 4, 3).astype(np.float32)
    y = np.array(mnn.SinusoidalPositionalEncoding(dims, **kw)(mx.array(x)))
    add("positional", {"layer": "SinusoidalPositionalEncoding", "oracle": "mlx", "dims": dims, **kw,
                       "x": enc(x), "y": enc(y)})

for heads in [4, 6]:
    m = np.array(mnn.ALiBi.create_alibi_matrix(5, 7, heads, offset=2))
    scores = r(1, heads, 3, 7)
    mask = r(3, 7)
    y = np.array(mnn.ALiBi()(mx.array(scores), offset=2, mask=mx.array(mask)))
    add("positional", {"layer": "ALiBi", "oracle": "mlx", "num_heads": heads, "q_sequence_length": 5,
                       "k_sequence_length": 7, "offset": 2, "matrix": enc(m),
                       "slopes": enc(np.array(mnn.ALiBi.create_alibi_slope(heads))),
                       "scores": enc(scores), "mask": enc(mask), "y": enc(y)})

# ---------------------------------------------------------------- upsample
def torch_up(x, scale, mode, align):
    nd = x.ndim - 2
    tmode = {"nearest": "nearest", "linear": ["linear", "bilinear", "trilinear"][nd - 1]}[mode]
    kw = {} if mode == "nearest" else {"align_corners": align}
    return cl(F.interpolate(cf(t(x)), scale_factor=scale, mode=tmode, **kw))


up_cases = [
    # (shape, scale, mode, align_corners, oracle)
    ((1, 3, 4, 2), (2.0, 2.0), "nearest", False, "torch"),
    ((2, 5, 3), (3.0,), "nearest", False, "torch"),
    ((1, 4, 5, 2), (1.5, 2.5), "nearest", False, "mlx"),
    ((1, 6, 5, 1), (0.5, 0.6), "nearest", False, "mlx"),
    ((1, 3, 4, 2), (2.0, 2.0), "linear", False, "torch"),
    ((1, 3, 4, 2), (2.0, 3.0), "linear", True, "torch"),
    ((2, 5, 3), (2.5,), "linear", False, "mlx"),  # MLX centres non-integer grids differently
    ((2, 5, 3), (2.0,), "linear", False, "torch"),
    ((1, 2, 3, 2, 2), (2.0, 1.0, 2.0), "linear", False, "torch"),
    ((1, 4, 4, 2), (2.0, 2.0), "cubic", False, "mlx"),
    ((1, 3, 5, 1), (2.0, 1.5), "cubic", True, "mlx"),
    ((2, 6, 2), (1.5,), "cubic", False, "mlx"),
]
for shape, scale, mode, align, oracle in up_cases:
    x = r(*shape)
    if oracle == "torch":
        y = torch_up(x, scale, mode, align)
    else:
        y = np.array(mnn.Upsample(scale_factor=scale, mode=mode, align_corners=align)(mx.array(x)))
    add("upsample", {"layer": "Upsample", "oracle": oracle, "scale_factor": list(scale), "mode": mode,
                     "align_corners": align, "x": enc(x), "y": enc(y)})

total = 0
for family, cases in files.items():
    path = os.path.join(OUT, f"{family}.json")
    with open(path, "w") as f:
        json.dump({"cases": cases}, f, separators=(",", ":"))
    total += os.path.getsize(path)
    print(f"{path}: {len(cases)} cases, {os.path.getsize(path)} bytes")
print(f"total {total} bytes")
# mlx 0.32.4 aborts in static destructors at interpreter exit.
os._exit(0)
