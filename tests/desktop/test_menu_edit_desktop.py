"""A rule changed from the tray menu on a real (virtual) desktop, with real X input: a tunnel's
"Change local port…" asks in a dialog, the rules file gets the new port (its comment kept) and the
tunnel moves there. Needs trayapp.config.edit; skipped until it is there. Screenshot in
test-artifacts/desktop: change-port-dialog.png.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Desktop
from .trayprocess import TrayProcess, entry

pytest.importorskip("trayapp.config.edit", reason="the rules file editor (trayapp.config.edit) is not here")

TITLE = "kubetray: change local port"


def test_change_local_port_from_the_menu(desktop: Desktop, tmp_path: Path,
                                         unused_tcp_port_factory: Callable[[], int]) -> None:
    old, new = unused_tcp_port_factory(), unused_tcp_port_factory()
    rules = tmp_path / "rules.yaml"
    rules.write_text("# my one forward\nportForward:\n"
                     f"  - {{resourceType: service, resourceName: web, port: 80, localPort: {old}, name: web}}\n",
                     encoding="utf-8")
    tray = TrayProcess(desktop, tmp_path, ("--config", str(rules))).start()
    try:
        desktop.wait_for(lambda: [t["state"] for t in tray.status().get("tunnels", [])] == ["forwarding"],
                         timeout=20, what="the web tunnel to forward")
        desktop.wait_for(lambda: tray.ui().get("trayGeometry", [0])[0] > 0, timeout=10, what="the icon in the panel")
        web = entry(tray.open_menu(), "web ")
        assert web["submenu"][-2:] == ["Change local port\u2026", "Stop forwarding\u2026"]
        # Into the tunnel's submenu (its first entry), then Up wraps round to the last entry and
        # goes one up from there: "Change local port…". The keyboard, as a person might use it.
        desktop.xdotool("mousemove", web["x"], web["y"])
        desktop.xdotool("key", "Right", "Up", "Up", "Return")
        dialog = desktop.wait_for(lambda: next((w for w in desktop.windows() if w["name"] == TITLE), None),
                                  timeout=10, what="the change-port dialog")
        desktop.xdotool("key", "ctrl+a")
        desktop.xdotool("type", str(new))
        shot = desktop.screenshot("change-port-dialog-full")
        desktop.run(["convert", shot, "-crop", f"{dialog['width']}x{dialog['height']}+{dialog['x']}+{dialog['y']}",
                     "+repage", desktop.artifacts / "change-port-dialog.png"], check=True)
        desktop.xdotool("key", "Return")

        desktop.wait_for(lambda: f"localPort: {new}" in rules.read_text(encoding="utf-8"), timeout=10,
                         what="the rules file to get the new port")
        assert rules.read_text(encoding="utf-8").startswith("# my one forward\n")
        desktop.wait_for(lambda: [(t["localPort"], t["state"]) for t in tray.status().get("tunnels", [])]
                         == [(new, "forwarding")], timeout=10, what="the tunnel to move to the new port")
        with urllib.request.urlopen(f"http://127.0.0.1:{new}/", timeout=10) as answer:
            assert answer.status == 200
    finally:
        if tray.alive():
            assert tray.terminate() == 0, tray.stderr()
