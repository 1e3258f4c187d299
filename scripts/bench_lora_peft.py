#!/usr/bin/env python3
"""The PyTorch + peft side of the LoRA training benchmark (`oxmx lora` is the other side).

Both train the same model folder on the same `{"text": ...}` jsonl data with mlx-lm's default
LoRA settings: rank 8, scale 20 (lora_alpha = 160), no dropout, every linear layer of the last
`--num-layers` blocks, Adam at 1e-5, batches of `--batch-size` sequences cut to
`--max-seq-length`, loss over every token after the first. Throughput counts the tokens of
the batches (padding excluded), as mlx-lm's "Tokens/sec" does, after `--warmup` iterations.

    python3 scripts/bench_lora_peft.py --make-data data/        # README/BENCHMARKS text chunks
    python3 scripts/bench_lora_peft.py --model smol --data data --iters 30 [--dtype bfloat16]
    python3 scripts/bench_lora_peft.py --model smol --random-init   # writes random weights first

Prints one JSON line with tokens_per_sec, iterations, seconds and the final loss.
"""

import argparse
import json
import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_data(out, chunk_chars=2000, n=64):
    """Fixed text chunks from the repository's README and BENCHMARKS (deterministic)."""
    text = "\n".join((ROOT / f).read_text() for f in ("README.md", "BENCHMARKS.md"))
    chunks = [text[i:i + chunk_chars] for i in range(0, len(text) - chunk_chars, chunk_chars)]
    chunks = (chunks * (n // max(1, len(chunks)) + 1))[:n]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", chunks), ("valid", chunks[:8]), ("test", chunks[:8])):
        with open(out / (name + ".jsonl"), "w") as f:
            for c in part:
                f.write(json.dumps({"text": c}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-data")
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--random-init", action="store_true", help="write random weights into --model first")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--num-layers", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=2048)
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--dtype", default="bfloat16")
    a = ap.parse_args()
    if a.make_data:
        make_data(a.make_data)
        return

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, a.dtype)
    if a.random_init:
        torch.manual_seed(0)
        cfg = AutoConfig.from_pretrained(a.model)
        AutoModelForCausalLM.from_config(cfg).to(dtype).save_pretrained(a.model, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(a.model)
    texts = [json.loads(l)["text"] for l in open(pathlib.Path(a.data) / "train.jsonl")]
    seqs = []
    for t in texts:
        ids = tok(t)["input_ids"]
        if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
            ids = ids + [tok.eos_token_id]  # mlx-lm appends EOS to a text example
        seqs.append(ids[: a.max_seq_length])
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype).cuda()
    n_layers = model.config.num_hidden_layers
    lcfg = LoraConfig(
        r=8, lora_alpha=8 * 20, lora_dropout=0.0, bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(n_layers - a.num_layers, n_layers)),
    )
    model = get_peft_model(model, lcfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.learning_rate)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def batch(i):
        rows = [seqs[(i * a.batch_size + j) % len(seqs)] for j in range(a.batch_size)]
        width = max(map(len, rows))
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, s in enumerate(rows):
            x[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = True
        return x.cuda(), mask.cuda(), sum(map(len, rows))

    tokens, start, loss = 0, None, None
    for it in range(a.warmup + a.iters):
        if it == a.warmup:
            torch.cuda.synchronize()
            start, tokens = time.perf_counter(), 0
        x, mask, n = batch(it)
        logits = model(input_ids=x[:, :-1], attention_mask=mask[:, :-1]).logits.float()
        tgt = x[:, 1:]
        m = mask[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
        loss = (ce * m.reshape(-1)).sum() / m.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tokens += n
    torch.cuda.synchronize()
    secs = time.perf_counter() - start
    print(json.dumps({"peer": "pytorch+peft", "torch": torch.__version__, "tokens_per_sec": tokens / secs,
                      "iterations": a.iters, "seconds": secs, "loss": float(loss),
                      "gpu": torch.cuda.get_device_name(0), "dtype": a.dtype}))


if __name__ == "__main__":
    main()
