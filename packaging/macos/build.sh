#!/usr/bin/env bash
# Build kubetray.app for macOS (run on a Mac; it cannot be built on Linux):
#   packaging/macos/build.sh     -> packaging/build/dist/kubetray.app and kubetray-<v>-macos-<arch>.zip
# Needs python3 (3.10+, a python.org or Homebrew build for the Mac's architecture) and the Xcode
# command line tools (codesign, ditto, plutil). The app is signed ad hoc; set CODESIGN_IDENTITY
# (and, if needed, CODESIGN_ENTITLEMENTS) to sign with a Developer ID (notarising is a separate,
# manual step). PyInstaller does the signing (kubetray.spec passes them to EXE/BUNDLE).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${KUBETRAY_BUILD_DIR:-$REPO/packaging/build}"
PYTHON="${PYTHON:-python3}"
PYINSTALLER_VERSION="6.22.3"
mkdir -p "$OUT"

[ -x "$OUT/venv/bin/python" ] || "$PYTHON" -m venv "$OUT/venv"
"$OUT/venv/bin/pip" install -q --disable-pip-version-check "pyinstaller==$PYINSTALLER_VERSION"
# kubetray's dependencies, from a copy of the source so pip's build folder stays out of the checkout.
rm -rf "$OUT/src" && mkdir -p "$OUT/src"
tar -C "$REPO" -cf - pyproject.toml README.md trayapp resources | tar -C "$OUT/src" -xf -
"$OUT/venv/bin/pip" install -q --disable-pip-version-check "$OUT/src"

rm -rf "$OUT/dist"
"$OUT/venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$OUT/dist" --workpath "$OUT/work" \
    "$REPO/packaging/kubetray.spec"

APP="$OUT/dist/kubetray.app"
plutil -lint "$APP/Contents/Info.plist"
[ "$(/usr/libexec/PlistBuddy -c 'Print :LSUIElement' "$APP/Contents/Info.plist")" = "true" ]
"$APP/Contents/MacOS/kubetray" --version
# No re-signing here: PyInstaller already signed every binary and the .app, with the hardened
# runtime and a secure timestamp when CODESIGN_IDENTITY is a Developer ID. A plain
# `codesign --force --deep --sign ID` over it would replace those signatures with ones lacking
# both, which notarisation rejects (and Apple advises against --deep for signing). Only verify.
codesign --verify --deep --strict --verbose=2 "$APP"
VERSION="$("$OUT/venv/bin/python" -c 'import trayapp; print(trayapp.__version__)')"
ZIP="$OUT/kubetray-$VERSION-macos-$(uname -m).zip"
rm -f "$ZIP"
ditto -c -k --keepParent "$APP" "$ZIP"
echo "$APP"
echo "$ZIP"
