#!/bin/sh
# On a GPU machine: DRAM-cold kernel times (Nsight Compute) of the 4-bit g64 mat-vec at the
# Llama-3-8B shapes under each of VARIANTS: space-separated settings, each a comma-separated
# list of environment assignments ("-" for none), e.g.
#
#   VARIANTS="- OXMX_QMV_MEMONLY=1 OXMX_QMV_SHAPE=2,8" sh scripts/gpu_qmv_variants.sh
#
# Every kernel of a call is listed (a variant may launch more than one). Binaries from
# target/gpuc/bins.tar.xz.
set -u
mkdir -p target/gpu
[ -x target/gpu/oxmx-bench ] || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
for sh in ${SHAPES:-4096x4096 14336x4096 4096x14336}; do
  echo "== gpu_qmv_$sh"
  for v in ${VARIANTS:--}; do
    vars=$(echo "$v" | tr ',' ' ' | sed 's/^-$//')
    # shellcheck disable=SC2086
    env $vars python3 scripts/ncu_kernels.py --skip 4 --count 8 -- target/gpu/oxmx-bench "gpu_qmv_${sh}_q4g64_bf16" 2>/dev/null \
      | grep "^qmv" | sed "s/^/$v /"
  done
done
