#!/usr/bin/env python3
"""Oracle fixtures for oxmx-lm (crates/oxmx-lm/tests/fixtures):

* tiny random-weight llama / qwen2 / qwen3 checkpoints (safetensors folders, float16 storage to
  stay small) with transformers' float32 logits for a fixed token batch and greedy ids;
* the same for phi3 (partial rotary + longrope), gemma3_text (sliding/global layers, soft-capping),
  gemma3 (the multimodal wrapper's config and keys around the same weights), mixtral (MoE with a
  sliding window), qwen3_moe (MoE + one dense layer) and llama with rope_scaling linear, dynamic,
  yarn and llama3 (`tiny_llama_<type>`); each is reloaded by transformers from the written folder
  and must give the same logits, so the stored keys and config are what transformers reads;
* sampler masks (top-p, min-p, top-k) from a NumPy transcription of mlx-lm's sample_utils;
* for the real SmolLM2-135M-Instruct Q4_1 GGUF and Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (when
  present; the second comes from scripts/fetch_qwen_coder.sh): transformers' greedy ids for three
  chat prompts each (weights dequantized by transformers' GGUF loader, float32), with the top-2
  logit margin of every greedy step (`margins`) so near-ties are visible.

Rerun: python3 scripts/gen_lm_fixtures.py [--skip-gguf | --only-gguf] [--only NAME,...]
(the GGUF part needs `accelerate`; `--only tiny_phi3,tiny_mixtral` writes just those fixtures,
`--only-gguf --only qwen_coder_gguf_greedy.json` just the Qwen one)
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


# ---- more architectures and RoPE variants ----

COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def llama_variant(rope):
    """A llama with `rope` as its rope block; sizes chosen so each scaling changes the result."""
    import transformers as T

    extra = {}
    if rope["rope_type"] == "dynamic":
        # Dynamic NTK only differs once the sequence passes max_position_embeddings: the 9-token
        # batch and every greedy step are past 6, so the base grows with the length (transformers
        # and mlx-lm both compute it from offset + L).
        extra["max_position_embeddings"] = 6
    else:
        extra["max_position_embeddings"] = 512
    rope = dict(rope, rope_theta=10000.0)
    return T.LlamaConfig(**COMMON, **extra, tie_word_embeddings=False, rope_parameters=rope), T.LlamaForCausalLM


def new_model(name):
    import transformers as T

    if name.startswith("tiny_llama_"):
        ty = name[len("tiny_llama_"):]
        rope = {
            "linear": {"rope_type": "linear", "factor": 2.0},
            "dynamic": {"rope_type": "dynamic", "factor": 2.0},
            # factor 4 over an 8-position original context: a real ramp between the regimes and
            # the default attention factor 0.1 ln 4 + 1.
            "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8,
                     "beta_fast": 32.0, "beta_slow": 1.0},
            "llama3": {"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
                       "original_max_position_embeddings": 256},
        }[ty]
        return llama_variant(rope)
    if name == "tiny_phi3":
        # head_dim 16 with partial_rotary_factor 0.75: 12 rotated features, 6 longrope factors.
        # The 9-token batch fits the 16-position original context (short factors); the greedy
        # prompt (18 tokens) is past it (long factors).
        cfg = T.Phi3Config(**COMMON, max_position_embeddings=64, original_max_position_embeddings=16,
                           partial_rotary_factor=0.75, tie_word_embeddings=False, rope_theta=10000.0,
                           rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                                         "long_factor": [1.5, 2.0, 3.0, 4.5, 6.0, 8.0]})
        return cfg, T.Phi3ForCausalLM
    if name == "tiny_gemma3_text":
        c = dict(COMMON, num_hidden_layers=3, rms_norm_eps=1e-6)
        cfg = T.Gemma3TextConfig(**c, head_dim=16, sliding_window=4, query_pre_attn_scalar=24,
                                 layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                 final_logit_softcapping=30.0, attn_logit_softcapping=20.0,
                                 rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                                                  "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}},
                                 tie_word_embeddings=True)
        return cfg, T.Gemma3ForCausalLM
    if name == "tiny_mixtral":
        cfg = T.MixtralConfig(**dict(COMMON, intermediate_size=48), num_local_experts=4, num_experts_per_tok=2,
                              sliding_window=5, rope_theta=1000000.0, tie_word_embeddings=False)
        return cfg, T.MixtralForCausalLM
    if name == "tiny_qwen3_moe":
        cfg = T.Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                               norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                               rope_theta=1000000.0, tie_word_embeddings=True)
        return cfg, T.Qwen3MoeForCausalLM
    raise ValueError(name)


def randomize(model):
    """Weights with more spread than the init (logits not near-uniform), norms away from their
    identity, and exactly representable in float16 so the stored file is what the oracle used."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                # gemma's norms are offsets from 1: centre them on 0
                centre = 0.0 if "Gemma" in type(model).__name__ else 1.0
                p.copy_(centre + 0.3 * torch.randn_like(p))
            elif "bias" in n:
                p.copy_(0.5 * torch.randn_like(p))
            elif "embed_tokens" in n and "Gemma" in type(model).__name__:
                # Gemma multiplies embeddings by sqrt(hidden) and ties the head: a smaller table
                # keeps each token's own embedding from dominating the residual stream (greedy
                # decoding would otherwise just repeat the last token).
                p.copy_(torch.randn_like(p) * (0.4 / p.shape[-1] ** 0.5))
            else:
                p.copy_(torch.randn_like(p) * (1.5 / p.shape[-1] ** 0.5))
        for p in model.parameters():
            p.copy_(p.half().float())


def write_expected(model, d, tokens, prompt):
    with torch.no_grad():
        logits = model(tokens).logits.float()
        gen = model.generate(prompt[None], max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=0, min_new_tokens=12)
    new_ids = gen[0, prompt.shape[0]:].tolist()
    save_file({"tokens": tokens.to(torch.int32), "logits": logits.contiguous()}, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "expected_generate.json"), "w") as f:
        json.dump({"prompt": prompt.tolist(), "greedy": new_ids}, f)
    return logits, new_ids


def reload_check(cls, d, tokens, logits):
    """transformers reads the folder back (float16 -> float32) to the same logits."""
    m = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        again = m(tokens).logits.float()
    err = (again - logits).abs().max().item()
    assert err < 1e-4, f"{d}: reloaded logits differ by {err}"


def tiny_new(name, seed):
    torch.manual_seed(seed)
    cfg, cls = new_model(name)
    cfg._attn_implementation = "eager"  # soft-capping and windows exactly as written
    model = cls(cfg).eval()
    randomize(model)
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    model.config.save_pretrained(d)
    if name == "tiny_qwen3_moe":
        # Hub Qwen3-MoE configs say `num_experts` (transformers 5 writes `num_local_experts`).
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        c["num_experts"] = c.pop("num_local_experts")
        json.dump(c, open(p, "w"), indent=2, sort_keys=True)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    # model.save_pretrained writes the hub layout (per-expert MoE keys), which state_dict() does not
    model.save_pretrained(d, safe_serialization=True)
    from safetensors.torch import load_file
    stored = load_file(os.path.join(d, "model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in stored.items()}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [2, 7], "bos_token_id": 1}, f)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, 300, (2, 9), generator=g)
    prompt = tokens[0]
    if name == "tiny_phi3":
        # transformers' Phi-3 generate() recomputes the whole cache with the long factors when
        # the sequence first passes original_max_position_embeddings; a prompt already past it
        # (18 > 16 positions) keeps greedy decoding on one set of factors.
        prompt = torch.cat([tokens[0], tokens[1]])
    logits, new_ids = write_expected(model, d, tokens, prompt)
    reload_check(cls, d, tokens, logits)
    print(name, "logits", tuple(logits.shape), "greedy", new_ids)
    if name == "tiny_gemma3_text":
        gemma3_wrapper(d, stored)


def gemma3_wrapper(text_dir, stored):
    """tiny_gemma3: the same weights as a `Gemma3ForConditionalGeneration` checkpoint — a
    transformers 4.x style config (`text_config` with rope_theta, rope_local_base_freq,
    rope_scaling and sliding_window_pattern instead of layer_types / rope_parameters) and
    `model.language_model.*` keys next to vision-tower keys, which the loader must drop."""
    d = os.path.join(FIX, "tiny_gemma3")
    os.makedirs(d, exist_ok=True)
    text = json.load(open(os.path.join(text_dir, "config.json")))
    tc = {k: text[k] for k in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "num_key_value_heads", "head_dim", "rms_norm_eps", "sliding_window",
                               "query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping"]}
    tc.update(model_type="gemma3_text", rope_theta=10000.0, rope_local_base_freq=100.0,
              rope_scaling={"rope_type": "linear", "factor": 2.0}, sliding_window_pattern=2)
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": tc,
           "vision_config": {"model_type": "siglip_vision_model"}, "vocab_size": text["vocab_size"],
           "eos_token_id": [2, 7], "bos_token_id": 1}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    w = {"model.language_model." + k[len("model."):]: v.half().contiguous() for k, v in stored.items()}
    w["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = torch.zeros(4, 3, 2, 2, dtype=torch.float16)
    w["model.multi_modal_projector.mm_soft_emb_norm.weight"] = torch.zeros(8, dtype=torch.float16)
    save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    for f in ["expected.safetensors", "expected_generate.json"]:
        with open(os.path.join(text_dir, f), "rb") as src, open(os.path.join(d, f), "wb") as dst:
            dst.write(src.read())
    print("tiny_gemma3 (wrapper of tiny_gemma3_text)")


NEW_FIXTURES = ["tiny_phi3", "tiny_gemma3_text", "tiny_mixtral", "tiny_qwen3_moe",
                "tiny_llama_linear", "tiny_llama_dynamic", "tiny_llama_yarn", "tiny_llama_llama3"]


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


GGUF_MODELS = [
    # (file in $OXMX_MODELS_DIR, fixture, prompts); the second is scripts/fetch_qwen_coder.sh's
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2_gguf_greedy.json",
     ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]),
    ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen_coder_gguf_greedy.json",
     ["Write a Python function that returns the square of a number.", "What is the capital of France?",
      "Explain what a hash map is in one sentence."]),
]


def gguf_fixture(name, fixture, prompts):
    path = os.environ.get("OXMX_MODELS_DIR", os.path.expanduser("~/.cache/oxmx/models"))
    if not os.path.exists(os.path.join(path, name)):
        print("skip gguf fixture:", os.path.join(path, name), "absent")
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=name, dtype=torch.float32).eval()
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
    with open(os.path.join(FIX, fixture), "w") as f:
        f.write('{"file": %s, "max_new_tokens": 20,\n "note": "cases[].margins: logit[top1] - logit[top2] per greedy step '
                '(transformers, float32)",\n "cases": [\n%s\n]}\n' % (json.dumps(name), body))


if __name__ == "__main__":
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    if "--only-gguf" not in sys.argv:
        if only is None:
            for m in ["llama", "qwen2", "qwen3"]:
                tiny(m)
            sampler_fixtures()
        # each new fixture has its own seed, so any subset regenerates identically
        for i, name in enumerate(NEW_FIXTURES):
            if only is None or name in only:
                tiny_new(name, 100 + i)
    if "--skip-gguf" not in sys.argv:
        for name, fixture, prompts in GGUF_MODELS:
            if only is None or fixture in only:
                gguf_fixture(name, fixture, prompts)
    os._exit(0)
