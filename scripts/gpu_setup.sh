# Sourced by the scripts/gpu_*.sh runners on a GPU machine: the log folder $OUT (default
# gpu-report), the binaries unpacked from target/gpuc/bins.tar.xz into target/gpu once, and the
# CUDA toolkit's libraries (NVRTC, cuBLAS) on LD_LIBRARY_PATH.
OUT=${OUT:-gpu-report}
mkdir -p "$OUT" target/gpu
{ [ -x target/gpu/oxmx-bench ] && [ -x target/gpu/oxmx ]; } || tar -C target/gpu -xJf target/gpuc/bins.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
