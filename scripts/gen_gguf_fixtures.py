#!/usr/bin/env python3
"""Oracle fixtures for GGUF block decoding and the ggml -> MLX affine mapping.

Writes crates/oxmx-core/tests/fixtures/gguf/:
  decode.npz   per case `<case>.blocks` (uint8 raw ggml blocks, [rows, bytes_per_row]),
               `<case>.expected` (float32, gguf.quants.dequantize), `<case>.type` (ggml type id);
               random tensors quantized with gguf.quants.quantize for the types it can quantize,
               random-but-valid blocks (sane f16 d/dmin, random quants) for the K-quants.
               Q8_K has no dequantizer in the gguf package: its expected values come from the
               NumPy reference below (ggml's dequantize_row_q8_K: d * q).
  affine.npz   per case `<case>.blocks`, `<case>.type`, `<case>.wq` (uint32), `<case>.scales`,
               `<case>.biases` (float16 where exact, else float32), `<case>.bits`; the mapping is
               implemented here in NumPy and checked: mx.dequantize(wq, scales, biases, 32, bits)
               equals gguf's dequantization.
  model.npz    for SmolLM2-135M-Instruct.Q4_1.gguf (when present): per sampled tensor the flat
               indices and values of a sample of its gguf decoding and the f64 sum of all of it.

Rerun: python3 scripts/gen_gguf_fixtures.py
"""
import os
import numpy as np
import gguf
from gguf.quants import quantize, dequantize
from gguf.constants import GGMLQuantizationType as T, GGML_QUANT_SIZES
import mlx.core as mx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/oxmx-core/tests/fixtures/gguf")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261202)


def rand_f16(n, scale):
    """Sane, finite f16 scales (both signs are not used for K-quant d/dmin: ggml writes them >= 0)."""
    return (np.abs(rng.standard_normal(n)) * scale + scale / 8).astype(np.float16)


def kquant_blocks(qt, nblocks):
    _, bsz = GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(nblocks, bsz), dtype=np.uint8)
    if qt == T.Q2_K:  # scales[16] qs[64] d dmin
        b[:, 80:82] = rand_f16(nblocks, 0.01).view(np.uint8).reshape(nblocks, 2)
        b[:, 82:84] = rand_f16(nblocks, 0.005).view(np.uint8).reshape(nblocks, 2)
    elif qt == T.Q3_K:  # hmask[32] qs[64] scales[12] d
        b[:, 108:110] = rand_f16(nblocks, 0.01).view(np.uint8).reshape(nblocks, 2)
    elif qt in (T.Q4_K, T.Q5_K):  # d dmin scales[12] ...
        b[:, 0:2] = rand_f16(nblocks, 0.01).view(np.uint8).reshape(nblocks, 2)
        b[:, 2:4] = rand_f16(nblocks, 0.005).view(np.uint8).reshape(nblocks, 2)
    elif qt == T.Q6_K:  # ql[128] qh[64] scales[16] d
        b[:, 208:210] = rand_f16(nblocks, 0.01).view(np.uint8).reshape(nblocks, 2)
    elif qt == T.Q8_K:  # d (f32) qs[256] bsums[16]
        b[:, 0:4] = (rng.standard_normal(nblocks) * 0.01).astype(np.float32).view(np.uint8).reshape(nblocks, 4)
    elif qt == T.MXFP4:  # e8m0 exponent, 16 bytes of nibbles; include the e < 2 subnormal branch
        b[:, 0] = rng.integers(0, 140, size=nblocks)
        b[0, 0] = 0
        b[1 % nblocks, 0] = 1
    return b


def q8_k_reference(blocks):
    b = blocks.reshape(-1, 292)
    d = b[:, 0:4].copy().view(np.float32)
    q = b[:, 4:260].view(np.int8).astype(np.float32)
    return (d * q).reshape(blocks.shape[0], -1)


def decode_fixtures():
    out = {}
    shapes = [(3, 64), (2, 2, 96), (1, 32), (5, 256)]
    for qt in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4):
        for i, shape in enumerate(shapes):
            x = rng.standard_normal(shape).astype(np.float32) * rng.choice([0.02, 1.0, 300.0])
            if i == 0:
                x[0, :7] = 0.0  # zeros, and a constant run
            blocks = quantize(x, qt)
            if qt == T.F32:
                blocks = blocks.view(np.uint8)
            elif qt == T.F16:
                blocks = blocks.view(np.uint8)
            exp = dequantize(blocks, qt)
            assert exp.dtype == np.float32 and exp.shape == x.shape, (qt, exp.dtype, exp.shape)
            key = f"{qt.name}_{i}"
            out[key + ".blocks"] = blocks.reshape(*shape[:-1], -1)
            out[key + ".expected"] = exp
            out[key + ".type"] = np.array(qt.value, np.uint32)
    # MXFP4 blocks with every exponent branch, and the K-quants, from random valid blocks.
    for qt in (T.MXFP4, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K):
        for i, (rows, nb) in enumerate([(2, 1), (3, 2)]):
            blocks = kquant_blocks(qt, rows * nb).reshape(rows, -1)
            exp = q8_k_reference(blocks) if qt == T.Q8_K else dequantize(blocks, qt)
            assert exp.dtype == np.float32 and np.isfinite(exp).all()
            key = f"{qt.name}_raw{i}"
            out[key + ".blocks"] = blocks
            out[key + ".expected"] = exp.reshape(rows, -1)
            out[key + ".type"] = np.array(qt.value, np.uint32)
    # An unsupported type: the decoder must refuse it by name.
    b = rng.integers(0, 256, size=(1, GGML_QUANT_SIZES[T.IQ2_XXS][1]), dtype=np.uint8)
    out["IQ2_XXS_0.blocks"] = b
    out["IQ2_XXS_0.type"] = np.array(T.IQ2_XXS.value, np.uint32)
    np.savez_compressed(os.path.join(OUT, "decode.npz"), **out)


# ---- the affine mapping -------------------------------------------------------------------

BITS = {T.Q4_0: 4, T.Q4_1: 4, T.Q5_0: 5, T.Q5_1: 5, T.Q8_0: 8}


def ggml_q_scale_bias(blocks, qt):
    """Per block (n, 32) unsigned codes q, and f32 scale, bias with value = scale*q + bias."""
    b = blocks.reshape(-1, GGML_QUANT_SIZES[qt][1])
    n = b.shape[0]
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)[:, 0]
    nib = lambda qs: np.concatenate([qs & 15, qs >> 4], axis=1)
    if qt == T.Q4_0:
        return nib(b[:, 2:18]), d, np.float32(-8) * d
    if qt == T.Q4_1:
        m = b[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
        return nib(b[:, 4:20]), d, m
    if qt in (T.Q5_0, T.Q5_1):
        off = 2 if qt == T.Q5_0 else 4
        qh = b[:, off:off + 4].copy().view(np.uint32)[:, 0]
        hi = ((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)
        q = nib(b[:, off + 4:off + 20]) | (hi << 4)
        if qt == T.Q5_0:
            return q, d, np.float32(-16) * d
        return q, d, b[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
    if qt == T.Q8_0:
        return (b[:, 2:34] ^ 0x80), d, np.float32(-128) * d
    raise ValueError(qt)


def pack_lsb(q, bits):
    """MLX's affine packing: each row's codes as one little-endian bit stream, in uint32 words."""
    rows, cols = q.shape
    bitsarr = ((q[:, :, None].astype(np.uint32) >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    stream = bitsarr.reshape(rows, cols * bits)
    return np.packbits(stream, axis=1, bitorder="little").view(np.uint32)


def f16_exact(x):
    with np.errstate(over="ignore"):
        return np.array_equal(x.astype(np.float16).astype(np.float32), x)


def to_affine(blocks, qt, shape):
    q, s, b = ggml_q_scale_bias(blocks, qt)
    rows = int(np.prod(shape[:-1]))
    cols = shape[-1]
    bits = BITS[qt]
    wq = pack_lsb(q.reshape(rows, cols), bits).reshape(*shape[:-1], cols * bits // 32)
    prod = s[:, None] * q.astype(np.float32)
    val = prod + b[:, None]
    # f16 scales/biases only when every operand and result MLX computes is exact in f16.
    exact = f16_exact(s) and f16_exact(b) and f16_exact(prod) and f16_exact(val)
    dt = np.float16 if exact else np.float32
    gshape = (*shape[:-1], cols // 32)
    return wq, s.astype(dt).reshape(gshape), b.astype(dt).reshape(gshape), bits


def affine_fixtures():
    out = {}
    f16_cases = 0
    for qt in BITS:
        for i, shape in enumerate([(4, 64), (2, 3, 96), (1, 32)]):
            x = rng.standard_normal(shape).astype(np.float32) * [0.05, 2.0, 700.0][i]
            if i == 2:
                # Multiples of 1/16 in [-0.5, 0.5): Q4_0/Q5_0/Q8_0 scales become powers of two, so
                # every product is exact in f16 and the f16 path is taken.
                x = (rng.integers(-8, 8, size=shape) / 16.0).astype(np.float32)
                x[0, 0] = -0.5
            blocks = quantize(x, qt)
            ref = dequantize(blocks, qt)
            wq, sc, bi, bits = to_affine(blocks, qt, shape)
            f16_cases += sc.dtype == np.float16
            deq = mx.dequantize(mx.array(wq), mx.array(sc), mx.array(bi), group_size=32, bits=bits)
            deq = np.array(deq.astype(mx.float32))
            # == (not bitwise): ggml's d*0 with d < 0 is -0.0, MLX's d*q + (-d*q) is +0.0.
            assert np.array_equal(deq, ref), (qt, i, np.abs(deq - ref).max())
            key = f"{qt.name}_{i}"
            out[key + ".blocks"] = blocks.reshape(*shape[:-1], -1)
            out[key + ".type"] = np.array(qt.value, np.uint32)
            out[key + ".wq"] = wq
            out[key + ".scales"] = sc
            out[key + ".biases"] = bi
            out[key + ".bits"] = np.array(bits, np.uint32)
    assert f16_cases >= 3, f16_cases
    # Overflow: a Q4_0 scale whose bias -8*d exceeds f16's range must fall back to f32.
    x = rng.standard_normal((1, 32)).astype(np.float32) * 60000.0
    blocks = quantize(x, T.Q4_0)
    wq, sc, bi, bits = to_affine(blocks, T.Q4_0, (1, 32))
    assert sc.dtype == np.float32
    deq = np.array(mx.dequantize(mx.array(wq), mx.array(sc), mx.array(bi), group_size=32, bits=bits))
    assert np.array_equal(deq, dequantize(blocks, T.Q4_0))
    for k, v in (("blocks", blocks), ("wq", wq), ("scales", sc), ("biases", bi)):
        out[f"Q4_0_big.{k}"] = v
    out["Q4_0_big.type"] = np.array(T.Q4_0.value, np.uint32)
    out["Q4_0_big.bits"] = np.array(4, np.uint32)
    np.savez_compressed(os.path.join(OUT, "affine.npz"), **out)


def model_fixtures():
    d = os.environ.get("OXMX_MODELS_DIR") or os.path.expanduser("~/.cache/oxmx/models")
    path = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print("model file absent, model.npz not written:", path)
        return
    r = gguf.GGUFReader(path)
    want = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.ffn_up.weight", "output_norm.weight"]
    out = {}
    for t in r.tensors:
        if t.name not in want:
            continue
        x = dequantize(t.data, t.tensor_type).reshape(-1)
        idx = np.sort(rng.choice(x.size, size=min(256, x.size), replace=False)).astype(np.int64)
        out[t.name + ".idx"] = idx
        out[t.name + ".vals"] = x[idx]
        out[t.name + ".sum"] = np.array(x.astype(np.float64).sum())
        out[t.name + ".type"] = np.array(int(t.tensor_type), np.uint32)
        # The affine mapping must agree with gguf on the real blocks too.
        if t.tensor_type in BITS:
            shape = tuple(int(v) for v in reversed(t.shape))
            wq, sc, bi, bits = to_affine(t.data, t.tensor_type, shape)
            deq = np.array(mx.dequantize(mx.array(wq), mx.array(sc), mx.array(bi), group_size=32, bits=bits).astype(mx.float32))
            assert np.array_equal(deq.reshape(-1), x), t.name
    assert len(out) == 4 * len(want), sorted(out)
    np.savez_compressed(os.path.join(OUT, "model.npz"), **out)


decode_fixtures()
affine_fixtures()
model_fixtures()
for f in sorted(os.listdir(OUT)):
    print(f, os.path.getsize(os.path.join(OUT, f)))
os._exit(0)
