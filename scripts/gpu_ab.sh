#!/bin/sh
# On a GPU machine: a runtime switch tried both ways. The GPU test suites with the switch on
# (SUITES, default "cuda cuda_llm fused"; TESTS filters them), then Llama-3-8B-shaped decoding
# (MODEL, default 4-bit) alternating VAR=ON and VAR=OFF for ROUNDS rounds, same process
# settings otherwise. Binaries from target/gpuc/bins.tar.xz; logs under $OUT.
#
#   VAR=OXMX_PDL ON=1 OFF=0 sh scripts/gpu_ab.sh
set -u
. scripts/gpu_setup.sh
: "${VAR:?name the switch: VAR=OXMX_...}"
ON=${ON:-1}
OFF=${OFF:-0}
for t in ${SUITES-cuda cuda_llm fused}; do
  [ -x target/gpu/$t ] || continue
  env "$VAR=$ON" timeout ${TEST_TIMEOUT:-200} target/gpu/$t --test-threads 1 ${TESTS:-} > "$OUT/$t.txt" 2>&1
  echo "$t ($VAR=$ON): exit $?; $(grep -E "test result" "$OUT/$t.txt" | tail -1)"
  grep -E "FAILED|panicked" "$OUT/$t.txt" | head -6
done
for round in $(seq ${ROUNDS:-2}); do
  for v in "$ON" "$OFF"; do
    printf "decode, %s=%s: " "$VAR" "$v"
    env "$VAR=$v" target/gpu/oxmx bench --random-weights --model ${MODEL:-scripts/configs/llama3-8b-4bit} -p ${PROMPT:-512} -g 128 -n 2 2>&1 | grep -E "Averages"
  done
done
