#!/bin/sh
# On a GPU machine: the harness's whole GPU table against PyTorch (scripts/bench_gpu.py) and
# Llama-3-8B-shaped decoding in bf16 and 4-bit (random weights), after the GPU test suites in
# SUITES (default cuda_llm), from the binaries packed in
# target/gpuc/bins.tar.xz. Logs under $OUT.
#
#   sh scripts/gpu_table_and_decode.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for t in ${SUITES-cuda_llm}; do
  timeout 200 target/gpu/$t --test-threads 1 > "$OUT/$t.txt" 2>&1
  echo "$t: exit $?; $(grep -E "test result" "$OUT/$t.txt" | tail -1)"
  grep -E "FAILED|panicked" "$OUT/$t.txt" | head -6
done
python3 scripts/bench_gpu.py target/gpu/oxmx-bench > "$OUT/bench_gpu.txt" 2>&1
tail -40 "$OUT/bench_gpu.txt"
for model in llama3-8b-bf16 llama3-8b-4bit; do
  printf "%s: " "$model"
  timeout 200 target/gpu/oxmx bench --random-weights --model scripts/configs/$model -p 512 -g 128 -n 2 2>&1 | grep -E "Averages"
done
# PREFILL_AB=VAR: a 2,048-token bf16 prefill with VAR=0 and VAR=1 (e.g. OXMX_FLASH_SM90).
if [ -n "${PREFILL_AB-}" ]; then
  for v in 0 1; do
    printf "prefill 2048, %s=%s: " "$PREFILL_AB" "$v"
    env "$PREFILL_AB=$v" timeout 200 target/gpu/oxmx bench --random-weights --model scripts/configs/llama3-8b-bf16 -p 2048 -g 8 -n 2 2>&1 | grep -E "Averages"
  done
fi
