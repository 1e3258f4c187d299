#!/bin/sh
# On a GPU machine, one call: where a Llama-3-8B-shaped decoding step's time goes. For each
# model (MODELS, default "4bit bf16"): tok/s for every setting in VARIANTS (space-separated
# VAR=value[+VAR=value] words, "-" for none; alternated ROUNDS times), then one trial under
# OXMX_GPU_PROFILE=1 (the GPU's busy time against the span, the stream worker's host time per
# primitive), kept in $OUT/profile_MODEL.txt. Binaries from target/gpuc/bins.tar.xz.
#
#   VARIANTS="OXMX_X=0 -" sh scripts/gpu_decode_host.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name --format=csv,noheader
bench() {
  m=$1
  shift
  timeout 120 target/gpu/oxmx bench --random-weights --model "scripts/configs/llama3-8b-$m" -p 512 -g 128 "$@"
}
for m in ${MODELS:-4bit bf16}; do
  r=0
  while [ "$r" -lt "${ROUNDS:-1}" ]; do
    for v in ${VARIANTS:--}; do
      printf "%s decode [%s]: " "$m" "$v"
      if [ "$v" = - ]; then bench "$m" -n 2 2>&1 | grep Averages; else (for kv in $(echo "$v" | tr '+' ' '); do export "$kv"; done; bench "$m" -n 2 2>&1 | grep Averages); fi
    done
    r=$((r + 1))
  done
  OXMX_GPU_PROFILE=1 bench "$m" -n 1 > "$OUT/profile_$m.txt" 2>&1
  grep -E "~gpu|profiled|Averages" "$OUT/profile_$m.txt"
  grep -E "calls" "$OUT/profile_$m.txt" | head -30
done
