#!/bin/sh
# On a GPU machine: a Llama-3-8B-shaped decode's kernels as they really ran, overlaps and idle
# gaps included (Nsight Systems with CUDA graph nodes traced one by one; ncu replays kernels
# alone and cannot show either). Per step: span, busy time, and each kernel's time
# (scripts/nsys_step.py). Skips when the machine has no nsys.
#
#   MODEL=scripts/configs/llama3-8b-4bit sh scripts/gpu_decode_nsys.sh
set -u
. scripts/gpu_setup.sh
NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/*/bin/nsys /usr/local/cuda*/nsight-systems*/bin/nsys 2>/dev/null | head -1)
[ -n "$NSYS" ] || { echo "nsys: not on this machine, skipped"; exit 0; }
M=${MODEL:-scripts/configs/llama3-8b-4bit}
tag=$(basename "$M")
"$NSYS" profile --cuda-graph-trace=node -t cuda -o "/tmp/dec_$tag" --force-overwrite true \
  target/gpu/oxmx bench --random-weights --model "$M" -p 16 -g 64 -n 1 > "$OUT/nsys_$tag.log" 2>&1 || tail -5 "$OUT/nsys_$tag.log"
"$NSYS" export --type sqlite -o "/tmp/dec_$tag.sqlite" --force-overwrite true "/tmp/dec_$tag.nsys-rep" > /dev/null 2>&1
python3 scripts/nsys_step.py "/tmp/dec_$tag.sqlite" --steps 32 | tee "$OUT/nsys_step_$tag.txt"
