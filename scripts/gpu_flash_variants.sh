#!/bin/sh
# On a GPU machine: variants of the Hopper flash-attention kernel source (each a folder under
# target/gpuc/v2/ holding a flash_sm90.cu, read through OXMX_CUDA_KERNELS_DIR: no rebuild), each
# checked by the cuda_llm attention test and timed on the causal 1x32x4096x128 row, beside the
# built-in kernel and the mma.sync one; then Nsight Compute's sections for NCU_VARIANTS
# ("base", "mma_sync" or a folder name). Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
#
# PEER_VARIANT names the variant timed beside PyTorch (bench_gpu.py), NCU_STALLS those whose
# stall reasons and pipe use are listed.
#
#   PEER_VARIANT=v3 NCU_STALLS=v3 NCU_VARIANTS="base" sh scripts/gpu_flash_variants.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
setting() {  # the environment of variant $1
  case $1 in
    base) echo OXMX_FLASH_SM90=1 ;;
    mma_sync) echo OXMX_FLASH_SM90=0 ;;
    *) echo OXMX_CUDA_KERNELS_DIR=$PWD/target/gpuc/v2/$1 ;;
  esac
}
for v in base $(ls target/gpuc/v2/ 2>/dev/null); do
  env $(setting "$v") timeout ${TEST_TIMEOUT:-120} target/gpu/cuda_llm --test-threads 1 attention > "$OUT/attn_$v.txt" 2>&1
  echo "attention [$v]: exit $?; $(grep -E "test result" "$OUT/attn_$v.txt" | tail -1)"
  grep -E "panicked|mismatch" "$OUT/attn_$v.txt" | head -3
done
for round in 1 2; do
  for v in base mma_sync $(ls target/gpuc/v2/ 2>/dev/null); do
    printf "%s: " "$v"
    env $(setting "$v") timeout 60 target/gpu/oxmx-bench gpu_sdpa_causal 2>&1 | grep -o '"ms":[0-9.]*'
  done
done
if [ -n "${PEER_VARIANT-}" ]; then
  env $(setting "$PEER_VARIANT") python3 scripts/bench_gpu.py target/gpu/oxmx-bench sdpa_causal > "$OUT/bench_sdpa.txt" 2>&1
  echo "PyTorch, same call ($PEER_VARIANT):"; tail -3 "$OUT/bench_sdpa.txt"
fi
for v in ${NCU_STALLS-}; do
  env $(setting "$v") ncu --clock-control none -k regex:flash --launch-skip 3 --launch-count 1 \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active,regex:sm__pipe_.*_cycles_active\.avg\.pct_of_peak_sustained_active" \
    target/gpu/oxmx-bench gpu_sdpa_causal > "$OUT/ncu_stalls_$v.txt" 2>&1
  echo "== stalls and pipes, $v"
  grep -E "stalled|pipe" "$OUT/ncu_stalls_$v.txt" | awk '$NF+0 > 0.05' | sed 's/  */ /g' | head -40
done
for v in ${NCU_VARIANTS-}; do
  env $(setting "$v") ncu --clock-control none -k regex:flash --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section Occupancy --section SchedulerStats \
    target/gpu/oxmx-bench gpu_sdpa_causal > "$OUT/ncu_$v.txt" 2>&1
  echo "== ncu $v"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Executed Ipc A|Issue Slots Busy|Bank|bank|Stall|stall|Achieved Occupancy|No Eligible|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit|Registers" "$OUT/ncu_$v.txt" | head -40
done
