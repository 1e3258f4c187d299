#!/bin/sh
# On a GPU machine: Llama-3-8B-shaped prefill (and decode) of `oxmx bench` (random weights, bf16
# and 4-bit g64, -p 512 -g 128) against PyTorch/transformers on the same GPU
# (scripts/torch_llama_prefill.py: bf16, SDPA, logits for the last position only), for issue 6
# ("prefill of 512 tokens at least PyTorch's"). oxmx's binaries come from target/gpuc/bins.tar.xz
# (scripts/gpu_setup.sh). Each step has a timeout and the whole run keeps inside BUDGET seconds
# (default 520); logs under $OUT.
#
#   sh scripts/gpu_prefill_vs_torch.sh
set -u
start=$(date +%s)
. scripts/gpu_setup.sh
BUDGET=${BUDGET:-520}
# limit CAP: CAP seconds, or what is left of the budget less a margin (0: skip the step).
limit() {
  left=$((BUDGET - ($(date +%s) - start) - 10))
  if [ "$left" -lt 20 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

ours() { # ours NAME MODEL P G CAP
  t=$(limit "$5")
  if [ "$t" -eq 0 ]; then echo "$1: skipped (out of time)"; return; fi
  t0=$(date +%s)
  timeout "$t" target/gpu/oxmx bench --random-weights --model "scripts/configs/$2" -p "$3" -g "$4" -n 2 > "$OUT/$1.txt" 2>&1
  rc=$?
  echo "$1 (-p $3 -g $4): exit $rc, $(($(date +%s) - t0)) s; $(grep -E "Averages" "$OUT/$1.txt")"
  grep -E "^Trial" "$OUT/$1.txt"
}

ours oxmx_bf16_p512 llama3-8b-bf16 512 128 120
t=$(limit 200)
if [ "$t" -gt 0 ]; then
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 timeout "$t" python3 scripts/torch_llama_prefill.py --prompt 512,2048 --runs 10 --warmup 3 \
    --decode 128 --decode-prompt 512 --full-logits > "$OUT/torch.jsonl" 2> "$OUT/torch.err"
  echo "torch: exit $?, $(($(date +%s) - t0)) s"
  cat "$OUT/torch.jsonl"
  grep -E "Error|Traceback" "$OUT/torch.err" | head -5
fi
ours oxmx_4bit_p512 llama3-8b-4bit 512 128 120
ours oxmx_bf16_p2048 llama3-8b-bf16 2048 8 80
echo "total $(($(date +%s) - start)) s"
