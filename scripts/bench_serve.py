#!/usr/bin/env python3
"""Benchmarks a running `oxmx serve` (standard library only).

1. Aggregate decode throughput: K concurrent streaming /v1/completions requests (K = 1 and 8 by
   default), each generating --tokens tokens with EOS suppressed (logit_bias), so every stream
   runs its full length; reports completion tokens / wall time and mean time to first token.
2. Prompt cache: time to first token for a ~2000-token prompt sent twice with the same prefix
   (the second request reuses the first's cache), against a fresh prompt of the same length
   (a different first word, so no prefix is shared).

Usage: bench_serve.py [--url http://127.0.0.1:8080] [--model smollm2] [--tokens 64] [--streams 1,8]
"""
import argparse
import json
import threading
import time
import urllib.request


def stream(url, body, out, i):
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    ttft, usage = None, None
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ttft is None and ev.get("choices") and ev["choices"][0].get("text"):
                ttft = time.time() - t0
            if ev.get("usage"):
                usage = ev["usage"]
    total = time.time() - t0
    out[i] = (ttft if ttft is not None else total, usage, total)


def run(url, model, k, tokens, prompt_fn):
    out = [None] * k
    bias = {str(t): -100 for t in (0, 1, 2)}  # SmolLM2's special end tokens: run to max_tokens
    ths = []
    t0 = time.time()
    for i in range(k):
        body = {"model": model, "prompt": prompt_fn(i), "max_tokens": tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}, "logit_bias": bias}
        th = threading.Thread(target=stream, args=(url, body, out, i))
        th.start()
        ths.append(th)
    for th in ths:
        th.join()
    wall = time.time() - t0
    toks = sum(o[1]["completion_tokens"] for o in out)
    return toks / wall, sum(o[0] for o in out) / k, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--prefix-words", type=int, default=1000)
    a = ap.parse_args()
    run(a.url, a.model, 1, 4, lambda i: "warm up")
    rates = {}
    for k in [int(x) for x in a.streams.split(",")]:
        tps, ttft, _ = run(a.url, a.model, k, a.tokens, lambda i: f"Story number {i}: once upon a time")
        rates[k] = tps
        print(f"{k} streams: {tps:.1f} tok/s aggregate, mean TTFT {ttft * 1000:.0f} ms")
    ks = sorted(rates)
    if len(ks) > 1:
        print(f"ratio {ks[-1]} vs {ks[0]} streams: {rates[ks[-1]] / rates[ks[0]]:.2f}x")
    # ~2000-token prompts: "wordN" pieces tokenize to about two tokens each.
    doc = " ".join(f"w{n}" for n in range(a.prefix_words))
    cold_prompt = lambda tag: f"{tag} {doc}\nQuestion: what was the first word?"
    _, cold, out = run(a.url, a.model, 1, 1, lambda i: cold_prompt("Alpha"))
    _, warm, out2 = run(a.url, a.model, 1, 1, lambda i: cold_prompt("Alpha"))
    _, cold2, _ = run(a.url, a.model, 1, 1, lambda i: cold_prompt("Beta"))
    pt = out2[0][1]["prompt_tokens"]
    cached = out2[0][1].get("prompt_tokens_details", {}).get("cached_tokens")
    print(f"prompt {pt} tokens: TTFT cold {cold * 1000:.0f} ms / {cold2 * 1000:.0f} ms, "
          f"with the prefix cached ({cached} tokens) {warm * 1000:.0f} ms: {min(cold, cold2) / warm:.1f}x")


if __name__ == "__main__":
    main()
