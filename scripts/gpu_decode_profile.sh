#!/bin/sh
# On a GPU machine: where a Llama-3-8B-shaped decoding step's time goes.
#  1. `oxmx bench` plain, then with OXMX_GPU_PROFILE=1: the stream worker's host time per
#     primitive, and the GPU's own clock around each CUDA graph (busy time against the span).
#  2. Nsight Compute over the last ~1.5 decoding steps of a short run (--warm: caches as the run
#     left them), every kernel in launch order in $OUT/decode_kernels.json, and one step's
#     kernels by name (scripts/decode_step_kernels.py).
# Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
#
#   MODEL=scripts/configs/llama3-8b-4bit sh scripts/gpu_decode_profile.sh   (NCU_ONLY=1: step 2 alone)
set -u
. scripts/gpu_setup.sh
M=${MODEL:-scripts/configs/llama3-8b-4bit}
B="target/gpu/oxmx bench --random-weights --model $M"
if [ -z "${NCU_ONLY:-}" ]; then
  echo "== plain"; $B -p 512 -g 128 -n 2 2>&1 | grep -E "Trial|Averages"
  echo "== profiled"; OXMX_GPU_PROFILE=1 $B -p 512 -g 128 -n 2 > "$OUT/profile.txt" 2>&1
  grep -E "Trial|Averages|\[gpu\]" "$OUT/profile.txt" | head -50
fi
OXMX_GPU_PROFILE=1 $B -p 16 -g 8 -n 1 > "$OUT/short.txt" 2>&1
N=$(sed -n 's/.*kernel launches after it \([0-9]*\).*/\1/p' "$OUT/short.txt" | tail -1)
# ~one step and a half (a step is ~495 kernels for Llama-3-8B with fused projections): ncu
# replays each profiled kernel, ~0.2 s apiece.
SKIP=$((N - ${WINDOW:-700}))
echo "== ncu: launches $N, skipping $SKIP"
python3 scripts/ncu_kernels.py --warm --skip "$SKIP" --count 4000 --raw "$OUT/decode_kernels.json" -- $B -p 16 -g 8 -n 1 2>"$OUT/ncu_err.txt" > "$OUT/ncu_table.txt"
python3 scripts/decode_step_kernels.py "$OUT/decode_kernels.json" | head -30
