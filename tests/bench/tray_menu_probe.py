"""The tray menu timed in-process: run by bench_tray.py inside the desktop session (QT_QPA_PLATFORM=xcb).

    python tests/bench/tray_menu_probe.py --tunnels 200 --repeat 20

Builds trayapp.ui.tray.Tray with a Snapshot of N synthetic forwarding tunnels (as
tests/ui/test_menu_model.py builds views), then N times: `tray.menu.popup(...)` (which runs
`aboutToShow` -> `Tray.rebuild` synchronously), Qt's events processed until an event filter sees
the menu's first Paint event, then the menu closed and its closing processed. Prints one JSON object:
seconds from popup() to its return, to the first Paint, `Tray.rebuild()` alone, and the number of
QMenu children the menu holds after each open.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QEventLoop, QObject, QPoint, QTimer
from PySide6.QtWidgets import QApplication, QMenu

from trayapp.control import Snapshot
from trayapp.engine.runtime import TunnelView
from trayapp.model import ResourceType, Rule, TunnelState
from trayapp.ui.menu_model import Prefs
from trayapp.ui.tray import Tray


def snapshot(tunnels: int, generation: int = 0) -> Snapshot:
    """Each generation names other pods, so the menu must be rebuilt (the tray reuses an
    unchanged menu, which would make every opening after the first one nearly free)."""
    views = tuple(
        TunnelView(f"bench/echo-{n}", Rule(ResourceType.POD, f"echo-{n}", 7000, local_port=21000 + n),
                   TunnelState.FORWARDING, 21000 + n, f"echo-{n}-g{generation}", None)
        for n in range(tunnels))
    return Snapshot(context="kubetray-bench", namespace="default", contexts=("kubetray-bench",), tunnels=views,
                    rules_path=Path("/tmp/kubetray-bench/rules.yaml"))


class FirstPaint(QObject):
    """Notes the first Paint event of the watched widget and ends `loop` then."""

    def __init__(self, loop: QEventLoop) -> None:
        super().__init__()
        self.at: float | None = None
        self._loop = loop

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self.at is None:
            self.at = time.perf_counter()
            self._loop.quit()
        return False


def run_loop(loop: QEventLoop, ms: int) -> None:
    """Qt's events for up to `ms` (less if something quits `loop`). A local event loop, not
    QApplication.processEvents: in PySide6 6.12 on Python 3.11 every processEvents() call drops a
    reference to None, and a few thousand calls abort the interpreter (none_dealloc)."""
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(ms)
    loop.exec()
    timer.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tunnels", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--x", type=int, default=1000)
    parser.add_argument("--y", type=int, default=32)
    args = parser.parse_args()

    qt = QApplication(["kubetray-menu-probe"])
    qt.setApplicationName("kubetray")
    tray = Tray(lambda _command: None, lambda: Prefs())
    tray.update(snapshot(args.tunnels))
    tray.show()
    loop = QEventLoop()
    run_loop(loop, 300)
    painted = FirstPaint(loop)
    tray.menu.installEventFilter(painted)
    out: dict[str, list[float | int | None]] = {"popup_returned": [], "first_paint": [], "rebuild": [],
                                                  "submenus_after": [], "visible": []}
    for generation in range(args.repeat):
        tray.update(snapshot(args.tunnels, generation + 1))
        painted.at = None
        t0 = time.perf_counter()
        tray.menu.popup(QPoint(args.x, args.y))
        returned = time.perf_counter()
        if painted.at is None:
            run_loop(loop, 10_000)
        out["popup_returned"].append(returned - t0)
        out["first_paint"].append(None if painted.at is None else painted.at - t0)
        out["submenus_after"].append(len(tray.menu.findChildren(QMenu)))
        out["visible"].append(tray.menu.isVisible())
        tray.menu.close()  # not hide(): a hidden popup stays on Qt's popup stack and the next
        # popup() then closes at once (every second one never shows)
        run_loop(loop, 100)
    for generation in range(max(3, args.repeat // 4)):
        tray.update(snapshot(args.tunnels, 1000 + generation))
        t0 = time.perf_counter()
        tray.rebuild()
        out["rebuild"].append(time.perf_counter() - t0)
    print(json.dumps(out), flush=True)
    # Without the interpreter's teardown: with PySide6 6.12 on Python 3.11 freeing the widgets
    # at exit aborts it (none_dealloc), after the answer is out.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
