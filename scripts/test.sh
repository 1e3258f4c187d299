#!/usr/bin/env bash
# The whole test suite (README's test command). Tests build with optimisation (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt >/dev/null 2>&1 || echo "note: could not install Python oracles; tests that need them skip"
# mlx_lm (the oxmx.lm oracle) without its dependency pins, and transformers for its tokenizers: a
# failure here only skips those comparisons.
python3 -m pip install --quiet --disable-pip-version-check --no-deps "mlx-lm==0.32.2" >/dev/null 2>&1 \
    && python3 -m pip install --quiet --disable-pip-version-check transformers >/dev/null 2>&1 \
    || echo "note: could not install mlx-lm/transformers; the oxmx.lm comparisons with mlx_lm skip"
# Open MPI for the distributed tests (2 and 4 ranks on this machine); they skip without it.
scripts/install_mpi.sh
cargo test --workspace 2>&1
# On AVX-512 hosts `cargo test` ran the AVX-512 kernels; run the suites of the AVX2 ones (attention,
# sgemm, the quantized mat-vecs, element-wise loops) once more capped to AVX2. Elsewhere a repeat.
# `--workspace` keeps the features of the build above, so nothing is compiled again.
OXMX_SIMD=avx2 cargo test --workspace --test fast --test sgemm --test quantized 2>&1
# The Python package (crates/oxmx-py + python/oxmx): the extension is built against the libraries
# `cargo test` just built (only oxmx-py compiles), and python/tests checks it against NumPy and
# the mlx package (tests that need mlx skip when it is not importable; pytest itself is required).
python3 -m pip install --quiet --disable-pip-version-check pytest numpy >/dev/null 2>&1 || true
python3 -c "import pytest, numpy" || { echo "error: the Python tests need pytest and numpy (pip install pytest numpy)" >&2; exit 1; }
scripts/build_python.sh 2>&1
PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -q -p no:cacheprovider python/tests 2>&1
