"""Shrink the ICU data library Qt brings into the bundle (32 MB -> about 5.5 MB).

Qt 6's core library links ICU, and ICU's data library holds every locale's names, currencies,
units, time-zone names, collation rules, transliterators and 190 legacy character converters.
A tray app uses none of them: Qt formats with its own CLDR tables, Qt 6 decodes local 8-bit text
as UTF-8 on Unix, and kubetray neither collates nor transliterates. What stays: the Unicode
properties, normalisation, case mapping, break rules (with their dictionaries, which the rules
refer to), converter aliases, time-zone rules, and the root and English locales.

How: the data is one blob behind the symbol icudt<NN>_dat. It is cut out of the .so, thinned with
ICU's own `icupkg`, turned back into an object with `genccode` and linked into a library with the
same soname. Needs icu-devtools (icupkg, genccode), gcc and binutils; without them the bundle is
left as it is and this says so.

    python packaging/linux/trim_icu.py --bundle packaging/build/dist/kubetray
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = ("icupkg", "genccode", "gcc", "readelf", "strip")

# Item prefixes (folders inside the ICU package) and suffixes that go.
DROP_FOLDERS = ("coll/", "unit/", "zone/", "curr/", "lang/", "region/", "translit/", "rbnf/")
DROP_SUFFIXES = (".cnv",)
# Top-level locale bundles (xx.res, xx_YY.res, ...) go, except these.
KEEP_LOCALES = {"root.res", "en.res", "en_US.res", "en_US_POSIX.res", "pool.res", "res_index.res"}
LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]+)*\.res$")


def droppable(item: str) -> bool:
    if item.startswith(DROP_FOLDERS) or item.endswith(DROP_SUFFIXES):
        return True
    return "/" not in item and bool(LOCALE.match(item)) and item not in KEEP_LOCALES


def run(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd).stdout


def data_blob(library: Path) -> tuple[str, bytes]:
    """The data symbol's name and bytes, read through the ELF headers readelf prints."""
    symbols = run("readelf", "-sW", str(library))
    found = re.search(r"\b([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+OBJECT\s+GLOBAL\s+\w+\s+(\d+)\s+(icudt\d+_dat)\b",
                      symbols)
    if found is None:
        raise SystemExit(f"{library} has no icudt<NN>_dat symbol; is it ICU's data library?")
    address, size, section_index, name = (int(found[1], 16), int(found[2], 0), int(found[3]), found[4])
    sections = run("readelf", "-SW", str(library))
    row = re.search(rf"\[\s*{section_index}\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", sections)
    if row is None:
        raise SystemExit(f"readelf shows no section {section_index} in {library}")
    offset = address - int(row[1], 16) + int(row[2], 16)
    with library.open("rb") as lib:
        lib.seek(offset)
        return name, lib.read(size)


def trim(library: Path) -> tuple[int, int]:
    name, blob = data_blob(library)  # name: icudt73_dat
    package = name.removesuffix("_dat") + "l"  # little-endian package name: icudt73l
    soname = library.name
    with tempfile.TemporaryDirectory(prefix="kubetray-icu-") as scratch:
        work = Path(scratch)
        (work / "in").mkdir()
        (work / "out").mkdir()
        # icupkg names the items after the file, so both files carry the package's own name.
        source = work / "in" / f"{package}.dat"
        source.write_bytes(blob)
        items = run("icupkg", "-l", str(source)).split()
        (work / "drop.txt").write_text("\n".join(i for i in items if droppable(i)) + "\n", encoding="utf-8")
        run("icupkg", "-r", str(work / "drop.txt"), str(source), str(work / "out" / f"{package}.dat"))
        run("genccode", "-a", "gcc", "-e", name.removesuffix("_dat"), f"{package}.dat", cwd=work / "out")
        (assembly,) = (work / "out").glob("*.S")
        built = work / "out" / soname
        run("gcc", "-shared", "-nostdlib", f"-Wl,-soname,{soname}", "-o", str(built), str(assembly))
        run("strip", str(built))
        before = library.stat().st_size
        shutil.copyfile(built, library)
        return before, library.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="the one-folder bundle")
    args = parser.parse_args(argv)
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"ICU data not trimmed: {', '.join(missing)} not found (apt install icu-devtools gcc binutils); "
              "the bundle keeps the full 32 MB ICU data.", file=sys.stderr)
        return 0
    # PyInstaller links _internal/libicudata.so.NN to Qt's copy: trim the file once.
    libraries = sorted(p for p in args.bundle.rglob("libicudata.so.*") if not p.is_symlink())
    if not libraries:
        print("No libicudata in the bundle; nothing to trim.")
        return 0
    for library in libraries:
        before, after = trim(library)
        print(f"Trimmed {library.relative_to(args.bundle)}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
