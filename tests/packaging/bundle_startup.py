"""Start-up of the Linux bundle to its tray icon, on the real desktop session of tests/desktop.

    /work/venv/bin/python tests/packaging/bundle_startup.py packaging/build/dist/kubetray/kubetray [--runs 5]

A measurement, not a test. Each run starts `<bundle> --demo` with fresh XDG folders and times,
from just before Popen, (a) the icon embedded in trayer's panel as the X server sees it and (b)
the four demo tunnels forwarding (the app's own status socket), with tests/bench/tray_session.py's
tools. "Cold" runs first evict every file of the bundle from the page cache with
posix_fadvise(DONTNEED), the nearest a container gets to dropping caches (system libraries and
Python's own files stay cached); "warm" runs follow each other. `--compare ARGV...` adds the same
runs for another command (e.g. the venv's `kubetray`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "bench"))

from tray_session import App, Session, XWatch, icon_embedded, session_unavailable, wait_tray_empty  # noqa: E402

DEMO_TUNNELS = 4


def evict(folder: Path) -> int:
    """Drop `folder`'s files from the page cache; returns how many bytes were asked to go."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            total += path.stat().st_size
    return total


def start_once(session: Session, argv: list[str], timeout: float = 20.0) -> tuple[float | None, float | None, str]:
    """(seconds to icon embedded, seconds to all demo tunnels forwarding, error or "")."""
    wait_tray_empty(session)
    watch = XWatch(session, icon_embedded).start()
    app = App(session.env, argv)
    embedded = forwarding = None
    error = ""
    try:
        deadline = app.t0 + timeout
        while time.monotonic() < deadline and (embedded is None or forwarding is None):
            app.check_alive()
            if forwarding is None and (app.forwarding() or 0) >= DEMO_TUNNELS:
                forwarding = time.monotonic() - app.t0
            if embedded is None and watch.seen_at is not None:
                embedded = watch.seen_at - app.t0
            time.sleep(0.01)
        if embedded is None or forwarding is None:
            error = f"not done in {timeout:.0f} s; stderr: {app.stderr_tail()}"
    except RuntimeError as exc:
        error = str(exc)
    finally:
        watch.stop()
        app.stop()
    return embedded, forwarding, error


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bundle start-up to tray icon, on a virtual desktop.")
    parser.add_argument("bundle_exe", type=Path, help="the bundle's kubetray executable")
    parser.add_argument("--runs", type=int, default=5, help="warm runs (after one cold run per command)")
    parser.add_argument("--cold", type=int, default=2, help="cold runs (bundle files evicted first)")
    parser.add_argument("--compare", nargs="+", metavar="ARG", help="another command to time the same way")
    args = parser.parse_args(argv)
    reason = session_unavailable()
    if reason:
        print(f"No desktop session: {reason}", file=sys.stderr)
        return 2
    exe = args.bundle_exe.resolve()
    commands = {"bundle": ([str(exe), "--demo"], exe.parent)}
    if args.compare:
        commands["compare"] = ([*args.compare, "--demo"], None)
    rows = []
    with Session() as session:
        for name, (command, folder) in commands.items():
            for kind, count in (("cold", args.cold if folder else 0), ("warm", args.runs)):
                for n in range(count):
                    if kind == "cold":
                        evict(folder)
                    embedded, forwarding, error = start_once(session, command)
                    rows.append((name, kind, n + 1, embedded, forwarding, error))
                    print(f"{name} {kind} #{n + 1}: icon {fmt(embedded)}, forwarding {fmt(forwarding)} {error}",
                          file=sys.stderr)
    print("| command | start | run | icon embedded | 4 tunnels forwarding |")
    print("| --- | --- | --- | --- | --- |")
    for name, kind, n, embedded, forwarding, error in rows:
        print(f"| {name} | {kind} | {n} | {fmt(embedded)} | {fmt(forwarding)} |" + (f" {error}" if error else ""))
    for name in commands:
        for kind in ("cold", "warm"):
            icons = [r[3] for r in rows if r[0] == name and r[1] == kind and r[3] is not None]
            if icons:
                print(f"\n{name} {kind}: median icon embedded {statistics.median(icons):.2f} s "
                      f"(min {min(icons):.2f}, max {max(icons):.2f}, n={len(icons)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
