#!/bin/sh
# On a GPU machine: DRAM-cold kernel times (Nsight Compute) of the float 4-bit mat-vec kernel
# over its launch shapes (OXMX_QMV_SHAPE=R,U: rows per warp group, 16-byte chunks in flight per
# lane). Binaries from target/gpuc/bins.tar.xz.
set -u
mkdir -p target/gpu
[ -x target/gpu/oxmx-bench ] || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
for sh in ${SHAPES:-14336x4096 4096x4096}; do
  echo "== gpu_qmv_$sh"
  for cfg in ${CFGS:-1,2 1,4 1,8 2,2 2,4 2,8 4,2 4,4}; do
    OXMX_QMV_SHAPE=$cfg python3 scripts/ncu_kernels.py --skip 2 --count 6 -- target/gpu/oxmx-bench "gpu_qmv_$sh" 2>/dev/null | grep "^qmv_" | sed "s/^/$cfg /"
  done
done
