#!/usr/bin/env bash
# Runs benchmarks/python/bench.py on oxmx and on MLX and prints the speed ratios (oxmx/mlx > 1:
# oxmx is faster). Extra arguments go to bench.py (--quick, --no-lm, --lm-model FOLDER).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 benchmarks/python/bench.py --compare "$@"
