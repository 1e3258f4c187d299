#!/usr/bin/env python3
"""Oracle fixtures for oxmx-lm (crates/oxmx-lm/tests/fixtures):

* tiny random-weight llama / qwen2 / qwen3 checkpoints (safetensors folders, float16 storage to
  stay small) with transformers' float32 logits for a fixed token batch and greedy ids;
* sampler masks (top-p, min-p, top-k) from a NumPy transcription of mlx-lm's sample_utils;
* for the real SmolLM2-135M-Instruct Q4_1 GGUF (when present): transformers' greedy ids for three
  chat prompts (weights dequantized by transformers' GGUF loader, float32), with the top-2 logit
  margin of every greedy step (`margins`) so near-ties are visible.

Rerun: python3 scripts/gen_lm_fixtures.py [--skip-gguf | --only-gguf]   (the GGUF part needs `accelerate`)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "crates", "oxmx-lm", "tests", "fixtures")
os.makedirs(FIX, exist_ok=True)
torch.manual_seed(0)


def tiny(model_type):
    import transformers as T

    common = dict(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    )
    if model_type == "llama":
        # untied head, llama3 rope scaling (exercises the frequency interpolation)
        cfg = T.LlamaConfig(
            **common,
            tie_word_embeddings=False,
            rope_theta=10000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        )
        cls = T.LlamaForCausalLM
    elif model_type == "qwen2":
        cfg = T.Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0)
        cls = T.Qwen2ForCausalLM
    elif model_type == "qwen3":
        cfg = T.Qwen3Config(**common, tie_word_embeddings=True, head_dim=24, rope_theta=1000000.0)
        cls = T.Qwen3ForCausalLM
    else:
        raise ValueError(model_type)
    model = cls(cfg).eval()
    # Random weights with more spread than the init so the logits are not near-uniform; norms
    # away from 1 so their weights matter.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif "bias" in n:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (1.5 / p.shape[-1] ** 0.5))
        # Round-trip through float16 so the stored weights are exactly what the oracle uses.
        for p in model.parameters():
            p.copy_(p.half().float())
    d = os.path.join(FIX, f"tiny_{model_type}")
    os.makedirs(d, exist_ok=True)
    model.config.save_pretrained(d)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [2, 7], "bos_token_id": 1}, f)

    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, 300, (2, 9), generator=g)
    with torch.no_grad():
        logits = model(tokens).logits.float()
        # greedy ids for 12 new tokens from the first row, no EOS stop
        gen = model.generate(tokens[:1], max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=0, min_new_tokens=12)
    new_ids = gen[0, tokens.shape[1]:].tolist()
    save_file({"tokens": tokens.to(torch.int32), "logits": logits.contiguous()},
              os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "expected_generate.json"), "w") as f:
        json.dump({"prompt": tokens[0].tolist(), "greedy": new_ids}, f)
    print(model_type, "logits", tuple(logits.shape), "greedy", new_ids)


# ---- sampler masks: NumPy transcription of mlx-lm's sample_utils ----

def np_top_p(lp, top_p):
    probs = np.exp(lp)
    idx = np.argsort(lp, axis=-1, kind="stable")
    sp = np.take_along_axis(probs, idx, axis=-1)
    cum = np.cumsum(sp, axis=-1)
    inv = np.zeros_like(idx)
    np.put_along_axis(inv, idx, np.broadcast_to(np.arange(lp.shape[-1]), idx.shape), axis=-1)
    cum = np.take_along_axis(cum, inv, axis=-1)
    return np.where(cum > 1 - top_p, lp, -np.inf)


def np_min_p(lp, min_p, keep):
    idx = np.argsort(-lp, axis=-1, kind="stable")
    s = np.take_along_axis(lp, idx, axis=-1)
    top = s[:, :1]
    rm = s < top + np.log(min_p)
    rm[:, :keep] = False
    sel = np.where(rm, -np.inf, s)
    inv = np.zeros_like(idx)
    np.put_along_axis(inv, idx, np.broadcast_to(np.arange(lp.shape[-1]), idx.shape), axis=-1)
    return np.take_along_axis(sel, inv, axis=-1)


def np_top_k(lp, k):
    idx = np.argpartition(-lp, k - 1, axis=-1)[:, k:]
    out = lp.copy()
    np.put_along_axis(out, idx, -np.inf, axis=-1)
    return out


def sampler_fixtures():
    rng = np.random.default_rng(3)
    cases = []
    for (b, v) in [(1, 10), (2, 50), (3, 257)]:
        x = rng.normal(size=(b, v)).astype(np.float32) * 2.0
        lp = (x - np.log(np.exp(x.astype(np.float64)).sum(-1, keepdims=True))).astype(np.float32)
        for top_p in [0.1, 0.5, 0.9]:
            cases.append({"op": "top_p", "p": top_p, "shape": [b, v], "logprobs": [round(float(v), 7) for v in lp.ravel()],
                          "keep": np.isfinite(np_top_p(lp.astype(np.float64), top_p)).ravel().tolist()})
        for min_p, keep in [(0.05, 1), (0.3, 1), (0.9, 3)]:
            cases.append({"op": "min_p", "p": min_p, "keep_n": keep, "shape": [b, v], "logprobs": [round(float(v), 7) for v in lp.ravel()],
                          "keep": np.isfinite(np_min_p(lp.astype(np.float64), min_p, keep)).ravel().tolist()})
        for k in [1, 3, v - 1]:
            cases.append({"op": "top_k", "k": k, "shape": [b, v], "logprobs": [round(float(v), 7) for v in lp.ravel()],
                          "keep": np.isfinite(np_top_k(lp, k)).ravel().tolist()})
    # logits processors (mlx-lm's make_logits_processors rules, NumPy)
    logits = np.array([[2.0, -1.0, 0.5, 3.0, -2.0]], dtype=np.float32)
    hist = [0, 1, 1, 3, 3, 3]

    def rep(x, pen, ctx):
        t = hist[-ctx:]
        y = x.copy()
        sel = y[:, t]
        y[:, t] = np.where(sel < 0, sel * pen, sel / pen)
        return y

    def presence(x, pen, ctx):
        y = x.copy()
        y[:, sorted(set(hist[-ctx:]))] -= pen
        return y

    def frequency(x, pen, ctx):
        y = x.copy()
        np.add.at(y, (0, np.array(hist[-ctx:])), -pen)
        return y

    def bias(x, b):
        y = x.copy()
        for k, v in b.items():
            y[:, k] += v
        return y

    procs = [
        {"kind": "repetition", "penalty": 2.0, "context": 20, "out": rep(logits, 2.0, 20)},
        {"kind": "repetition", "penalty": 2.0, "context": 2, "out": rep(logits, 2.0, 2)},
        {"kind": "presence", "penalty": 0.5, "context": 20, "out": presence(logits, 0.5, 20)},
        {"kind": "frequency", "penalty": 0.5, "context": 20, "out": frequency(logits, 0.5, 20)},
        {"kind": "bias", "bias": [[4, 10.0], [2, -0.5]], "out": bias(logits, {4: 10.0, 2: -0.5})},
    ]
    for pr in procs:
        pr["out"] = pr["out"].ravel().tolist()
    with open(os.path.join(FIX, "sampler.json"), "w") as f:
        json.dump({"masks": cases, "processors": {"logits": logits.ravel().tolist(), "history": hist, "cases": procs}}, f)
    print("sampler cases", len(cases))


def gguf_fixture():
    path = os.environ.get("OXMX_MODELS_DIR", os.path.expanduser("~/.cache/oxmx/models"))
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not os.path.exists(os.path.join(path, name)):
        print("skip gguf fixture:", os.path.join(path, name), "absent")
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=name, dtype=torch.float32).eval()
    prompts = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]
    out = []
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                               pad_token_id=0, min_new_tokens=20, output_logits=True,
                               return_dict_in_generate=True)
            new = g.sequences[0, len(ids):].tolist()
            # raw (unprocessed) float32 logits of each greedy step, KV-cached decode
            steps = torch.stack([l[0] for l in g.logits]).float()
            # cross-check: one uncached forward over prompt + greedy[:-1] gives the same argmaxes
            full = model(torch.tensor([ids + new[:-1]])).logits[0, len(ids) - 1:].float()
        top2 = steps.topk(2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()
        assert steps.argmax(-1).tolist() == new, "generate picked a token that is not the raw-logit argmax"
        assert full.argmax(-1).tolist() == new, "uncached forward disagrees with cached greedy"
        out.append({"prompt": p, "input_ids": ids, "greedy": new, "text": tok.decode(new),
                    "margins": [round(m, 4) for m in margins]})
        print(p, "->", repr(tok.decode(new)))
        print("  min top-2 margin %.4f at step %d; cached-vs-uncached max |dlogit| %.2e"
              % (min(margins), margins.index(min(margins)), (steps - full).abs().max().item()))
    # one line per case keeps the file a few KB and readable
    body = ",\n".join("  " + json.dumps(c) for c in out)
    with open(os.path.join(FIX, "smollm2_gguf_greedy.json"), "w") as f:
        f.write('{"file": %s, "max_new_tokens": 20,\n "note": "cases[].margins: logit[top1] - logit[top2] per greedy step '
                '(transformers, float32)",\n "cases": [\n%s\n]}\n' % (json.dumps(name), body))


if __name__ == "__main__":
    if "--only-gguf" not in sys.argv:
        for m in ["llama", "qwen2", "qwen3"]:
            tiny(m)
        sampler_fixtures()
    if "--skip-gguf" not in sys.argv:
        gguf_fixture()
    os._exit(0)
