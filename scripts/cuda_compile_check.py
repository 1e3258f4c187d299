#!/usr/bin/env python3
"""Compiles a kernel family of crates/oxmx-core/src/backend/cuda/kernels with NVRTC for a GPU
architecture, as the backend does at run time, and prints ptxas's resource report (registers,
spills, shared memory) for each instantiation: kernel work without device time.

Needs NVRTC and ptxas from PyPI (no GPU): `pip install nvidia-cuda-nvrtc nvidia-cuda-nvcc`.

    python3 scripts/cuda_compile_check.py quantized.cu 'qmv4_mma<2, 64, 1, 4, 8>(out, x, w, scales, biases, n, k, m)' \\
        --params 'unsigned short* out, const unsigned short* x, const unsigned int* w, const unsigned short* scales, const unsigned short* biases, long long n, long long k, int m'
"""
import argparse
import ctypes
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "oxmx-core", "src", "backend", "cuda", "kernels")


def source(name):
    """A kernel file, from $OXMX_CUDA_KERNELS_DIR when it holds one (as the backend reads it)."""
    d = os.environ.get("OXMX_CUDA_KERNELS_DIR")
    path = os.path.join(d, name) if d and os.path.exists(os.path.join(d, name)) else os.path.join(ROOT, name)
    return open(path).read()


def find(pattern):
    import nvidia
    for base in nvidia.__path__:
        hits = glob.glob(os.path.join(base, "**", pattern), recursive=True)
        if hits:
            return sorted(hits)[-1]
    sys.exit(f"{pattern} not found: pip install nvidia-cuda-nvrtc nvidia-cuda-nvcc")


def nvrtc_ptx(src, arch):
    lib = ctypes.CDLL(find("libnvrtc.so*"))
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None) != 0:
        sys.exit("nvrtcCreateProgram failed")
    opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if log.value.strip():
        print(log.value.decode())
    if rc != 0:
        sys.exit(f"NVRTC failed ({rc})")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    return ptx.value.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("calls", nargs="+", help="instantiation calls, as the Rust side writes them")
    ap.add_argument("--params", required=True, help="the kernel's parameter list")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--sass", default=None, help="also write the SASS (nvdisasm, from triton's wheel or the PATH) to this file")
    ap.add_argument("--min-blocks", type=int, default=0, help="__launch_bounds__(THREADS, N) on each kernel, as the backend builds some")
    ap.add_argument("--threads", type=int, default=256, help="THREADS of --min-blocks")
    a = ap.parse_args()
    common = source("common.cuh")
    fam = source(a.family)
    bounds = f"__launch_bounds__({a.threads}, {a.min_blocks}) " if a.min_blocks else ""
    kernels = "".join(f'extern "C" __global__ void {bounds}k{i}({a.params}) {{ {c}; }}\n' for i, c in enumerate(a.calls))
    ptx = nvrtc_ptx(f"{common}\n{fam}\n{kernels}", a.arch)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "k.ptx")
        open(p, "w").write(ptx)
        r = subprocess.run([find("ptxas"), f"-arch={a.arch}", "-v", p, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
        out = r.stdout + r.stderr
        for i, c in enumerate(a.calls):
            out = out.replace(f"'k{i}'", f"'{c.split('(')[0]}'")
        print(out)
        if a.sass and r.returncode == 0:
            nvdisasm = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "triton", "backends", "nvidia", "bin", "nvdisasm"))
            tool = nvdisasm[0] if nvdisasm else "nvdisasm"
            with open(a.sass, "w") as f:
                subprocess.run([tool, "-c", os.path.join(d, "k.cubin")], stdout=f, check=False)
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
