#!/usr/bin/env bash
# Builds the `oxmx` Python package's extension (crates/oxmx-py) with cargo and puts it at
# python/oxmx/_core.so, so that `PYTHONPATH=python python3 -c "import oxmx.core"` works from the
# repository without installing anything. `scripts/setup.sh` installs the package for real
# (maturin wheel + pip).
#
# By default it builds with the `test` profile and the same target selection as the test
# suite's feature resolution (`--lib --tests`: dev-dependencies active, as under `cargo test`), so
# after `cargo test --workspace` only oxmx-py compiles and links: every other library is the
# test build's own artifact. (A `dev`-profile build compiled the whole stack a second time:
# opt-level 1 with debug info, ~15 min of CI on 2 cores.) `scripts/build_python.sh release`
# builds an optimised extension with the release profile; `dev` builds with the dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-test}"
case "$PROFILE" in
    test) cargo build --profile test --workspace --lib --tests >&2; DIR=debug ;;
    dev) cargo build --workspace --lib >&2; DIR=debug ;;
    *) cargo build --profile "$PROFILE" -p oxmx-py >&2; DIR="$PROFILE" ;;
esac
TARGET="${CARGO_TARGET_DIR:-target}"
SO="$TARGET/$DIR/liboxmx_py.so"
[ -f "$SO" ] || { echo "build_python: $SO is missing after the build" >&2; exit 1; }
cp -f "$SO" python/oxmx/_core.so.part
# A dev build carries debug info (hundreds of MB); Python does not need it.
strip --strip-debug python/oxmx/_core.so.part 2>/dev/null || true
mv -f python/oxmx/_core.so.part python/oxmx/_core.so
echo "build_python: python/oxmx/_core.so ($PROFILE profile)" >&2
