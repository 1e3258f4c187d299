#!/bin/sh
# On a GPU machine: the Hopper flash-attention kernel with its K and V tiles copied by TMA
# (OXMX_FLASH_TMA=1, the default) against the same kernel's cp.async producer (OXMX_FLASH_TMA=0),
# one binary: the cuda_llm attention test both ways (each with its own kernel cache, whose PTX
# files name the flash kernels that ran), then the causal 1x32x4096x128 bf16 row alternately by
# TMA, by cp.async and by PyTorch's SDPA (bench_gpu.py's CUDA-event timing) for ROUNDS rounds
# (default 3), and Nsight Compute's kernel time of each producer. Binaries from
# target/gpuc/bins.tar.xz; logs under $OUT.
#
#   sh scripts/gpu_flash_tma.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for v in 1 0; do
  export OXMX_CACHE_DIR="$OUT/cache_tma$v"
  OXMX_FLASH_TMA=$v timeout ${TEST_TIMEOUT:-120} target/gpu/cuda_llm --test-threads 1 attention > "$OUT/attn_tma$v.txt" 2>&1
  echo "attention [OXMX_FLASH_TMA=$v]: exit $?; $(grep -E "test result" "$OUT/attn_tma$v.txt" | tail -1)"
  grep -E "panicked|mismatch" "$OUT/attn_tma$v.txt" | head -3
  echo "  flash kernels compiled: $(ls "$OXMX_CACHE_DIR/cuda" 2>/dev/null | grep -o '^flash_sm90[a-z_]*' | sort | uniq -c | tr -s ' \n' ' ')"
done
torch_sdpa() {
  python3 - <<'EOF'
import sys
sys.path.insert(0, "scripts")
import torch
from bench_gpu import cuda_ms
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = ((torch.rand(1, 32, 4096, 128, device="cuda", generator=g) * 2 - 1).to(torch.bfloat16) for _ in range(3))
print(f'"ms":{cuda_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), 20):.4f}')
EOF
}
for round in $(seq ${ROUNDS:-3}); do
  for v in 1 0; do
    printf "round %s, OXMX_FLASH_TMA=%s: " "$round" "$v"
    OXMX_CACHE_DIR="$OUT/cache_tma$v" OXMX_FLASH_TMA=$v timeout 60 target/gpu/oxmx-bench gpu_sdpa_causal 2>&1 | grep -o '"ms":[0-9.]*'
  done
  printf "round %s, PyTorch SDPA: " "$round"
  torch_sdpa 2>&1 | tail -1
done
if command -v ncu > /dev/null; then
  for v in 1 0; do
    echo "== ncu, OXMX_FLASH_TMA=$v"
    OXMX_CACHE_DIR="$OUT/cache_tma$v" OXMX_FLASH_TMA=$v ncu --clock-control none -k regex:flash --launch-skip 3 --launch-count 1 \
      --metrics gpu__time_duration.sum target/gpu/oxmx-bench gpu_sdpa_causal > "$OUT/ncu_tma$v.txt" 2>&1
    grep -E "flash_sm90|gpu__time_duration" "$OUT/ncu_tma$v.txt" | sed 's/  */ /g' | head -4
  done
fi
