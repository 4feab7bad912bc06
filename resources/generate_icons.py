"""Render the SVG icons in resources/icons/ into every bitmap a platform asks for.

One command after a designer edits an SVG:

    .venv/bin/python resources/generate_icons.py           # rewrite the generated files
    .venv/bin/python resources/generate_icons.py --check   # exit 1 listing stale files

It draws with Qt's own SVG renderer (QtSvg, part of PySide6-Essentials), so it needs nothing
the app does not already need, and writes:

    icons/hicolor/<N>x<N>/apps/kubetray.png     freedesktop theme sizes (the .deb's hicolor set)
    icons/hicolor/scalable/apps/kubetray.svg    the source itself
    icons/png/tray-<state>-<N>.png              tray state bitmaps for trays that want them
    icons/kubetray.ico                          Windows: PNG-compressed entries
    icons/kubetray.icns                         macOS: PNG-based icon types
    icons/generated.txt                         the Qt version and a hash of each SVG source

hicolor/ and png/ belong to this script: files there that it no longer makes are deleted.

Output is deterministic: the same SVGs and the same Qt give the same bytes (the PNGs carry
no text or time chunks). Another Qt release may antialias a pixel differently, which is why
generated.txt records the Qt that made the committed files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"

APP = "kubetray"
STATES = ("idle", "ok", "busy", "failed")
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
TRAY_SIZES = (16, 22, 24, 32, 44, 64)  # 44 is 22 at 2x, for HiDPI menu bars
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# Apple's PNG-capable icon types and the pixel size each holds (ic11..ic14 are the @2x variants).
ICNS_TYPES = (
    (b"ic04", 16), (b"ic05", 32), (b"ic07", 128), (b"ic08", 256), (b"ic09", 512),
    (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512),
)
MANIFEST = "generated.txt"


class Renderer:
    """Renders one SVG file to PNG bytes at a square pixel size, caching each size."""

    def __init__(self, svg: Path) -> None:
        from PySide6.QtSvg import QSvgRenderer

        self._renderer = QSvgRenderer(str(svg))
        if not self._renderer.isValid():
            raise SystemExit(f"{svg}: not a valid SVG")
        self._cache: dict[int, bytes] = {}

    def png(self, size: int) -> bytes:
        if size not in self._cache:
            self._cache[size] = self._draw(size)
        return self._cache[size]

    def _draw(self, size: int) -> bytes:
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
        from PySide6.QtGui import QImage, QPainter

        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self._renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not image.save(buffer, "PNG", 0):  # quality 0 = strongest zlib compression
            raise SystemExit(f"could not encode a {size}px PNG")
        buffer.close()
        return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico: ICONDIR, one 16-byte ICONDIRENTRY per size, then the PNGs themselves."""
    count = len(pngs)
    header = struct.pack("<HHH", 0, 1, count)  # reserved, type 1 = icon, image count
    entries = b""
    images = b""
    offset = 6 + 16 * count
    for size, png in sorted(pngs.items()):
        side = 0 if size >= 256 else size  # a 0 byte means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        images += png
        offset += len(png)
    return header + entries + images


def icns(render: Renderer) -> bytes:
    """A macOS .icns: 'icns' and the total length, then (type, length, PNG) per icon type."""
    body = b""
    for kind, size in ICNS_TYPES:
        png = render.png(size)
        body += kind + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def sources() -> list[Path]:
    return [ICONS / f"{APP}.svg", *(ICONS / f"tray-{state}.svg" for state in STATES)]


def manifest(qt_version: str) -> bytes:
    lines = [f"Qt {qt_version}"]
    for svg in sources():
        lines.append(f"{hashlib.sha256(svg.read_bytes()).hexdigest()}  {svg.name}")
    return ("\n".join(lines) + "\n").encode()


def generate() -> dict[str, bytes]:
    """Every generated file, keyed by its path relative to resources/icons/."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import qVersion
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # alive while rendering
    files: dict[str, bytes] = {}
    app_icon = Renderer(ICONS / f"{APP}.svg")
    for size in HICOLOR_SIZES:
        files[f"hicolor/{size}x{size}/apps/{APP}.png"] = app_icon.png(size)
    files[f"hicolor/scalable/apps/{APP}.svg"] = (ICONS / f"{APP}.svg").read_bytes()
    files[f"{APP}.ico"] = ico({size: app_icon.png(size) for size in ICO_SIZES})
    files[f"{APP}.icns"] = icns(app_icon)
    for state in STATES:
        tray = Renderer(ICONS / f"tray-{state}.svg")
        for size in TRAY_SIZES:
            files[f"png/tray-{state}-{size}.png"] = tray.png(size)
    files[MANIFEST] = manifest(qVersion())
    return files


GENERATED_FOLDERS = ("hicolor", "png")  # wholly the generator's: anything else there is stale


def stale(files: dict[str, bytes], root: Path) -> list[str]:
    """Paths under root that are missing, differ, or are left over from an older size list."""
    differ = [name for name, data in files.items()
              if not (root / name).is_file() or (root / name).read_bytes() != data]
    differ += [path.relative_to(root).as_posix() for path in leftovers(files, root)]
    return sorted(differ)


def leftovers(files: dict[str, bytes], root: Path) -> list[Path]:
    return [path for folder in GENERATED_FOLDERS for path in sorted((root / folder).rglob("*"))
            if path.is_file() and path.relative_to(root).as_posix() not in files]


def write(files: dict[str, bytes], root: Path) -> None:
    for path in leftovers(files, root):
        path.unlink()
    for name, data in sorted(files.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and exit 1 listing files that differ")
    parser.add_argument("--out", type=Path, default=ICONS,
                        help="write (or check) under this folder instead of resources/icons")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        differ = stale(files, args.out)
        for name in differ:
            print(f"stale: {args.out / name}")
        if differ:
            print(f"{len(differ)} generated files are stale; "
                  "rerun resources/generate_icons.py without --check", file=sys.stderr)
            return 1
        print(f"all {len(files)} generated files are up to date")
        return 0
    write(files, args.out)
    print(f"wrote {len(files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
