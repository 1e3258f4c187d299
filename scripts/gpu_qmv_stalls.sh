#!/bin/sh
# On a GPU machine: why the 4-bit mat-vec runs under the memory's rate. DRAM-cold times
# (Nsight Compute) of the dense bf16 mat-vec at the same shape for comparison, then Nsight
# Compute's memory, warp-state, scheduler and occupancy sections for one launch of the 4-bit
# kernel. Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
#
#   SHAPE=14336x4096 sh scripts/gpu_qmv_stalls.sh
set -u
. scripts/gpu_setup.sh
SH=${SHAPE:-14336x4096}
for r in gpu_matvec_$SH gpu_qmv_$SH; do
  echo "== $r"
  python3 scripts/ncu_kernels.py --skip 2 --count 6 -- target/gpu/oxmx-bench "$r" 2>>"$OUT/ncu_err.txt" | tail -n +2
done
ncu --clock-control none -k regex:qmv --launch-skip 2 --launch-count 1 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats \
  --section Occupancy --section LaunchStats --section SchedulerStats \
  target/gpu/oxmx-bench "gpu_qmv_$SH" > "$OUT/ncu_sections_qmv.txt" 2>&1
grep -E "Duration|DRAM Throughput|L2 Hit|L1/TEX Hit|Mem Busy|Registers Per|Issued Warp|No Eligible|Eligible Warps|Warp Cycles Per Issued|Achieved Active|Theoretical Occ" \
  "$OUT/ncu_sections_qmv.txt" | sed 's/  */ /g' | head -30
