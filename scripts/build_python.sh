#!/usr/bin/env bash
# Builds the `oxmx` Python package's extension (crates/oxmx-py) with cargo and puts it at
# python/oxmx/_core.so, so that `PYTHONPATH=python python3 -c "import oxmx.core"` works from the
# repository without installing anything. `scripts/setup.sh` installs the package for real
# (maturin wheel + pip).
#
# It builds every workspace library with the dev profile: the same units, features and profile
# that `cargo test --workspace` builds its test binaries against, so after the tests this only
# compiles and links oxmx-py (a `-p oxmx-py` or `--profile test` build would select a different
# feature set or profile and compile oxmx-core once more). `scripts/build_python.sh release`
# builds an optimised extension instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-dev}"
if [ "$PROFILE" = dev ]; then
    cargo build --workspace --lib >&2
    DIR=debug
else
    cargo build --profile "$PROFILE" -p oxmx-py >&2
    DIR="$PROFILE"
fi
TARGET="${CARGO_TARGET_DIR:-target}"
SO="$TARGET/$DIR/liboxmx_py.so"
[ -f "$SO" ] || { echo "build_python: $SO is missing after the build" >&2; exit 1; }
cp -f "$SO" python/oxmx/_core.so.part
# The dev profile carries debug info (hundreds of MB); Python does not need it.
strip --strip-debug python/oxmx/_core.so.part 2>/dev/null || true
mv -f python/oxmx/_core.so.part python/oxmx/_core.so
echo "build_python: python/oxmx/_core.so ($PROFILE profile)" >&2
