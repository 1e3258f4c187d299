#!/usr/bin/env python3
"""Lossless MLX copy of SmolLM2-135M-Instruct.Q4_1.gguf (the form oxmx keeps it in memory):
Q4_1 blocks -> MLX affine 4-bit g32 (scale = d, bias = m, same codes), Q8_0 token_embd ->
MLX affine 8-bit g32 (code = q + 128, scale = d, bias = -128 d); scales/biases float32, norms float32.
attn_q / attn_k rows are un-permuted exactly as transformers' GGUF loader does.

Template (config, tokenizer, key layout): an mlx_lm convert output with 4-bit g32 linears and an
8-bit g32 embedding (/work/models/smollm2-mlx-q4g32-emb8).

Rerun: python3 scripts/peer_gguf_to_mlx.py [GGUF] [TEMPLATE_DIR] [OUT_DIR]
"""
import os
import shutil
import sys

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import load_file, save_file

GGUF = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/oxmx/models/SmolLM2-135M-Instruct.Q4_1.gguf")
TPL = sys.argv[2] if len(sys.argv) > 2 else "/work/models/smollm2-mlx-q4g32-emb8"
OUT = sys.argv[3] if len(sys.argv) > 3 else "/work/models/smollm2-mlx-gguf-exact"
N_HEAD, N_KV = 9, 3

NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def hf_name(g):
    if g == "token_embd.weight":
        return "model.embed_tokens"
    if g == "output_norm.weight":
        return "model.norm"
    _, i, part, _ = g.split(".")
    return f"model.layers.{i}.{NAMES[part]}"


def rev_perm_rows(rows, n_head):
    idx = np.arange(rows)
    return idx.reshape(n_head, rows // n_head // 2, 2).swapaxes(2, 1).reshape(rows)


def pack(codes, bits):
    """uint8 codes (rows, cols) -> MLX uint32 words, element j of a word at bits [bits*j, bits*(j+1))."""
    per = 32 // bits
    c = codes.astype(np.uint32).reshape(codes.shape[0], -1, per)
    return np.bitwise_or.reduce(c << (np.arange(per, dtype=np.uint32) * bits), axis=-1)


def q4_1(raw, rows):
    b = raw.reshape(rows, -1, 20)
    d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = b[..., 4:]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).reshape(rows, -1)  # element i low, i+16 high
    return codes, d, m


def q8_0(raw, rows):
    b = raw.reshape(rows, -1, 34)
    d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = b[..., 2:].copy().view(np.int8).astype(np.int16)
    return (q + 128).astype(np.uint8).reshape(rows, -1), d, -128.0 * d


def main():
    tpl = load_file(os.path.join(TPL, "model.safetensors"))
    out = {}
    for t in GGUFReader(GGUF).tensors:
        name, kind = hf_name(t.name), t.tensor_type.name
        if kind == "F32":
            out[name + ".weight"] = np.asarray(t.data, dtype=np.float32).copy()
            continue
        rows = t.data.shape[0]
        codes, s, b = (q4_1 if kind == "Q4_1" else q8_0)(np.asarray(t.data), rows)
        bits = 4 if kind == "Q4_1" else 8
        if t.name.endswith("attn_q.weight") or t.name.endswith("attn_k.weight"):
            p = rev_perm_rows(rows, N_HEAD if "attn_q" in t.name else N_KV)
            codes, s, b = codes[p], s[p], b[p]
        out[name + ".weight"], out[name + ".scales"], out[name + ".biases"] = pack(codes, bits), s, b
    assert set(out) == set(tpl), (set(out) ^ set(tpl))
    for k in out:
        assert out[k].shape == tpl[k].shape and out[k].dtype == tpl[k].dtype, (k, out[k].shape, tpl[k].shape)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    shutil.copytree(TPL, OUT, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
    save_file(out, os.path.join(OUT, "model.safetensors"), metadata={"format": "mlx"})
    print("wrote", OUT, len(out), "tensors")


if __name__ == "__main__":
    main()
