#!/bin/sh
# On a GPU machine, one call: the GPU test suites, then the harness's GPU table against PyTorch
# and kernel-level times (scripts/gpu_kernel_report.sh). Binaries come as
# target/gpuc/bins.tar.xz (stripped oxmx-bench and the cuda / cuda_llm test executables; xz
# keeps them under the 64 MiB a call carries).
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
for t in cuda_llm cuda; do
  timeout 200 target/gpu/$t --test-threads 1 > "$OUT/$t.txt" 2>&1; echo "$t: exit $?"
  grep -E "test result|FAILED|panicked" "$OUT/$t.txt" | head -6
done
timeout 360 sh scripts/gpu_kernel_report.sh target/gpu/oxmx-bench
