#!/usr/bin/env bash
# The whole test suite (README's test command). Tests build with optimisation (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt >/dev/null 2>&1 || echo "note: could not install Python oracles; tests that need them skip"
cargo test --workspace 2>&1
