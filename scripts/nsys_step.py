#!/usr/bin/env python3
"""A decoding step's kernels as they really ran, from an Nsight Systems trace exported to SQLite
(scripts/gpu_decode_nsys.sh makes it, with CUDA graph nodes traced one by one).

Why beside ncu_kernels.py: Nsight Compute replays each kernel alone, so it cannot show what
programmatic dependent launch overlaps or where the GPU idles between dependent kernels. Here
every kernel keeps its real start and end: a step is the span between the ends of two LM-head
mat-vecs (the longest kernel of a step), and the table sums, per kernel name and grid, the time
its launches ran, and how much of the step no kernel was running.

    python3 scripts/nsys_step.py trace.sqlite [--steps N]
"""
import argparse
import collections
import sqlite3
import statistics


def kernels(db):
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")]
    name_col = "shortName" if "shortName" in cols else "demangledName"
    q = f"SELECT k.start, k.end, s.value, k.gridX, k.gridY FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.{name_col} ORDER BY k.start"
    return [(a, b, n, gx, gy) for a, b, n, gx, gy in con.execute(q)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--steps", type=int, default=32, help="the last N whole steps")
    a = ap.parse_args()
    ks = kernels(a.db)
    if not ks:
        raise SystemExit("no kernels in the trace")
    longest = max(b - s for s, b, *_ in ks)
    heads = [i for i, (s, b, *_) in enumerate(ks) if b - s > 0.6 * longest]
    # Prefill's kernels are long too: keep the regular tail of heads (decode steps).
    if len(heads) < 3:
        raise SystemExit(f"only {len(heads)} LM-head launches among {len(ks)} kernels")
    heads = heads[-(a.steps + 1):]
    steps = len(heads) - 1
    spans, busy_all, counts = [], [], []
    by = collections.defaultdict(lambda: [0, 0.0])
    for h0, h1 in zip(heads, heads[1:]):
        t0, t1 = ks[h0][1], ks[h1][1]
        step = ks[h0 + 1:h1 + 1]
        spans.append(t1 - t0)
        counts.append(len(step))
        # Busy time: the union of the kernels' intervals inside the step.
        busy, cur_s, cur_e = 0, None, None
        for s, e, n, gx, gy in step:
            s = max(s, t0)
            e = min(e, t1)
            by[(n[:48], gx * gy)][0] += 1
            by[(n[:48], gx * gy)][1] += e - s
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    busy += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            busy += cur_e - cur_s
        busy_all.append(busy)
    span = statistics.median(spans) / 1e3
    print(f"{steps} steps: median {span:.1f} us a step ({1e6 / span:.1f} tok/s), {statistics.median(counts)} kernels, "
          f"GPU busy {statistics.median(busy_all) / 1e3:.1f} us (idle {span - statistics.median(busy_all) / 1e3:.1f} us)")
    total = sum(t for _, t in by.values())
    print(f"{'kernel':<48} {'blocks':>7} {'calls/step':>10} {'us/step':>8} {'us/call':>8} {'share':>6}")
    for (n, blocks), (c, t) in sorted(by.items(), key=lambda x: -x[1][1])[:40]:
        print(f"{n:<48} {blocks:>7} {c / steps:>10.1f} {t / steps / 1e3:>8.1f} {t / c / 1e3:>8.2f} {t / total:>6.1%}")
    print("(kernel times overlap under programmatic dependent launch: the column sums can exceed the step)")


if __name__ == "__main__":
    main()
