#!/bin/sh
# On a GPU machine: the GPU test suites, then the 4-bit mat-vec rows with the tensor-core kernel
# off and on (OXMX_QMV_MMA), the harness's GPU table, and kernel-level DRAM-cold times
# (scripts/gpu_kernel_report.sh). Binaries from target/gpu (stripped copies of this machine's build).
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
for t in target/gpu/cuda_llm target/gpu/cuda; do
  [ -x "$t" ] && { $t --test-threads 1 > "$OUT/$(basename $t).txt" 2>&1; echo "$t: exit $?"; grep -E "test result|FAILED|panicked" "$OUT/$(basename $t).txt" | head -8; }
done
for v in 0 1 0 1; do
  OXMX_QMV_MMA=$v target/gpu/oxmx-bench gpu_qmv_ | sed "s/^/mma=$v /" | cut -c1-160
done
for sh in 6144x4096 4096x4096 14336x4096 4096x14336; do
  echo "== float kernel (OXMX_QMV_MMA=0) gpu_qmv_$sh"
  OXMX_QMV_MMA=0 python3 scripts/ncu_kernels.py --skip 2 --count 20 -- target/gpu/oxmx-bench "gpu_qmv_$sh" 2>>"$OUT/ncu_err.txt" | tail -3
done
sh scripts/gpu_kernel_report.sh target/gpu/oxmx-bench
