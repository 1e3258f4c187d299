#!/bin/sh
# On a GPU machine: the harness's GPU table against PyTorch (scripts/bench_gpu.py) and the
# kernel-level DRAM-cold times of the mat-vec, element-wise and softmax rows through Nsight
# Compute (scripts/ncu_kernels.py). Writes everything under $OUT (or ./gpu-report).
#
#   sh scripts/gpu_kernel_report.sh path/to/oxmx-bench [bench_gpu filter]
set -u
BENCH=$1
FILTER=${2:-}
OUT=${OUT:-gpu-report}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
python3 scripts/bench_gpu.py "$BENCH" $FILTER > "$OUT/bench_gpu.txt" 2>&1
tail -40 "$OUT/bench_gpu.txt"
SHAPES="6144x4096 4096x4096 14336x4096 4096x14336"
ROWS=""
for sh in $SHAPES; do ROWS="$ROWS gpu_qmv_$sh gpu_matvec_$sh"; done
# oxmx-bench's filter matches a row's key: gpu_* rows by name, the others by group (add, exp, ...).
for r in $ROWS add mul_scalar exp tanh sum softmax fast_rms_norm; do
  echo "== $r"
  python3 scripts/ncu_kernels.py --skip 2 --count 10 --json "$OUT/ncu_$r.json" -- "$BENCH" "$r" 2>>"$OUT/ncu_err.txt" | tail -n +2
done
