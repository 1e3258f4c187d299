#!/bin/sh
# On a GPU machine: the GPU test suites (cuda, cuda_llm, fused) from target/gpuc/bins.tar.xz,
# each with the environment settings given as arguments too (e.g. OXMX_GRAPH_REPLAY=0), logs
# in $OUT.
#
#   sh scripts/gpu_tests.sh [VAR=value ...]
set -u
. scripts/gpu_setup.sh
sfx=$(printf "%s" "$*" | tr -c 'A-Za-z0-9_' '_')
for t in cuda cuda_llm fused; do
  [ -x "target/gpu/$t" ] || continue
  timeout 240 env "$@" "target/gpu/$t" --test-threads 1 > "$OUT/$t$sfx.txt" 2>&1
  echo "$t $*: exit $?; $(grep -E "test result" "$OUT/$t$sfx.txt" | tail -1)"
  grep -E "panicked|FAILED" "$OUT/$t$sfx.txt" | head -6
done
