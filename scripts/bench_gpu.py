#!/usr/bin/env python3
"""GPU rows of the benchmark harness: oxmx's CUDA backend against PyTorch on the same GPU, in one run.

Runs `oxmx-bench` (its default device is the GPU when one is present; every row synchronizes the
device inside the timed region) and the same workloads in PyTorch timed with CUDA events, then
prints one table with the ratio (PyTorch time / oxmx time: above 1 means oxmx is faster) and the
device's copy bandwidth (a large device-to-device copy, bytes read + written).

    python3 scripts/bench_gpu.py path/to/oxmx-bench [filter]
"""
import json
import os
import subprocess
import sys

import torch

ROWS = ["add_16M_f32", "mul_scalar_16M_f32", "exp_16M_f32", "tanh_16M_f32", "sum_4096x4096_axis-1",
        "softmax_4096x4096", "fast_rms_norm_4096x4096_bfloat16", "matmul_1024_float32", "matmul_2048_float32",
        "matmul_4096_float32", "matmul_4096_bfloat16", "matmul_4096_float16", "gpu_gemm_8192_bf16",
        "gpu_gemm_512x6144x4096_bf16", "gpu_gemm_512x4096x4096_bf16", "gpu_gemm_512x14336x4096_bf16",
        "gpu_gemm_512x4096x14336_bf16", "gpu_sdpa_causal_1x32x4096x128_bf16"]
MATVECS = [(6144, 4096), (4096, 4096), (14336, 4096), (4096, 14336)]
ROWS += [f"gpu_matvec_{n}x{k}_bf16" for n, k in MATVECS] + [f"gpu_qmv_{n}x{k}_q4g64_bf16" for n, k in MATVECS]
# The mat-vecs as a decoding step runs them (crates/oxmx-bench/src/gpu.rs): 256 products back to
# back over distinct weights of 160 MB in all, timed by the GPU's clock.
ROWS += [f"gpuseq_matvec_{n}x{k}_bf16" for n, k in MATVECS] + [f"gpuseq_qmv_{n}x{k}_q4g64_bf16" for n, k in MATVECS]
SEQ_BYTES, SEQ_PRODUCTS = 160 << 20, 256


def cuda_ms(fn, iters):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]


def seq_row(w, x1):
    """SEQ_PRODUCTS products x1 @ w_i.T over distinct copies of w (SEQ_BYTES in all) captured in
    one CUDA graph (PyTorch's launches would otherwise be the host's time, not the GPU's); a
    call replays it, and the row is divided by SEQ_PRODUCTS in torch_rows."""
    ws = [w * (1 + i / 64) for i in range(max(4, -(-SEQ_BYTES // (w.numel() * 2))))]
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(3):
            x1 @ ws[i % len(ws)].T  # warm cuBLAS's handle and workspace outside the capture
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        outs = [x1 @ ws[j % len(ws)].T for j in range(SEQ_PRODUCTS)]
    # The replay writes into the captured buffers, so the closure keeps them (and the weights).
    return lambda keep=(ws, outs): graph.replay()


def torch_rows():
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(1 << 24, device=dev, generator=g) * 2 - 1
    y = torch.rand(1 << 24, device=dev, generator=g) * 2 - 1
    m = torch.rand(4096, 4096, device=dev, generator=g) * 2 - 1
    rows = {
        "add_16M_f32": lambda: x + y,
        "mul_scalar_16M_f32": lambda: x * 3.0,
        "exp_16M_f32": lambda: torch.exp(x),
        "tanh_16M_f32": lambda: torch.tanh(x),
        "sum_4096x4096_axis-1": lambda: m.sum(-1),
        "softmax_4096x4096": lambda: torch.softmax(m, -1),
    }
    for n in (1024, 2048, 4096):
        for dt, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
            a = (torch.rand(n, n, device=dev, generator=g) * 2 - 1).to(dt)
            b = (torch.rand(n, n, device=dev, generator=g) * 2 - 1).to(dt)
            rows[f"matmul_{n}_{name}"] = lambda a=a, b=b: a @ b
    bf = torch.bfloat16
    r = (torch.rand(4096, 4096, device=dev, generator=g) * 2 - 1).to(bf)
    rw = torch.rand(4096, device=dev, generator=g).to(bf)
    rows["fast_rms_norm_4096x4096_bfloat16"] = lambda: torch.nn.functional.rms_norm(r, (4096,), rw, 1e-5)
    for name, gm, gn, gk in [("gpu_gemm_8192_bf16", 8192, 8192, 8192), ("gpu_gemm_512x6144x4096_bf16", 512, 6144, 4096),
                          ("gpu_gemm_512x4096x4096_bf16", 512, 4096, 4096), ("gpu_gemm_512x14336x4096_bf16", 512, 14336, 4096),
                          ("gpu_gemm_512x4096x14336_bf16", 512, 4096, 14336)]:
        a = (torch.rand(gm, gk, device=dev, generator=g) * 2 - 1).to(bf)
        b = (torch.rand(gn, gk, device=dev, generator=g) * 2 - 1).to(bf)
        rows[name] = lambda a=a, b=b: a @ b.T
    q, k_, v = ((torch.rand(1, 32, 4096, 128, device=dev, generator=g) * 2 - 1).to(bf) for _ in range(3))
    rows["gpu_sdpa_causal_1x32x4096x128_bf16"] = lambda: torch.nn.functional.scaled_dot_product_attention(q, k_, v, is_causal=True)
    for vn, vk in MATVECS:
        w = (torch.rand(vn, vk, device=dev, generator=g) * 2 - 1).to(bf)
        x1 = (torch.rand(1, vk, device=dev, generator=g) * 2 - 1).to(bf)
        rows[f"gpu_matvec_{vn}x{vk}_bf16"] = lambda w=w, x1=x1: x1 @ w.T
        rows[f"gpuseq_matvec_{vn}x{vk}_bf16"] = seq_row(w, x1)
    big = torch.empty(1 << 28, dtype=torch.uint8, device=dev)
    copy_ms = cuda_ms(lambda: big.clone(), 20)
    times = {k: cuda_ms(f, 20) / (SEQ_PRODUCTS if k.startswith("gpuseq") else 1) for k, f in rows.items()}
    return times, 2 * (1 << 28) / copy_ms / 1e6


def main():
    binary = sys.argv[1]
    want = sys.argv[2] if len(sys.argv) > 2 else ""
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 as float32, as oxmx computes it
    peers, copy_gbps = torch_rows()
    ours = {}
    # oxmx-bench runs a row when the filter is a substring of the row's key, so one process per
    # leading word (add, matmul, ...) covers its rows; the GPU rows' keys are their full names,
    # so `gpu_` and `gpuseq_` keep the two kinds of mat-vec row in separate processes.
    groups = sorted({row.split("_")[0] for row in ROWS if not want or want in row})
    for group in groups:
        # The sequence rows read the GPU's clock, which OXMX_GPU_PROFILE turns on.
        env = dict(os.environ, OXMX_GPU_PROFILE="1") if group == "gpuseq" else None
        # A filter naming GPU rows (gpu_qmv) narrows the process to them.
        gpu = group.startswith("gpu")
        word = group + "_" if gpu else group
        narrow = want if gpu and want.startswith(word) else word
        out = subprocess.run([binary, narrow], capture_output=True, text=True, check=True, env=env).stdout
        for line in out.splitlines():
            r = json.loads(line)
            if (r.get("impl") == "oxmx" and r["bench"] in ROWS and r["bench"].split("_")[0] == group
                    and (not want or want in r["bench"])):
                ours[r["bench"]] = r
    print(f"device: {torch.cuda.get_device_name()}, copy bandwidth {copy_gbps:.0f} GB/s (torch clone of 256 MB)")
    print("| workload | oxmx ms | oxmx GB/s or TFLOP/s | torch ms | torch / oxmx |")
    print("|---|---:|---:|---:|---:|")
    for row, r in ours.items():
        flop_row = r["gbps"] == 0 or row.startswith("matmul")
        rate = f"{r['gflops'] / 1e3:.1f} TFLOP/s" if flop_row else f"{r['gbps']:.0f} GB/s ({r['gbps'] / copy_gbps:.0%} of copy)"
        t = peers.get(row)
        if t is None:
            print(f"| {row} | {r['ms']:.3f} | {rate} | - | - |")
        else:
            print(f"| {row} | {r['ms']:.3f} | {rate} | {t:.3f} | {t / r['ms']:.2f}x |")


if __name__ == "__main__":
    main()
