"""Turn the PyInstaller one-folder bundle into a .deb and a runnable tarball (standard library only).

    python packaging/linux/assemble.py --bundle packaging/build/dist/kubetray --out packaging/build

The .deb puts the bundle under /opt/kubetray with a /usr/bin/kubetray link, the desktop entry,
the hicolor icons and the AppStream metainfo under /usr/share, and depends on the few system
libraries the bundle leaves out (see SYSTEM_DEPENDS). The tarball holds the same bundle with an
AppRun-style launcher, the desktop entry, an icon and a README; it runs where it is unpacked.
build.sh calls this after PyInstaller; it prints what it made, one path a line.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESOURCES = REPO / "resources"
APP_ID = "io.github.kubetray.Kubetray"
NAME = "kubetray"
PREFIX = Path("/opt") / NAME
# What the bundle leaves to the system (packaging/kubetray.spec, SYSTEM_LIBRARIES) or PyInstaller
# never bundles (OpenGL/EGL), by Debian package. libc6's minimum is found from the binaries.
SYSTEM_DEPENDS = ["libgl1", "libegl1", "libdbus-1-3", "libfontconfig1", "libfreetype6"]
MAINTAINER = "kubetray developers <kubetray@users.noreply.github.com>"
SUMMARY = "Keep Kubernetes port forwards alive from the system tray"
DESCRIPTION = """\
 kubetray reads port-forward rules in Skaffold's format, picks a pod for each
 rule the way kubectl port-forward does and keeps a local port open for it:
 tunnels follow pod restarts and rollouts, busy ports fall back, and the tray
 icon and desktop notifications say what happened. Runs headless too.
 .
 This package holds a self-contained build (Python and Qt inside /opt/kubetray)."""

# The desktop database and icon cache: dpkg's triggers from desktop-file-utils and
# hicolor-icon-theme refresh them where those are installed; this covers a system without them
# that has the tools anyway, and is harmless twice.
MAINTAINER_SCRIPT = """\
#!/bin/sh
set -e
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q /usr/share/applications || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f /usr/share/icons/hicolor/index.theme ]; then
    gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
fi
exit 0
"""

APPRUN = """\
#!/bin/sh
# Starts kubetray from wherever this folder was unpacked; arguments are passed on.
HERE="$(dirname "$(readlink -f "$0")")"
exec "$HERE/app/kubetray" "$@"
"""

TARBALL_README = """\
kubetray {version} for Linux x86_64 (self-contained: Python and Qt are inside app/)

Run it where it is:
    ./AppRun                 # the tray (or headless, saying why, without a desktop)
    ./AppRun --demo          # the built-in simulated cluster, no Kubernetes needed
    ./AppRun --help

Put it on your PATH and in the application menu (per user):
    ln -s "$PWD/app/kubetray" ~/.local/bin/kubetray
    cp kubetray.desktop ~/.local/share/applications/{app_id}.desktop
    cp kubetray.png ~/.local/share/icons/hicolor/256x256/apps/kubetray.png

`kubetray autostart on` (or the menu's "Start at login") then starts ~/.local/bin/kubetray at
login. Moving or deleting this folder breaks that link; run `kubetray autostart on` again after
moving it.

Needs an X11 desktop (or XWayland) with the usual libraries: OpenGL/EGL (libgl1, libegl1),
D-Bus (libdbus-1-3) and fontconfig (libfontconfig1). Debian/Ubuntu users may prefer the .deb.
"""


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)


def bundle_version(bundle: Path) -> str:
    """The version the bundle itself reports, which also proves it starts."""
    out = run([str(bundle / NAME), "--version"]).stdout.strip()
    match = re.fullmatch(r"kubetray (\S+)", out)
    if not match:
        raise SystemExit(f"{bundle / NAME} --version printed {out!r}")
    return match.group(1)


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def glibc_needed(bundle: Path) -> str:
    """The newest GLIBC_x.y symbol version any binary in the bundle asks for."""
    newest = (2, 17)
    for path in bundle.rglob("*"):
        if path.is_file() and not path.is_symlink() and _is_elf(path):
            text = run(["objdump", "-T", str(path)]).stdout
            for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", text):
                newest = max(newest, (int(major), int(minor)))
    return f"{newest[0]}.{newest[1]}"


def _normalise_modes(root: Path) -> None:
    """0755 for folders and executables, 0644 for the rest: what Debian expects, whatever the umask."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir() or os.stat(path).st_mode & 0o111:
            path.chmod(0o755)
        else:
            path.chmod(0o644)


def _icons() -> list[tuple[Path, str]]:
    """(file, hicolor size folder) for every generated app icon, plus the scalable SVG."""
    hicolor = RESOURCES / "icons" / "hicolor"
    found = [(png, png.parent.parent.name) for png in sorted(hicolor.glob("*/apps/kubetray.png"))]
    svg = hicolor / "scalable" / "apps" / "kubetray.svg"
    found.append((svg if svg.is_file() else RESOURCES / "icons" / "kubetray.svg", "scalable"))
    return found


def build_deb(bundle: Path, out: Path, version: str) -> Path:
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    root = out / "deb-root"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(bundle, root / PREFIX.relative_to("/"), symlinks=True)
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / NAME).symlink_to(PREFIX / NAME)
    share = root / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    shutil.copyfile(RESOURCES / "kubetray.desktop", share / "applications" / f"{APP_ID}.desktop")
    (share / "metainfo").mkdir(parents=True)
    shutil.copyfile(RESOURCES / f"{APP_ID}.metainfo.xml", share / "metainfo" / f"{APP_ID}.metainfo.xml")
    for icon, size in _icons():
        target = share / "icons" / "hicolor" / size / "apps" / f"{NAME}{icon.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(icon, target)
    doc = share / "doc" / NAME
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: kubetray\n\nFiles: *\nCopyright: kubetray developers\nLicense: Apache-2.0\n"
        " On Debian systems, the full text is in /usr/share/common-licenses/Apache-2.0.\n"
        " The bundle under /opt/kubetray also holds Python, Qt (LGPL-3.0) via PySide6 and the\n"
        " Python packages kubetray depends on, each under its own license.\n",
        encoding="utf-8")
    control_dir = root / "DEBIAN"
    control_dir.mkdir()
    depends = ", ".join([f"libc6 (>= {glibc_needed(bundle)})", *SYSTEM_DEPENDS])
    installed_kib = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) // 1024 + 1
    (control_dir / "control").write_text(
        f"Package: {NAME}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\nDepends: {depends}\nSection: devel\nPriority: optional\n"
        f"Description: {SUMMARY}\n{DESCRIPTION}\n",
        encoding="utf-8")
    for script in ("postinst", "postrm"):
        (control_dir / script).write_text(MAINTAINER_SCRIPT, encoding="utf-8")
        (control_dir / script).chmod(0o755)
    _normalise_modes(root)
    deb = out / f"{NAME}_{version}_{arch}.deb"
    run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)])
    shutil.rmtree(root)
    return deb


def build_tarball(bundle: Path, out: Path, version: str) -> Path:
    top = f"{NAME}-{version}-linux-x86_64"
    stage = out / "tar-root" / top
    shutil.rmtree(stage.parent, ignore_errors=True)
    shutil.copytree(bundle, stage / "app", symlinks=True)
    (stage / "AppRun").write_text(APPRUN, encoding="utf-8")
    (stage / "AppRun").chmod(0o755)
    shutil.copyfile(RESOURCES / "kubetray.desktop", stage / "kubetray.desktop")
    shutil.copyfile(RESOURCES / "icons" / "kubetray.svg", stage / "kubetray.svg")
    png = RESOURCES / "icons" / "hicolor" / "256x256" / "apps" / "kubetray.png"
    if png.is_file():
        shutil.copyfile(png, stage / "kubetray.png")
    (stage / "README").write_text(TARBALL_README.format(version=version, app_id=APP_ID), encoding="utf-8")
    _normalise_modes(stage)

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tarball = out / f"{top}.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=6) as archive:
        archive.add(stage, arcname=top, filter=owned_by_root)
    shutil.rmtree(stage.parent)
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the PyInstaller one-folder bundle")
    parser.add_argument("--out", type=Path, required=True, help="where the .deb and tarball go")
    parser.add_argument("--only", choices=("deb", "tarball"), help="make just one of them")
    args = parser.parse_args(argv)
    bundle, out = args.bundle.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    version = bundle_version(bundle)
    if args.only in (None, "deb"):
        print(build_deb(bundle, out, version))
    if args.only in (None, "tarball"):
        print(build_tarball(bundle, out, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
