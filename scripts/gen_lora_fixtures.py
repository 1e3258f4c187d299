#!/usr/bin/env python3
"""Oracle fixtures for oxmx-lm's fine-tuning (crates/oxmx-lm/tests/fixtures/lora), made with
mlx-lm's own tuner code (mlx-lm 0.32, mlx CPU):

* adapters trained by mlx-lm's `train()` for a few steps on the tiny qwen2 checkpoint
  (tests/fixtures/tiny_qwen2, run in float32): `lora` (default keys = every Linear of the last
  block), `dora` (keys q_proj/v_proj, all blocks), `full` (last block), and `qlora` over a 4-bit
  copy of the base (written as an MLX folder `qbase/`). Each folder holds mlx-lm's
  `adapters.safetensors` and `adapter_config.json` and `expected.safetensors` with the adapted
  model's eval-mode logits for a fixed token batch; `qlora/fused_expected.safetensors` holds the
  logits of mlx-lm's fuse of the QLoRA adapter (re-quantized to 4 bits);
* `schedule.json`: the learning rates of mlx-lm's `build_schedule` (cosine decay after a linear
  warm-up) for steps 0..24;
* `data/`: chat, completions and text jsonl files and, when the SmolLM2 tokenizer is at
  /work/models/smollm2-hf, `data_expected.json` with mlx-lm's (tokens, offset) for each record
  with and without --mask-prompt.

Rerun: python3 scripts/gen_lora_fixtures.py  (--only-fused: just qlora/fused_expected)
"""
import json
import os
import shutil
import types
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.lora import CONFIG_DEFAULTS
from mlx_lm.tuner.trainer import TrainingArgs, train
from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
from mlx_lm.utils import load_model, save_config, save_model

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "crates" / "oxmx-lm" / "tests" / "fixtures"
OUT = FIX / "lora"
BASE = FIX / "tiny_qwen2"
TOKENS = mx.array([[1, 17, 250, 33, 4, 99, 120, 7, 2], [1, 5, 6, 7, 8, 9, 10, 11, 12]], dtype=mx.int32)


class IdDataset:
    """Token-id examples in the shape mlx-lm's trainer reads (process -> (tokens, offset))."""

    def __init__(self, rows):
        self._rows = rows

    def __getitem__(self, i):
        return self._rows[i]

    def itemlen(self, i):
        return len(self._rows[i][0])

    def __len__(self):
        return len(self._rows)


def training_rows(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return [([1] + rng.integers(3, 300, size=int(rng.integers(6, 20))).tolist() + [2], 0) for _ in range(n)]


def base_model(path):
    model, config = load_model(Path(path))
    model.set_dtype(mx.float32)
    return model, config


def make_adapter(name, fine_tune_type, num_layers, lora_parameters, base=BASE, seed=0):
    mx.random.seed(seed)
    np.random.seed(seed)
    model, _ = base_model(base)
    model.freeze()
    if fine_tune_type == "full":
        for layer in model.layers[-max(num_layers, 0):]:
            layer.unfreeze()
    else:
        linear_to_lora_layers(model, num_layers, lora_parameters, use_dora=fine_tune_type == "dora")
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    args = dict(CONFIG_DEFAULTS)
    args.update(
        model=str(base.relative_to(ROOT)),
        train=True,
        data="synthetic",
        fine_tune_type=fine_tune_type,
        num_layers=num_layers,
        batch_size=4,
        iters=6,
        learning_rate=1e-2,
        adapter_path=str(out.relative_to(ROOT)),
        lora_parameters=None if fine_tune_type == "full" else lora_parameters,
    )
    save_config(dict(args), out / "adapter_config.json")
    targs = TrainingArgs(batch_size=4, iters=6, steps_per_report=100, steps_per_eval=1000, steps_per_save=1000,
                         adapter_file=out / "adapters.safetensors", max_seq_length=64)
    opt = optim.Adam(learning_rate=1e-2)
    train(model=model, optimizer=opt, train_dataset=IdDataset(training_rows()), args=targs)
    model.eval()
    logits = model(TOKENS).astype(mx.float32)
    mx.save_safetensors(str(out / "expected.safetensors"), {"tokens": TOKENS, "logits": logits})
    keys = sorted(k for k, _ in tree_flatten(model.trainable_parameters()))
    print(name, len(keys), "adapter tensors")


def quantized_base():
    model, config = base_model(BASE)
    nn.quantize(model, group_size=32, bits=4)
    config["quantization"] = {"group_size": 32, "bits": 4, "mode": "affine"}
    config["quantization_config"] = config["quantization"]
    q = OUT / "qbase"
    if q.exists():
        shutil.rmtree(q)
    q.mkdir(parents=True)
    save_model(q, model)
    config.pop("torch_dtype", None)
    save_config(config, q / "config.json")
    return q


def schedule():
    cfg = {"name": "cosine_decay", "arguments": [1e-3, 20, 1e-5], "warmup": 4, "warmup_init": 1e-5}
    s = build_schedule(cfg)
    values = [float(s(mx.array(i))) for i in range(25)]
    (OUT / "schedule.json").write_text(json.dumps({"config": cfg, "values": values}, indent=1))


DATA = {
    "chat": [
        {"messages": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris."}]},
        {"messages": [{"role": "system", "content": "You answer briefly."},
                      {"role": "user", "content": "Name a prime."},
                      {"role": "assistant", "content": "Seven."}]},
    ],
    "completions": [
        {"prompt": "2 + 2 =", "completion": "4"},
        {"prompt": "Translate 'chat' to English.", "completion": "cat"},
    ],
    "text": [
        {"text": "The quick brown fox jumps over the lazy dog."},
        {"text": "Low-rank adapters train few parameters."},
    ],
}


def data():
    d = OUT / "data"
    for form, rows in DATA.items():
        (d / form).mkdir(parents=True, exist_ok=True)
        with open(d / form / "train.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    tok_dir = Path("/work/models/smollm2-hf")
    if not tok_dir.exists():
        print("no SmolLM2 tokenizer: data_expected.json not written")
        return
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_lm.tuner.datasets import create_dataset

    tok = load_tokenizer(tok_dir)
    expected = {}
    for form, rows in DATA.items():
        for mask in [False, True] if form != "text" else [False]:
            ds = create_dataset(rows, tok, types.SimpleNamespace(mask_prompt=mask))
            expected[f"{form}/{'mask' if mask else 'full'}"] = [{"tokens": list(ds.process(r)[0]), "offset": ds.process(r)[1]} for r in rows]
    (OUT / "data_expected.json").write_text(json.dumps(expected))




def fused_qlora():
    """mlx-lm's fuse of the QLoRA adapter, re-quantized (`qlora/fused_expected.safetensors`)."""
    from mlx.utils import tree_unflatten
    from mlx_lm.tuner.utils import load_adapters

    model, _ = base_model(OUT / "qbase")
    load_adapters(model, str(OUT / "qlora"))
    fused = [(n, m.fuse(dequantize=False)) for n, m in model.named_modules() if hasattr(m, "fuse")]
    model.update_modules(tree_unflatten(fused))
    model.eval()
    logits = model(TOKENS).astype(mx.float32)
    mx.save_safetensors(str(OUT / "qlora" / "fused_expected.safetensors"), {"tokens": TOKENS, "logits": logits})


if __name__ == "__main__":
    import sys

    OUT.mkdir(parents=True, exist_ok=True)
    if "--only-fused" not in sys.argv:
        make_adapter("lora", "lora", 1, {"rank": 4, "dropout": 0.0, "scale": 10.0})
        make_adapter("dora", "dora", -1, {"rank": 4, "dropout": 0.0, "scale": 10.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]})
        make_adapter("full", "full", 1, None)
        make_adapter("qlora", "lora", 2, {"rank": 4, "dropout": 0.0, "scale": 10.0}, base=quantized_base())
        schedule()
        data()
    fused_qlora()
