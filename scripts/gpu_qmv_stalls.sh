#!/bin/sh
# On a GPU machine: why a 4-bit mat-vec kernel runs under the memory's rate. Nsight Compute's
# memory, warp-state and occupancy sections for one launch of the float kernel (OXMX_QMV4=0)
# and of qmv4 at one shape, and DRAM-cold times of the dense bf16 mat-vec and of qmv4's row
# splits (OXMX_QMV4_W) for comparison. Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
set -u
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
[ -x target/gpu/oxmx-bench ] || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
SH=${SHAPE:-14336x4096}
for r in gpu_matvec_$SH gpu_matvec_4096x4096; do
  echo "== $r"
  python3 scripts/ncu_kernels.py --skip 2 --count 6 -- target/gpu/oxmx-bench "$r" 2>>"$OUT/ncu_err.txt" | tail -n +2
done
echo "== gpu_qmv_$SH by OXMX_QMV4_W"
for w in 1 2 4 8; do
  OXMX_QMV4_W=$w python3 scripts/ncu_kernels.py --skip 2 --count 6 -- target/gpu/oxmx-bench "gpu_qmv_$SH" 2>>"$OUT/ncu_err.txt" | grep "^qmv"
done
for q in 0 1; do
  OXMX_QMV4=$q ncu --clock-control none -k regex:qmv --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats \
    --section Occupancy --section LaunchStats --section SchedulerStats \
    target/gpu/oxmx-bench "gpu_qmv_$SH" > "$OUT/ncu_sections_qmv4_$q.txt" 2>&1
  echo "== sections OXMX_QMV4=$q"
  grep -E "Duration|Memory Throughput|DRAM Throughput|L2 Hit|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issued Warp|No Eligible|Active Warps Per|Mem Busy|Max Bandwidth|L1/TEX Hit|Theoretical Occ|Block Limit" "$OUT/ncu_sections_qmv4_$q.txt" | sed 's/  */ /g' | head -40
done
