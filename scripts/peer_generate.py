#!/usr/bin/env python3
"""Peer timing for end-to-end generation: mlx-lm greedy decoding on the CPU (and optionally
transformers/PyTorch), for comparison with `oxmx generate --verbose`.

The prompt goes through the model's chat template; generation is greedy, at most --max-tokens
(default 128). One untimed warm-up generation runs first, then --runs timed ones. The mlx-lm
numbers are the statistics of mlx_lm's own `stream_generate` (its final GenerationResponse:
prompt_tokens, prompt_tps, generation_tokens, generation_tps, peak_memory), i.e. what
`mlx_lm generate --verbose` reports. By default generation stops at EOS like mlx-lm does; with
--ignore-eos exactly --max-tokens tokens are generated (steadier decode numbers).

Prints one JSON line.

Peer models (built once, outside the repo):
  HF float32 folder from the GGUF (transformers' dequantization): /work/models/smollm2-hf
  python3 -m mlx_lm convert --hf-path /work/models/smollm2-hf --mlx-path /work/models/smollm2-mlx-q4g64 -q --q-bits 4 --q-group-size 64
  python3 -m mlx_lm convert --hf-path /work/models/smollm2-hf --mlx-path /work/models/smollm2-mlx-q4g32 -q --q-bits 4 --q-group-size 32

Rerun:
  python3 scripts/peer_generate.py /work/models/smollm2-mlx-q4g64
  python3 scripts/peer_generate.py /work/models/smollm2-mlx-q4g32 --ignore-eos --runs 3
  python3 scripts/peer_generate.py /work/models/smollm2-mlx-q4g32 --torch /work/models/smollm2-hf

  python3 scripts/peer_generate.py /work/models/smollm2-mlx-gguf-exact --ignore-eos --llamacpp

Options: --prompt TEXT, --max-tokens N, --runs N, --ignore-eos, --threads N (default 2, for torch
and llama.cpp), --torch [HF_DIR] (default /work/models/smollm2-hf; times transformers' greedy
`generate` on CPU with torch.set_num_threads(N); decode tok/s = (new tokens - 1) /
(time(generate N) - time(generate 1)), same prompt ids), --llamacpp [GGUF] (default the oxmx
SmolLM2 Q4_1 GGUF; llama.cpp via the prebuilt `xllamacpp` wheel's in-process llama-server, greedy
(temperature 0), same prompt ids, numbers = llama-server's `timings` prompt/predicted per second).
Needs: mlx (CPU build is fine), mlx-lm (`pip install mlx-lm --no-deps` + protobuf), transformers,
torch for --torch, `pip install xllamacpp` for --llamacpp. Timings are wall clock: run on an
otherwise idle machine.
"""
import argparse
import json
import os
import statistics
import sys
import time

DEFAULT_PROMPT = "What is the capital of France?"
DEFAULT_HF = "/work/models/smollm2-hf"
DEFAULT_GGUF = os.path.join(os.environ.get("OXMX_MODELS_DIR", os.path.expanduser("~/.cache/oxmx/models")),
                            "SmolLM2-135M-Instruct.Q4_1.gguf")


def mlx_runs(args):
    import mlx.core as mx

    mx.set_default_device(mx.cpu)
    from mlx_lm import load, stream_generate

    t0 = time.perf_counter()
    model, tokenizer = load(args.model)
    load_s = time.perf_counter() - t0
    if args.ignore_eos:
        tokenizer.eos_token_ids = set()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    ids = list(ids)

    def once():
        text, last = [], None
        for r in stream_generate(model, tokenizer, ids, max_tokens=args.max_tokens):  # greedy by default
            text.append(r.text)
            last = r
        return last, "".join(text)

    once()  # warm-up
    runs = []
    for _ in range(args.runs):
        mx.reset_peak_memory()
        r, text = once()
        runs.append(r)
    med = lambda xs: statistics.median(xs)
    out = {
        "peer": "mlx-lm",
        "model": args.model,
        "device": str(mx.default_device()),
        "load_s": round(load_s, 3),
        "prompt_tokens": runs[-1].prompt_tokens,
        "prompt_tps": round(med([r.prompt_tps for r in runs]), 2),
        "generation_tokens": runs[-1].generation_tokens,
        "generation_tps": round(med([r.generation_tps for r in runs]), 2),
        "peak_memory_gb": round(max(r.peak_memory for r in runs), 4),
        "finish_reason": runs[-1].finish_reason,
        "runs": len(runs),
        "text": text[:200],
    }
    if len(runs) > 1:
        out["prompt_tps_all"] = [round(r.prompt_tps, 2) for r in runs]
        out["generation_tps_all"] = [round(r.generation_tps, 2) for r in runs]
    return out, ids


def torch_run(args, ids):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.torch, dtype=torch.float32).eval()
    x = torch.tensor([ids])
    kw = dict(do_sample=False, pad_token_id=model.generation_config.pad_token_id or 0)
    if args.ignore_eos:
        kw["eos_token_id"] = None

    def gen(n):
        t = time.perf_counter()
        with torch.no_grad():
            g = model.generate(x, max_new_tokens=n, **kw)
        return time.perf_counter() - t, g.shape[1] - len(ids)

    gen(args.max_tokens)  # warm-up
    t1s, tns = [], []
    for _ in range(args.runs):
        t1s.append(gen(1)[0])
        tn, new = gen(args.max_tokens)
        tns.append(tn)
    t1, tn = statistics.median(t1s), statistics.median(tns)
    return {
        "peer": "transformers",
        "model": args.torch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "prompt_tokens": len(ids),
        "prompt_tps": round(len(ids) / t1, 2),  # includes the first sampled token's step
        "generation_tokens": new,
        "decode_tps": round((new - 1) / (tn - t1), 2) if new > 1 else None,
    }


def llamacpp_run(args, ids):
    """llama.cpp through xllamacpp's in-process llama-server (prebuilt PyPI wheel, CPU; no compile)."""
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.llamacpp
    p.n_ctx = max(512, len(ids) + args.max_tokens + 8)
    p.n_parallel = 1
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    server = xlc.Server(p)
    req = {"prompt": ids, "max_tokens": args.max_tokens, "temperature": 0, "top_k": 1,
           "ignore_eos": bool(args.ignore_eos), "cache_prompt": False}
    server.handle_completions(req)  # warm-up
    ts = [server.handle_completions(req)["timings"] for _ in range(args.runs)]
    med = lambda k: round(statistics.median(t[k] for t in ts), 2)
    return {
        "peer": "llama.cpp (xllamacpp %s)" % getattr(xlc, "__version__", "?"),
        "model": args.llamacpp,
        "threads": args.threads,
        "system_info": xlc.get_system_info().strip(),
        "prompt_tokens": ts[-1]["prompt_n"],
        "prompt_tps": med("prompt_per_second"),
        "generation_tokens": ts[-1]["predicted_n"],
        "generation_tps": med("predicted_per_second"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="MLX model folder (mlx_lm convert output)")
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--ignore-eos", action="store_true")
    ap.add_argument("--torch", nargs="?", const=DEFAULT_HF, default=None, metavar="HF_DIR")
    ap.add_argument("--llamacpp", nargs="?", const=DEFAULT_GGUF, default=None, metavar="GGUF")
    ap.add_argument("--threads", type=int, default=2, help="torch / llama.cpp threads")
    args = ap.parse_args()
    out, ids = mlx_runs(args)
    if args.torch:
        out["transformers"] = torch_run(args, ids)
    if args.llamacpp:
        out["llama.cpp"] = llamacpp_run(args, ids)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    rc = 0
    try:
        main()
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # the mlx package aborts at interpreter exit
