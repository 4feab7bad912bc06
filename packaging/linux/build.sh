#!/usr/bin/env bash
# Build kubetray's Linux bundle, .deb and tarball:
#   packaging/linux/build.sh            -> packaging/build/{dist/kubetray/, kubetray_<v>_amd64.deb,
#                                          kubetray-<v>-linux-x86_64.tar.gz}
# Needs python3 (3.10+) with venv, dpkg-deb, binutils (strip), and icu-devtools + gcc to trim Qt's
# ICU data (trim_icu.py; skipped with a note without them); PyInstaller comes from PyPI
# into a build venv (packaging/build/venv), next to a plain (non-editable) install of kubetray.
# KUBETRAY_BUILD_DIR moves everything built; the folder is created and may be deleted any time.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${KUBETRAY_BUILD_DIR:-$REPO/packaging/build}"
PYTHON="${PYTHON:-python3}"
PYINSTALLER_VERSION="6.22.3"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [ ! -x "$OUT/venv/bin/python" ]; then
    "$PYTHON" -m venv "$OUT/venv"
fi
echo "Installing PyInstaller $PYINSTALLER_VERSION and kubetray into $OUT/venv ..."
"$OUT/venv/bin/pip" install -q --disable-pip-version-check "pyinstaller==$PYINSTALLER_VERSION"
# kubetray's dependencies, at the versions pyproject.toml allows, by installing a copy of the
# source (so pip's build folder never lands in the checkout). The spec freezes trayapp itself from
# the checkout.
rm -rf "$OUT/src" && mkdir -p "$OUT/src"
tar -C "$REPO" -cf - pyproject.toml README.md trayapp resources | tar -C "$OUT/src" -xf -
"$OUT/venv/bin/pip" install -q --disable-pip-version-check "$OUT/src"

echo "Freezing with PyInstaller ..."
rm -rf "$OUT/dist"
"$OUT/venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$OUT/dist" --workpath "$OUT/work" \
    "$REPO/packaging/kubetray.spec"

echo "Trimming Qt's ICU data ..."
"$OUT/venv/bin/python" "$REPO/packaging/linux/trim_icu.py" --bundle "$OUT/dist/kubetray"

echo "Making the .deb and the tarball ..."
"$OUT/venv/bin/python" "$REPO/packaging/linux/assemble.py" --bundle "$OUT/dist/kubetray" --out "$OUT"
