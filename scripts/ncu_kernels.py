#!/usr/bin/env python3
"""Kernel-level GPU times of any program, through Nsight Compute: one row per kernel name with
the median duration, the DRAM bytes it moved and the rate that makes.

Why: the harness times an evaluation from the host (`oxmx-bench` queues N of them and waits
once), which for kernels of a few microseconds measures the host's dispatch, not the kernel.
Nsight Compute flushes the caches before each profiled kernel (its default cache control), so
these are DRAM-cold times: the honest number for "fraction of copy bandwidth".

    python3 scripts/ncu_kernels.py [--match REGEX] [--skip N] [--count N] -- program args...

Needs `ncu` on the PATH (the device machine has it; give it no clock control, as the device
notes ask). Prints a table; `--json FILE` also writes the rows, `--raw FILE` every kernel in
launch order (to split a run into phases, e.g. one decoding step: `oxmx bench` prints its kernel
launch counts under `OXMX_GPU_PROFILE=1`). `--warm` keeps the caches as the program left them
(`--cache-control none`): the time a kernel takes inside a real run, where small inputs are
still in L2.
"""
import argparse
import csv
import io
import json
import re
import statistics
import subprocess
import sys

METRICS = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum",
           "sm__throughput.avg.pct_of_peak_sustained_elapsed", "dram__throughput.avg.pct_of_peak_sustained_elapsed"]
# ncu prints base units with --print-units base; the short forms are there in case a version
# names them so.
SCALE = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--match", default=None, help="regex on kernel names to profile")
    ap.add_argument("--skip", type=int, default=0, help="kernels to let pass before profiling")
    ap.add_argument("--count", type=int, default=200, help="kernels to profile at most")
    ap.add_argument("--json", default=None)
    ap.add_argument("--raw", default=None, help="write every profiled kernel, in launch order, as JSON")
    ap.add_argument("--warm", action="store_true", help="no cache flush before each kernel")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    ncu = ["ncu", "--clock-control", "none", "--csv", "--print-units", "base", "--metrics", ",".join(METRICS),
           "--launch-skip", str(a.skip), "--launch-count", str(a.count)]
    if a.warm:
        ncu += ["--cache-control", "none"]
    if a.match:
        ncu += ["-k", f"regex:{a.match}"]
    p = subprocess.run(ncu + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
    # The CSV starts at its header line; the program's own output and ncu's notes come before.
    text = p.stdout
    start = text.find('"ID","Process ID"')
    if start < 0:
        sys.stderr.write("no profile in ncu's output:\n" + text[-3000:] + p.stderr[-2000:])
        return 1
    per = {}  # (kernel id) -> {name, metric: value}
    for row in csv.DictReader(io.StringIO(text[start:])):
        k = per.setdefault(row["ID"], {"name": row["Kernel Name"]})
        unit = row["Metric Unit"]
        try:
            v = float(row["Metric Value"].replace(",", ""))
        except ValueError:
            continue
        if unit not in SCALE and unit != "%":
            sys.stderr.write(f"unknown unit {unit!r} of {row['Metric Name']}\n")
        k[row["Metric Name"]] = v * SCALE.get(unit, 1.0)
    if a.raw:
        order = sorted(per, key=lambda i: int(i))
        with open(a.raw, "w") as f:
            json.dump([{"id": int(i), "kernel": per[i]["name"], "us": per[i].get(METRICS[0], 0.0) * 1e6,
                        "dram_mb": (per[i].get(METRICS[1], 0.0) + per[i].get(METRICS[2], 0.0)) / 1e6} for i in order], f)
    by_name = {}
    for k in per.values():
        by_name.setdefault(k["name"], []).append(k)
    rows = []
    for name, ks in by_name.items():
        t = statistics.median(k.get(METRICS[0], 0.0) for k in ks)
        rd = statistics.median(k.get(METRICS[1], 0.0) for k in ks)
        wr = statistics.median(k.get(METRICS[2], 0.0) for k in ks)
        sm = statistics.median(k.get(METRICS[3], 0.0) for k in ks)
        dram = statistics.median(k.get(METRICS[4], 0.0) for k in ks)
        rows.append({"kernel": re.sub(r"\(.*", "", name), "calls": len(ks), "us": t * 1e6,
                     "total_us": sum(k.get(METRICS[0], 0.0) for k in ks) * 1e6,
                     "dram_mb": (rd + wr) / 1e6, "gbps": (rd + wr) / t / 1e9 if t > 0 else 0.0,
                     "sm_pct": sm, "dram_pct": dram})
    rows.sort(key=lambda r: -r["total_us"])
    print(f"{'kernel':<56} {'calls':>5} {'median us':>10} {'total us':>10} {'DRAM MB':>9} {'GB/s':>7} {'SM %':>5} {'DRAM %':>6}")
    for r in rows:
        print(f"{r['kernel'][:56]:<56} {r['calls']:>5} {r['us']:>10.2f} {r['total_us']:>10.1f} {r['dram_mb']:>9.2f}"
              f" {r['gbps']:>7.0f} {r['sm_pct']:>5.0f} {r['dram_pct']:>6.0f}")
    print(f"{'all':<56} {sum(r['calls'] for r in rows):>5} {'':>10} {sum(r['total_us'] for r in rows):>10.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
