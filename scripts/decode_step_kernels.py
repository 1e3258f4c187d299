#!/usr/bin/env python3
"""One decoding step's GPU kernels, from `ncu_kernels.py --raw` output over the end of a run
(scripts/gpu_decode_profile.sh writes it): the step is the span between the last two launches
of the kernel that moves the most bytes (the LM head's mat-vec), and the table sums each
kernel name's time in it, largest first.

    python3 scripts/decode_step_kernels.py decode_kernels.json
"""
import collections
import json
import re
import sys


def main():
    ks = json.load(open(sys.argv[1]))
    big = max(k["dram_mb"] for k in ks)
    heads = [i for i, k in enumerate(ks) if k["dram_mb"] > 0.8 * big]
    if len(heads) < 2:
        sys.exit(f"fewer than two LM-head launches among {len(ks)} kernels: profile a longer window")
    step = ks[heads[-2] + 1:heads[-1] + 1]
    total = sum(k["us"] for k in step)
    print(f"one step: {len(step)} kernels, {total:.1f} us of GPU time, {sum(k['dram_mb'] for k in step):.0f} MB from DRAM")
    by = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for k in step:
        e = by[re.sub(r"\(.*", "", k["kernel"])[:64]]
        e[0] += 1
        e[1] += k["us"]
        e[2] += k["dram_mb"]
    print(f"{'kernel':<64} {'calls':>5} {'us':>9} {'share':>6} {'MB':>8} {'TB/s':>6}")
    for name, (n, t, mb) in sorted(by.items(), key=lambda x: -x[1][1]):
        print(f"{name:<64} {n:>5} {t:>9.1f} {t / total:>6.1%} {mb:>8.1f} {mb / t if t else 0:>6.2f}")


if __name__ == "__main__":
    main()
