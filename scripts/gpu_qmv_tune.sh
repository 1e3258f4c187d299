#!/bin/sh
# On a GPU machine: DRAM-cold kernel times (Nsight Compute) of the 4-bit mat-vec at the
# Llama-3-8B shapes for the float kernel and several launch shapes of the tensor-core kernel,
# the harness rows both ways, and the element-wise / reduction kernels.
#   sh scripts/gpu_qmv_tune.sh path/to/oxmx-bench
set -u
B=$1
OUT=${OUT:-gpu-report}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
ncu_row() { python3 scripts/ncu_kernels.py --skip 2 --count 10 -- "$B" "$1" 2>>"$OUT/ncu_err.txt" | tail -n +2 | grep -v "^cast\|^unary_\|^binary_Add" ; }
for sh in 6144x4096 4096x4096 14336x4096 4096x14336; do
  echo "== gpu_qmv_$sh"
  OXMX_QMV_MMA=0 ncu_row "gpu_qmv_$sh"
  for cfg in 1,4 2,4 1,8 2,2 4,2 2,8; do
    OXMX_QMV_MMA_SHAPE=$cfg ncu_row "gpu_qmv_$sh" | sed "s/^/$cfg /"
  done
done
for v in 0 1 0 1; do OXMX_QMV_MMA=$v "$B" gpu_qmv | sed "s/^/mma=$v /" | cut -c1-150; done
for r in add mul_scalar exp tanh sum softmax; do
  echo "== $r"
  python3 scripts/ncu_kernels.py --skip 2 --count 10 -- "$B" "$r" 2>>"$OUT/ncu_err.txt" | tail -n +2
done
