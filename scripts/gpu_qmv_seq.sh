#!/bin/sh
# On a GPU machine: the mat-vec rows as a decoding step runs them (`gpuseq_*`: 256 products
# back to back over 160 MB of distinct weights, by the GPU's clock; crates/oxmx-bench/src/gpu.rs)
# beside the one-weight rows, against PyTorch, then the 4-bit rows for each qmv1 launch shape
# in SHAPES (OXMX_QMV1_SHAPE=U,E: rows in flight a warp, 8·E warps a SM). Binaries from
# target/gpuc/bins.tar.xz.
#
#   SHAPES="4,3 8,3" sh scripts/gpu_qmv_seq.sh
set -u
. scripts/gpu_setup.sh
nvidia-smi --query-gpu=name --format=csv,noheader
python3 scripts/bench_gpu.py target/gpu/oxmx-bench gpuseq_ 2>&1 | grep -E "device|gpuseq|rror"
python3 scripts/bench_gpu.py target/gpu/oxmx-bench mv_ 2>&1 | grep -E "gpu_"
for sh in ${SHAPES:-}; do
  OXMX_GPU_PROFILE=1 OXMX_QMV1_SHAPE=$sh target/gpu/oxmx-bench gpuseq_qmv 2>/dev/null | python3 -c "
import json, sys
for r in map(json.loads, sys.stdin):
    if r.get('impl') == 'oxmx':
        print('$sh', r['bench'], f\"{r['ms'] * 1e3:.2f} us\", f\"{r['gbps']:.0f} GB/s\")"
done
