#!/bin/sh
# On a GPU machine: the decoding attention kernels, lane-per-key (default) against warp-per-key
# (OXMX_SDPA_KEYS=0): cuda_llm's attention test, Nsight Compute times of the
# `gpu_sdpa_decode_*` rows (DRAM-cold, per kernel) with each kernel, and Llama-3-8B-shaped 4-bit
# decoding alternating the two (ROUNDS rounds). Binaries from target/gpuc/bins.tar.xz; logs
# under $OUT.
set -u
. scripts/gpu_setup.sh
for keys in 1 0; do
  echo "== OXMX_SDPA_KEYS=$keys"
  OXMX_SDPA_KEYS=$keys timeout 120 target/gpu/cuda_llm --test-threads 1 attention 2>&1 | grep -E "test result|panicked|assert" | head -8
  for kl in 640 4096 32768; do
    OXMX_SDPA_KEYS=$keys python3 scripts/ncu_kernels.py --match sdpa --skip 4 --count 6 -- target/gpu/oxmx-bench "gpu_sdpa_decode_gqa32x8_k${kl}_d128_bf16" 2>>"$OUT/ncu_err.txt" | tail -n +2 | grep -v "^all" | sed "s/^/k$kl /"
  done
done
# Fused q/k/v with one RoPE launch for q and k: the fused model's logits against the separate
# products', on the GPU.
[ -x target/gpu/fused ] && timeout 60 target/gpu/fused 2>&1 | grep -E "test result|panicked" | head -3
for round in $(seq ${ROUNDS:-2}); do
  for keys in 1 0; do
    printf "decode, OXMX_SDPA_KEYS=%s: " $keys
    OXMX_SDPA_KEYS=$keys target/gpu/oxmx bench --random-weights --model ${MODEL:-scripts/configs/llama3-8b-4bit} -p 512 -g 128 -n 2 2>&1 | grep -E "Averages"
  done
done
