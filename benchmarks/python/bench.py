#!/usr/bin/env python3
"""One benchmark, two backends: the same cases on oxmx (`import oxmx.core as mx`) or on MLX
(`import mlx.core as mx`), one JSON line per case:

    {"name": ..., "backend": ..., "median_ms": ..., "throughput": ..., "unit": ...}

    python3 benchmarks/python/bench.py --backend oxmx
    python3 benchmarks/python/bench.py --backend mlx
    python3 benchmarks/python/bench.py --compare      # both, in subprocesses, and the ratios

Cases: matmul 1024x1024 (float32), softmax, an element-wise chain, a compiled gelu,
quantized_matmul (4-bit, group 64), one training step of a 2-layer MLP (value_and_grad + SGD,
written with core ops only so both backends run the same code), and LM decoding speed
(tokens/s): oxmx.lm on the default GGUF model, or on `--lm-model FOLDER` with either backend
(mlx_lm cannot read GGUF files; `--compare` converts the GGUF to an MLX folder with oxmx.lm.convert
once, so both run the same weights).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def timeit(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def emit(name, backend, ms, throughput, unit, **extra):
    rec = {"name": name, "backend": backend, "median_ms": round(ms, 4), "throughput": round(throughput, 3),
           "unit": unit}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def core_cases(mx, backend, quick):
    reps = 5 if quick else 20
    mx.random.seed(0)

    # matmul 1024^2
    n = 1024
    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b)
    ms = timeit(lambda: mx.eval(a @ b), 2, reps)
    emit("matmul_1024", backend, ms, 2 * n ** 3 / (ms * 1e-3) / 1e9, "GFLOP/s")

    # softmax over the last axis
    x = mx.random.normal((256, 4096))
    mx.eval(x)
    ms = timeit(lambda: mx.eval(mx.softmax(x, axis=-1)), 2, reps)
    emit("softmax_256x4096", backend, ms, x.size / (ms * 1e-3) / 1e6, "Melem/s")

    # element-wise chain on 1M floats
    y = mx.random.normal((1024, 1024))
    mx.eval(y)

    def chain():
        z = mx.tanh(mx.exp(y * 0.5 + 1.0) - 2.0) * y + mx.abs(y)
        mx.eval(z)

    ms = timeit(chain, 2, reps)
    emit("elementwise_chain_1M", backend, ms, y.size / (ms * 1e-3) / 1e6, "Melem/s")

    # compiled gelu (tanh approximation) on 1M floats
    def gelu(v):
        return 0.5 * v * (1.0 + mx.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v * v * v)))

    cgelu = mx.compile(gelu)
    ms = timeit(lambda: mx.eval(cgelu(y)), 3, reps)
    emit("compiled_gelu_1M", backend, ms, y.size / (ms * 1e-3) / 1e6, "Melem/s")

    # quantized_matmul: x [8, 2048] @ W^T, W [2048, 2048] 4-bit g64
    w = mx.random.normal((2048, 2048)) * 0.02
    wq, scales, biases = mx.quantize(w, group_size=64, bits=4)
    xq = mx.random.normal((8, 2048))
    mx.eval(wq, scales, biases, xq)
    ms = timeit(lambda: mx.eval(mx.quantized_matmul(xq, wq, scales, biases, transpose=True, group_size=64, bits=4)),
                2, reps)
    emit("quantized_matmul_8x2048x2048_q4", backend, ms, 2 * 8 * 2048 * 2048 / (ms * 1e-3) / 1e9, "GFLOP/s")

    # one training step of a 2-layer MLP (784 -> 512 -> 10), batch 128, SGD
    params = {
        "w1": mx.random.normal((784, 512)) * 0.05, "b1": mx.zeros((512,)),
        "w2": mx.random.normal((512, 10)) * 0.05, "b2": mx.zeros((10,)),
    }
    xb = mx.random.normal((128, 784))
    yb = mx.random.randint(0, 10, (128,))
    mx.eval(params, xb, yb)

    def loss_fn(p, xs, ys):
        h = mx.maximum(xs @ p["w1"] + p["b1"], 0.0)
        logits = h @ p["w2"] + p["b2"]
        lse = mx.logsumexp(logits, axis=-1)
        picked = mx.take_along_axis(logits, ys[:, None], axis=-1)[:, 0]
        return mx.mean(lse - picked)

    vg = mx.value_and_grad(loss_fn)
    state = {"p": params}

    def step():
        loss, g = vg(state["p"], xb, yb)
        state["p"] = {k: state["p"][k] - 0.1 * g[k] for k in state["p"]}
        mx.eval(loss, state["p"])

    ms = timeit(step, 2, reps)
    emit("mlp_train_step_b128", backend, ms, 128 / (ms * 1e-3), "samples/s")


def lm_case(backend, model_path, quick):
    max_tokens = 32 if quick else 64
    if backend == "oxmx":
        from oxmx.lm import load, stream_generate
    else:
        from mlx_lm import load, stream_generate
    model, tokenizer = load(model_path)
    messages = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def run():
        last = None
        for r in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
            last = r
        return last

    run()  # warm-up
    runs = [run() for _ in range(2 if quick else 3)]
    tps = statistics.median(r.generation_tps for r in runs)
    ptps = statistics.median(r.prompt_tps for r in runs)
    emit("lm_decode", backend, 1e3 / tps, tps, "tokens/s", model=os.path.basename(model_path.rstrip("/")),
         prompt_tps=round(ptps, 1), tokens=runs[0].generation_tokens)


def default_gguf():
    d = os.environ.get("OXMX_MODELS_DIR") or os.path.expanduser("~/.cache/oxmx/models")
    p = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
    return p if os.path.isfile(p) else None


def run_backend(args):
    if args.backend == "oxmx":
        import oxmx.core as mx
    else:
        import mlx.core as mx
    if not args.lm_only:
        core_cases(mx, args.backend, args.quick)
    if args.no_lm:
        return
    model = args.lm_model or (default_gguf() if args.backend == "oxmx" else None)
    if model is None:
        print(json.dumps({"name": "lm_decode", "backend": args.backend,
                          "skipped": "no model (mlx_lm reads no GGUF: pass --lm-model FOLDER)"}), flush=True)
        return
    lm_case(args.backend, model, args.quick)


def compare(args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python")] + [p for p in [env.get("PYTHONPATH")] if p])
    lm_model = args.lm_model
    if lm_model is None and not args.no_lm and default_gguf():
        # The same weights for both: the GGUF converted (still 4-bit) to an MLX folder, once.
        lm_model = os.path.join(os.environ.get("TMPDIR", "/tmp"), "oxmx-bench-smollm2-mlx")
        if not os.path.isfile(os.path.join(lm_model, "config.json")):
            code = "from oxmx.lm import convert; convert({!r}, {!r})".format(default_gguf(), lm_model)
            subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    results = {}
    for backend in ("oxmx", "mlx"):
        cmd = [sys.executable, os.path.abspath(__file__), "--backend", backend]
        if args.quick:
            cmd.append("--quick")
        if args.no_lm:
            cmd.append("--no-lm")
        elif lm_model:
            cmd += ["--lm-model", lm_model]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout + out.stderr, file=sys.stderr)
            sys.exit("the {} run failed".format(backend))
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                print(line)
                results.setdefault(rec["name"], {})[backend] = rec
    print()
    print("{:34s} {:>12s} {:>12s} {:>16s}".format("case", "oxmx ms", "mlx ms", "oxmx/mlx speed"))
    for name, r in results.items():
        if "oxmx" in r and "mlx" in r and "median_ms" in r["oxmx"] and "median_ms" in r["mlx"]:
            o, m = r["oxmx"]["median_ms"], r["mlx"]["median_ms"]
            print("{:34s} {:12.3f} {:12.3f} {:15.2f}x".format(name, o, m, m / o if o else float("nan")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["oxmx", "mlx"], default="oxmx")
    ap.add_argument("--compare", action="store_true", help="run both backends and print oxmx/mlx speed ratios")
    ap.add_argument("--lm-model", help="model for the LM case (a folder both backends read, or a GGUF for oxmx)")
    ap.add_argument("--no-lm", action="store_true", help="skip the LM case")
    ap.add_argument("--lm-only", action="store_true", help="only the LM case")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    if args.compare:
        compare(args)
    else:
        run_backend(args)


if __name__ == "__main__":
    main()
