#!/bin/sh
# On a GPU machine, one call: the GPU test suites, the harness's GPU table against PyTorch, and
# the 4-bit mat-vec tuning with kernel-level times (scripts/gpu_qmv_tune.sh). Binaries come as
# target/gpuc/bins.tar.xz (stripped oxmx-bench and the cuda / cuda_llm test executables).
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
for t in cuda_llm cuda; do
  timeout 200 target/gpu/$t --test-threads 1 > "$OUT/$t.txt" 2>&1; echo "$t: exit $?"
  grep -E "test result|FAILED|panicked" "$OUT/$t.txt" | head -6
done
timeout 150 python3 scripts/bench_gpu.py target/gpu/oxmx-bench > "$OUT/bench_gpu.txt" 2>&1; tail -32 "$OUT/bench_gpu.txt"
timeout 240 sh scripts/gpu_qmv_tune.sh target/gpu/oxmx-bench
