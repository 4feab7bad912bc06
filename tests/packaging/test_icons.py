"""The generated icons in resources/icons/: every size a platform needs, well-formed, up to date.

The PNG, ICO and ICNS files are read with struct alone (no Pillow), so these checks say what the
bytes are, not what a decoder forgives. The sizes are written out here from the packaging issue
rather than imported from the generator, so a change to one is caught by the other.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"
GENERATOR = ICONS.parent / "generate_icons.py"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RGBA = 6  # PNG colour type: truecolour with alpha
HICOLOR = (16, 22, 24, 32, 48, 64, 128, 256, 512)
TRAY = {state: (16, 22, 24, 32, 44, 64) for state in ("idle", "ok", "busy", "failed")}
ICO = (16, 24, 32, 48, 64, 128, 256)
ICNS = {b"ic04": 16, b"ic05": 32, b"ic07": 128, b"ic08": 256, b"ic09": 512,
        b"ic11": 32, b"ic12": 64, b"ic13": 256, b"ic14": 512}


def png_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) from a PNG's IHDR, which must be its first chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, colour


def png_chunks(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        kinds.append(kind)
        at += 12 + length
    assert at == len(data)
    return kinds


def ico_entries(data: bytes) -> dict[int, bytes]:
    """The images of a .ico by declared size, after checking the directory against the file."""
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1)
    images: dict[int, bytes] = {}
    end = 6 + 16 * count
    for index in range(count):
        width, height, colours, zero, planes, bits, size, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * index:22 + 16 * index])
        assert (colours, zero, planes, bits) == (0, 0, 1, 32)
        assert width == height
        assert offset == end, "entries must follow one another without gaps or overlap"
        end = offset + size
        images[width or 256] = data[offset:end]
    assert end == len(data)
    return images


def icns_entries(data: bytes) -> dict[bytes, bytes]:
    """The payloads of a .icns by type, after checking the lengths add up to the file."""
    magic, total = struct.unpack(">4sI", data[:8])
    assert magic == b"icns" and total == len(data)
    entries: dict[bytes, bytes] = {}
    at = 8
    while at < total:
        kind, length = struct.unpack(">4sI", data[at:at + 8])
        assert length > 8 and at + length <= total
        assert kind not in entries
        entries[kind] = data[at + 8:at + length]
        at += length
    return entries


def expected_pngs() -> dict[str, int]:
    files = {f"hicolor/{n}x{n}/apps/kubetray.png": n for n in HICOLOR}
    files.update({f"png/tray-{state}-{n}.png": n for state, sizes in TRAY.items() for n in sizes})
    return files


@pytest.mark.parametrize(("name", "size"), sorted(expected_pngs().items()))
def test_each_png_has_its_size_with_alpha_and_no_metadata(name: str, size: int) -> None:
    data = (ICONS / name).read_bytes()
    assert png_header(data) == (size, size, RGBA)
    # Nothing that changes from run to run or machine to machine (tIME, tEXt, iCCP...).
    assert set(png_chunks(data)) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}


def test_hicolor_set_is_complete_and_nothing_else() -> None:
    found = {str(p.relative_to(ICONS)) for p in (ICONS / "hicolor").rglob("*") if p.is_file()}
    wanted = {f"hicolor/{n}x{n}/apps/kubetray.png" for n in HICOLOR}
    assert found == wanted | {"hicolor/scalable/apps/kubetray.svg"}
    scalable = ICONS / "hicolor" / "scalable" / "apps" / "kubetray.svg"
    assert scalable.read_bytes() == (ICONS / "kubetray.svg").read_bytes()


def test_ico_holds_png_entries_of_the_declared_sizes() -> None:
    images = ico_entries((ICONS / "kubetray.ico").read_bytes())
    assert sorted(images) == list(ICO)
    for size, png in images.items():
        assert png_header(png) == (size, size, RGBA)


def test_icns_holds_png_entries_of_each_type() -> None:
    entries = icns_entries((ICONS / "kubetray.icns").read_bytes())
    assert set(entries) == set(ICNS)
    for kind, png in entries.items():
        assert png_header(png)[:2] == (ICNS[kind], ICNS[kind]), kind


def manifest() -> tuple[str, dict[str, str]]:
    qt, *lines = (ICONS / "generated.txt").read_text(encoding="utf-8").splitlines()
    assert qt.startswith("Qt ")
    hashes = {name: digest for digest, name in (line.split("  ") for line in lines)}
    return qt.removeprefix("Qt "), hashes


def test_generated_files_come_from_the_current_svgs() -> None:
    """An edited SVG without a rerun of the generator fails here, whatever Qt is installed."""
    _, hashes = manifest()
    sources = {p.name for p in ICONS.glob("*.svg")}
    assert set(hashes) == sources
    for name, digest in hashes.items():
        assert hashlib.sha256((ICONS / name).read_bytes()).hexdigest() == digest, \
            f"{name} changed: run resources/generate_icons.py"


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def shape(path: Path) -> object:
    """What must match across Qt releases: sizes and alpha, not the antialiased pixels."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return png_header(data)
    if path.suffix == ".ico":
        return {size: png_header(png) for size, png in ico_entries(data).items()}
    if path.suffix == ".icns":
        return {kind: png_header(png) for kind, png in icns_entries(data).items()}
    return None  # the SVG copy and generated.txt are covered by the tests above


def test_check_passes_on_the_committed_tree(tmp_path: Path) -> None:
    """`generate_icons.py --check` is byte-exact, but only against the Qt that made the files.

    Another Qt release may antialias an edge pixel differently, so when the installed Qt is not
    the one named in generated.txt this regenerates into a temporary folder and compares only
    what must not change: the set of files, each image's dimensions and its alpha channel.
    """
    qt_core = pytest.importorskip("PySide6.QtCore")
    made_with, _ = manifest()
    if qt_core.qVersion() == made_with:
        result = run_generator("--check")
        assert result.returncode == 0, result.stdout + result.stderr
        return
    result = run_generator("--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    fresh = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    sources = set(ICONS.glob("*.svg"))
    committed = {str(p.relative_to(ICONS)) for p in ICONS.rglob("*") if p.is_file() and p not in sources}
    assert fresh == committed
    for name in sorted(fresh):
        assert shape(tmp_path / name) == shape(ICONS / name), name
