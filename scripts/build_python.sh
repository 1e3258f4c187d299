#!/usr/bin/env bash
# Builds the `oxmx` Python package's extension (crates/oxmx-py) with cargo and puts it at
# python/oxmx/_core.so, so that `PYTHONPATH=python python3 -c "import oxmx.core"` works from the
# repository without installing anything. The profile (default: test) is the one
# `cargo test --workspace` builds, so oxmx-core is not compiled again.
# `scripts/setup.sh` installs the package for real (maturin wheel + pip).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-test}"
cargo build --profile "$PROFILE" -p oxmx-py >&2
TARGET="${CARGO_TARGET_DIR:-target}"
case "$PROFILE" in test|dev) DIR=debug ;; *) DIR="$PROFILE" ;; esac
SO="$TARGET/$DIR/liboxmx_py.so"
[ -f "$SO" ] || { echo "build_python: $SO is missing after the build" >&2; exit 1; }
cp -f "$SO" python/oxmx/_core.so.part
mv -f python/oxmx/_core.so.part python/oxmx/_core.so
echo "build_python: python/oxmx/_core.so ($PROFILE profile)" >&2
