#!/usr/bin/env python3
"""PyTorch/transformers reference for `oxmx bench`'s prefill rate (and, for reference, its decode rate).

Builds LlamaForCausalLM from a config.json with random weights (default: the Llama-3-8B shape,
scripts/configs/llama3-8b-bf16), directly in bf16 on the GPU, SDPA attention, and times:

* prefill, P random prompt tokens (default 512; --prompt 512,2048 for several), two ways:
  - "one_forward": one forward over all P tokens into a fresh DynamicCache, logits for the last
    position only (logits_to_keep=1), argmax, the token read back to the host;
  - "split_p-1_plus_1": what `oxmx bench` times (oxmx-lm generate.rs: prefill_but_last + the first
    step): a forward over P-1 tokens that fills the cache, then a 1-token forward that gives the
    next token (logits, argmax, read back). The second pass re-reads every weight once more, and in
    eager transformers it is bound by the host (~15 ms of launches on an H100, 2026-12), so this
    variant measures HF's per-step overhead more than GPU work: compare against "one_forward";
  - "full_logits" (--full-logits): one forward with logits for all P positions, for information.
  tok/s = P / wall time between two torch.cuda.synchronize() calls; --warmup untimed runs
  first, then --runs timed ones; best and median reported.
* decode (--decode G, default 128, 0 skips): after a P=512 prompt (--decode-prompt), greedy
  generation of G tokens with the default DynamicCache: the prefill gives the first, G-1 one-token
  forwards the rest; tok/s = (G-1) / their time, as `oxmx bench`'s generation_tps counts. Eager
  transformers, no CUDA graphs, no torch.compile: a reference only, bound by the host.

Prints one JSON line per measurement (GPU name, torch and transformers versions included).

    python3 scripts/torch_llama_prefill.py [--prompt 512,2048] [--runs 10] [--decode 128]
    python3 scripts/torch_llama_prefill.py --tiny --device cpu   # a small config, a quick check
"""
import argparse
import inspect
import json
import statistics
import sys
import time
import traceback

import torch


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="scripts/configs/llama3-8b-bf16/config.json")
    ap.add_argument("--prompt", "-p", default="512", help="prompt lengths, comma-separated")
    ap.add_argument("--runs", "-n", type=int, default=10, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    ap.add_argument("--decode", "-g", type=int, default=128, help="tokens generated in the decode measurement (0: none)")
    ap.add_argument("--decode-prompt", type=int, default=512)
    ap.add_argument("--decode-runs", type=int, default=2)
    ap.add_argument("--full-logits", action="store_true", help="also time a forward with logits for every position")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="shrink the config (2 layers, width 256, vocab 1024)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build(args, dev):
    import transformers
    from transformers import AutoModelForCausalLM, LlamaConfig

    with open(args.config) as f:
        cfg = json.load(f)
    cfg.pop("quantization", None)
    cfg.pop("quantization_config", None)
    if args.tiny:
        cfg.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=64, vocab_size=1024)
    config = LlamaConfig.from_dict(cfg)
    torch.set_default_dtype(torch.bfloat16)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    # Only where the weights did not land in bf16 on the device (a cast would also turn the float32
    # rotary buffer into bf16).
    w = next(model.parameters())
    if w.device.type != dev.type or w.dtype != torch.bfloat16:
        model = model.to(device=dev, dtype=torch.bfloat16)
    model.eval()
    sync(dev)
    build_s = time.perf_counter() - t0
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    w = model.model.layers[0].mlp.down_proj.weight
    info = {
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn": getattr(model.config, "_attn_implementation", None),
        "params": params,
        "param_dtype": str(w.dtype),
        "param_device": str(w.device),
        "weight_std": round(float(w.detach().float().std()), 5),
        "build_s": round(build_s, 2),
    }
    return model, config, info


def keep_kwargs(model):
    """logits_to_keep=1 (num_logits_to_keep in older transformers); {} where neither exists."""
    names = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in names:
            return {name: 1}, name
    return {}, None


@torch.inference_mode()
def forward(model, ids, cache, kw):
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, **kw)
    return out.logits[:, -1, :].argmax(-1, keepdim=True), out.past_key_values


def prefill_one(model, ids, kw):
    tok, _ = forward(model, ids, None, kw)
    return int(tok[0, 0].item())


def prefill_split(model, ids, kw):
    _, cache = forward(model, ids[:, :-1], None, kw)
    tok, _ = forward(model, ids[:, -1:], cache, kw)
    return int(tok[0, 0].item())


def time_runs(fn, dev, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def emit(rec):
    print(json.dumps(rec), flush=True)


def main():
    args = parse()
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    model, config, info = build(args, dev)
    kw, keep_name = keep_kwargs(model)
    info["logits_to_keep_arg"] = keep_name
    emit(dict(what="setup", **info))
    vocab = config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    lengths = [int(x) for x in args.prompt.split(",") if x]
    variants = [("one_forward", prefill_one, kw), ("split_p-1_plus_1", prefill_split, kw)]
    if args.full_logits:
        variants.append(("full_logits", prefill_one, {}))
    for p in lengths:
        ids = torch.randint(0, vocab, (1, p), generator=gen).to(dev)
        # The two ways give the same next token (bf16 rounding aside) and a cache of P positions.
        with torch.inference_mode():
            tok, cache = forward(model, ids, None, kw)
            emit(dict(what="check", prompt_tokens=p, cache_len=int(cache.get_seq_length()),
                      token_one_forward=int(tok[0, 0]), token_split=prefill_split(model, ids, kw)))
            del cache
        for name, fn, k in variants:
            try:
                times = time_runs(lambda: fn(model, ids, k), dev, args.warmup, args.runs)
                best, med = min(times), statistics.median(times)
                emit(dict(what="prefill", variant=name, prompt_tokens=p, runs=len(times), best_ms=round(best * 1e3, 3),
                          median_ms=round(med * 1e3, 3), best_tps=round(p / best, 1), median_tps=round(p / med, 1),
                          logits_kept=(1 if k else p), gpu=info["gpu"], torch=info["torch"],
                          transformers=info["transformers"], attn=info["attn"],
                          peak_gb=round(torch.cuda.max_memory_allocated(dev) / 1e9, 2) if dev.type == "cuda" else None))
            except Exception as e:  # keep going: the other measurements still count
                traceback.print_exc()
                emit(dict(what="prefill", variant=name, prompt_tokens=p, error=repr(e)))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if args.decode > 1:
        try:
            ids = torch.randint(0, vocab, (1, args.decode_prompt), generator=gen).to(dev)
            rates, toks = [], None
            for r in range(args.decode_runs + 1):  # the first run warms up
                tok, cache = forward(model, ids, None, kw)
                sync(dev)
                out = [tok]
                t0 = time.perf_counter()
                for _ in range(args.decode - 1):
                    tok, cache = forward(model, tok, cache, kw)
                    out.append(tok)
                sync(dev)
                dt = time.perf_counter() - t0
                if r > 0:
                    rates.append((args.decode - 1) / dt)
                toks = torch.cat(out, 1)[0].tolist()
                del cache
            emit(dict(what="decode", prompt_tokens=args.decode_prompt, generation_tokens=args.decode,
                      cache="DynamicCache", runs=len(rates), best_tps=round(max(rates), 2),
                      median_tps=round(statistics.median(rates), 2), distinct_tokens=len(set(toks)),
                      gpu=info["gpu"], torch=info["torch"], transformers=info["transformers"], attn=info["attn"]))
        except Exception as e:
            traceback.print_exc()
            emit(dict(what="decode", error=repr(e)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
