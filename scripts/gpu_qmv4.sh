#!/bin/sh
# On a GPU machine, one call for the 4-bit mat-vec kernels: the quantized GPU test with the
# tensor-core kernel (qmv4s, the default) on, DRAM-cold kernel times (Nsight Compute) at the
# Llama-3-8B shapes for each setting in CFGS (environment assignments; the defaults compare
# the float kernel, OXMX_QMV4=0, the register ring, OXMX_QMV4_STAGED=0, and row splits), then
# Llama-3-8B-shaped 4-bit decoding with the float kernel and the default.
# Binaries from target/gpuc/bins.tar.xz (oxmx-bench, oxmx, cuda_llm). Logs under $OUT.
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
[ -x target/gpu/oxmx-bench ] || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 240 target/gpu/cuda_llm --test-threads 1 quantized > "$OUT/cuda_llm.txt" 2>&1; echo "cuda_llm quantized: exit $?"
  grep -E "test result|FAILED|panicked" "$OUT/cuda_llm.txt" | head -8
fi
for sh in ${SHAPES:-4096x4096 14336x4096 4096x14336 6144x4096}; do
  echo "== gpu_qmv_$sh (us, GB/s, SM %, DRAM %)"
  for cfg in ${CFGS:-OXMX_QMV4=0 OXMX_QMV4_STAGED=0 DEFAULT=1 OXMX_QMV4_W=1 OXMX_QMV4_W=2 OXMX_QMV4_W=4}; do
    env "$cfg" python3 scripts/ncu_kernels.py --skip 2 --count 6 -- target/gpu/oxmx-bench "gpu_qmv_$sh" 2>>"$OUT/ncu_err.txt" \
      | grep -E "^qmv" | awk -v c="$cfg" '{printf "  %-20s %-30s %8s us %6s GB/s %4s %4s\n", c, $1, $3, $5, $6, $7}'
  done
done
if [ -z "${SKIP_DECODE:-}" ]; then
  for q in 0 1; do
    echo "== llama3-8b-4bit decode, OXMX_QMV4=$q"
    OXMX_QMV4=$q timeout 200 target/gpu/oxmx bench --random-weights --model scripts/configs/llama3-8b-4bit -p 512 -g 128 -n 2 \
      > "$OUT/decode_qmv4_$q.txt" 2>&1; echo "exit $?"
    tail -4 "$OUT/decode_qmv4_$q.txt"
  done
fi
if [ -n "${BENCH:-}" ]; then
  echo "== harness rows against PyTorch (bench_gpu.py, filter $BENCH)"
  python3 scripts/bench_gpu.py target/gpu/oxmx-bench "$BENCH" > "$OUT/bench_gpu.txt" 2>&1
  grep -E "device:|gpu_qmv|gpu_matvec" "$OUT/bench_gpu.txt"
fi
