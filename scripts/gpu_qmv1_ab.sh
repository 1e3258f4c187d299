#!/bin/sh
# On a GPU machine, one call: the x-stationary 4-bit mat-vec (`qmv1`) against the previous
# kernel (`OXMX_QMV1=0`): the quantized-matmul GPU test, DRAM-cold kernel times under Nsight
# Compute for VARIANTS (scripts/gpu_qmv_variants.sh), the harness's warm rows alternating, and
# Llama-3-8B-shaped 4-bit decoding both ways. Binaries from target/gpuc/bins.tar.xz.
#
#   sh scripts/gpu_qmv1_ab.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 target/gpu/cuda_llm --test-threads 1 quantized > "$OUT/quantized.txt" 2>&1
echo "cuda_llm quantized: exit $?; $(grep -E "test result" "$OUT/quantized.txt" | tail -1)"
grep -E "panicked|FAILED" "$OUT/quantized.txt" | head -6
# NCU=0 skips the Nsight Compute part (the longest).
if [ "${NCU:-1}" != 0 ]; then
  VARIANTS="${VARIANTS:-OXMX_QMV1=0 - OXMX_QMV1_SHAPE=2,4}" SHAPES="${SHAPES:-4096x4096 14336x4096 4096x14336}" \
    timeout 240 sh scripts/gpu_qmv_variants.sh
fi
for v in 0 1 0 1; do
  echo "harness, OXMX_QMV1=$v"
  OXMX_QMV1=$v timeout 40 target/gpu/oxmx-bench gpu_qmv | grep gpu_qmv | cut -c1-120
done
timeout 30 target/gpu/oxmx-bench gpu_matvec_14336 | grep gpu_ | cut -c1-120
for v in ${DECODE:-0 1}; do
  printf "4-bit decode, OXMX_QMV1=%s: " "$v"
  OXMX_QMV1=$v timeout 70 target/gpu/oxmx bench --random-weights --model scripts/configs/llama3-8b-4bit -p 512 -g 128 -n 1 2>&1 | grep -E "Averages"
done
