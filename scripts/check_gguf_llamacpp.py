#!/usr/bin/env python3
"""Checks a GGUF file that oxmx wrote (e.g. `oxmx fuse --export-gguf`) in llama.cpp: the same
text (no chat template: each side tokenizes it with the GGUF's own tokenizer) decoded greedily
by llama.cpp (the xllamacpp wheel from PyPI) and by `oxmx generate` must give the same tokens.

    python3 scripts/check_gguf_llamacpp.py fused/ggml-model-f16.gguf --prompt "What is oxmx?" \
        [--oxmx target/release/oxmx] [--max-tokens 16]

Exit status 0 when the first --min-agree tokens agree; prints both sequences either way.
"""

import argparse
import json
import subprocess
import sys


def oxmx_tokens(binary, gguf, prompt, n):
    out = subprocess.run([binary, "generate", "--model", gguf, "-p", prompt, "-m", str(n), "--json",
                          "--ignore-chat-template"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens"]


def llamacpp_tokens(gguf, prompt, n):
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = gguf
    p.n_ctx = 512 + n
    p.n_parallel = 1
    server = xlc.Server(p)
    req = {"prompt": prompt, "max_tokens": n, "temperature": 0, "top_k": 1,
           "cache_prompt": False, "n_probs": 1}
    # The OpenAI-style reply lists each generated token's id with its log-probability.
    return [t["id"] for t in server.handle_completions(req)["choices"][0]["logprobs"]["content"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--prompt", default="The three primary colors are")
    ap.add_argument("--oxmx", default="target/release/oxmx")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--min-agree", type=int, default=6, help="tokens that must agree from the start")
    a = ap.parse_args()
    ours = oxmx_tokens(a.oxmx, a.gguf, a.prompt, a.max_tokens)
    theirs = llamacpp_tokens(a.gguf, a.prompt, a.max_tokens)
    same = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), min(len(ours), len(theirs)))
    print("oxmx:     ", ours)
    print("llama.cpp:", theirs)
    print("the first {} tokens agree".format(same))
    # The two differ in arithmetic (llama.cpp rounds activations to its weights' type), so a
    # near-tie may break apart later; a wrongly written file disagrees from the first token.
    sys.exit(0 if same >= min(a.min_agree, len(ours), len(theirs)) else 1)


if __name__ == "__main__":
    main()
