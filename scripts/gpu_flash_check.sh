#!/bin/sh
# On a GPU machine: the Hopper flash-attention kernel (kernels/flash_sm90.cu) checked and timed.
# The cuda_llm attention test with it (default) and without it (OXMX_FLASH_SM90=0, the mma.sync
# kernel); when the first fails, the same test with each kernel variant found under
# target/gpuc/variants/*/ (OXMX_CUDA_KERNELS_DIR), to tell which one is right; then the causal
# attention row against PyTorch, and the harness row with the mma.sync kernel in the same call.
# Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
#
#   sh scripts/gpu_flash_check.sh
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
[ -x target/gpu/oxmx-bench ] || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
run_test() {  # name, env assignment...
  name=$1; shift
  env "$@" timeout 200 target/gpu/cuda_llm --test-threads 1 attention > "$OUT/attn_$name.txt" 2>&1
  rc=$?
  echo "attention [$name]: exit $rc; $(grep -E "test result" "$OUT/attn_$name.txt" | tail -1)"
  grep -E "panicked|mismatch|max" "$OUT/attn_$name.txt" | head -4
  return $rc
}
if ! run_test sm90 OXMX_FLASH_SM90=1; then
  for d in target/gpuc/variants/*/; do
    run_test "$(basename "$d")" OXMX_CUDA_KERNELS_DIR="$d"
  done
fi
run_test mma_sync OXMX_FLASH_SM90=0
python3 scripts/bench_gpu.py target/gpu/oxmx-bench sdpa > "$OUT/bench_sdpa.txt" 2>&1
tail -12 "$OUT/bench_sdpa.txt"
for v in 0 1 0 1; do
  printf "OXMX_FLASH_SM90=%s: " "$v"
  OXMX_FLASH_SM90=$v target/gpu/oxmx-bench gpu_sdpa_causal 2>&1 | grep gpu_sdpa_causal
done
for s in ${EXTRA_SUITES-}; do
  timeout 300 target/gpu/$s --test-threads 1 > "$OUT/$s.txt" 2>&1
  echo "$s: exit $?; $(grep -E "test result" "$OUT/$s.txt" | tail -1)"
  grep -E "FAILED|panicked" "$OUT/$s.txt" | head -6
done
