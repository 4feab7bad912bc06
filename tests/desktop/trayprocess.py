"""A `kubetray --demo` tray process in the desktop session, driven the way a person would drive it.

`TrayProcess.start()` runs the tray app with its own XDG_RUNTIME_DIR (so its single-instance
socket never meets another kubetray), XDG_CONFIG_HOME and XDG_STATE_HOME (so the autostart entry
and the settings are its own). The test talks to it over that instance socket (`ask`, no Qt in the
test process): `status` for the tunnels, `ui` for the tray icon's geometry and, while the menu is
open, its entries with their on-screen centres. Clicks and keys are real X input from xdotool.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trayapp.platform.instance import ask

from .harness import Desktop, processes_with

# Qt's default double-click interval is 400 ms (QStyleHints.mouseDoubleClickInterval).
DOUBLE_CLICK_GAP = 0.5


class TrayProcess:
    def __init__(self, desktop: Desktop, root: Path, args: tuple[str, ...] = ()) -> None:
        self.desktop = desktop
        # mkdtemp makes it 0700, which the instance socket's folder check insists on.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="runtime-", dir=root))
        self.config_home = root / "config"
        self.state_home = root / "state"
        self.stderr_path = root / "kubetray.stderr"
        self.folder = self.runtime_dir / "kubetray"
        self.env: dict[str, str] = {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_STATE_HOME": str(self.state_home),
        }
        self.args = args
        self.process: subprocess.Popen[Any] | None = None
        self._last_icon_click = 0.0

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> TrayProcess:
        with self.stderr_path.open("w", encoding="utf-8") as stderr:
            self.process = self.desktop.popen([sys.executable, "-m", "trayapp", "--demo", *self.args],
                                              extra_env=self.env, stdout=stderr, stderr=subprocess.STDOUT)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"kubetray did not exit within {timeout:g} s of SIGTERM; killed it.\n"
                                 f"{self.stderr()}") from None

    def leftovers(self) -> list[tuple[int, str]]:
        """Live processes started with this tray's environment (the app, browsers, helpers)."""
        return processes_with("XDG_RUNTIME_DIR", str(self.runtime_dir))

    # --- asking it -------------------------------------------------------------------------

    def ask(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        if not self.alive():
            raise AssertionError(f"kubetray exited with status {self.process and self.process.returncode}:\n"
                                 f"{self.stderr()}")
        return ask(request, 3.0, folder=self.folder)

    def status(self) -> dict[str, Any]:
        return self.ask({"request": "status"}) or {}

    def ui(self) -> dict[str, Any]:
        return self.ask({"request": "ui"}) or {}

    def tunnel(self, resource_name: str) -> dict[str, Any]:
        found = [t for t in self.status().get("tunnels", []) if t["resourceName"] == resource_name]
        assert len(found) == 1, f"expected one tunnel for {resource_name}, got {found}"
        return found[0]

    # --- the tray icon and its menu --------------------------------------------------------

    def icon_centre(self) -> tuple[int, int]:
        x, y, w, h = self.ui()["trayGeometry"]
        return x + w // 2, y + h // 2

    def open_menu(self, button: int = 3) -> list[dict[str, Any]]:
        """Click the tray icon (3: right, 1: left) and return the open menu's entries."""
        # A second press on the icon within the double-click interval is a double click, which
        # Qt's XEmbed icon does not turn into a menu: wait that interval out, as a person would.
        pause = self._last_icon_click + DOUBLE_CLICK_GAP - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self.desktop.xdotool("mousemove", *self.icon_centre(), "click", button)
        self._last_icon_click = time.monotonic()
        ui = self.desktop.wait_for(lambda: (u := self.ui()).get("menuVisible") and u.get("entries") and u,
                                   timeout=5, what=f"the tray menu to open on a click of button {button}")
        return ui["entries"]

    def wait_menu_closed(self) -> None:
        self.desktop.wait_for(lambda: not self.ui().get("menuVisible"), timeout=5, what="the tray menu to close")

    def close_menu(self) -> None:
        self.desktop.xdotool("key", "Escape")
        self.wait_menu_closed()

    def click(self, entry: Mapping[str, Any], button: int = 1) -> None:
        self.desktop.xdotool("mousemove", entry["x"], entry["y"], "click", button)


def entry(entries: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The one menu entry whose text starts with `prefix`."""
    found = [e for e in entries if e["text"].startswith(prefix)]
    assert len(found) == 1, f"expected one menu entry starting {prefix!r}, got {[e['text'] for e in entries]}"
    return found[0]
