"""The Forward… window on a real (virtual) desktop: `kubetray --demo` under Xvfb + trayer, its menu
opened with a real click, "Forward…" chosen, a service port found by typing and saved with the
keyboard (xdotool), then the rules file checked (the rule added, the user's comments kept) and the
new tunnel's port answering. Screenshots in test-artifacts/desktop: picker.png (the screen, the
proposal before Save) and picker-window.png (the window alone with the whole list, for the README)."""

from __future__ import annotations

import importlib.util
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .harness import Desktop
from .trayprocess import TrayProcess, entry

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trayapp.config.edit") is None,
                                reason="config/edit.py (the rules-file writer) is not in this tree yet")

TITLE = "kubetray: Forward"
RULES = """\
# My forwards: kubetray must keep these comments.
portForward:
  # the debug shell, on a port of its own
  - {{resourceType: pod, resourceName: debug-shell, port: 7000, localPort: {local}}}  # echo
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tunnel_for(tray: TrayProcess, name: str, port: int) -> dict[str, Any] | None:
    found = [t for t in tray.status().get("tunnels", []) if t["resourceName"] == name and t["port"] == port]
    return found[0] if found else None


def find_window(desktop: Desktop) -> str | None:
    answer = desktop.run(["xdotool", "search", "--onlyvisible", "--name", TITLE])
    ids = answer.stdout.split()
    return ids[0] if answer.returncode == 0 and ids else None


def test_forward_window_adds_a_rule_that_forwards(desktop: Desktop, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    original = RULES.format(local=free_port())
    rules.write_text(original, encoding="utf-8")
    tray = TrayProcess(desktop, tmp_path, ("--config", str(rules))).start()
    try:
        desktop.wait_for(lambda: (t := tunnel_for(tray, "debug-shell", 7000)) and t["state"] == "forwarding",
                         timeout=20, what="the debug-shell tunnel to forward")
        desktop.wait_for(lambda: tray.ui().get("trayGeometry", [0])[0] > 0, timeout=10,
                         what="the tray icon to be embedded")
        forward = entry(tray.open_menu(), "Forward\u2026")
        assert forward["enabled"]
        desktop.xdotool("mousemove", forward["x"], forward["y"], "click", 1)
        window = desktop.wait_for(lambda: find_window(desktop), timeout=10, what="the Forward window")
        desktop.xdotool("windowfocus", "--sync", window)  # no window manager: focus it directly

        # Rows arrive from the cluster after the window opens: search, go to the first match
        # and save, again until the rules file changes (Return does nothing while Save is off).
        def saved() -> bool:
            desktop.xdotool("key", "ctrl+f")
            desktop.xdotool("type", "--delay", "20", "svc/api http")
            desktop.xdotool("key", "Down")
            desktop.screenshot("picker")  # the last one shows the proposal before saving
            # The whole list, the choice kept, for the README; Return still saves the choice.
            desktop.xdotool("key", "ctrl+f", "BackSpace")
            desktop.run(["import", "-window", window, desktop.artifacts / "picker-window.png"], check=True)
            desktop.xdotool("key", "Return")
            try:
                desktop.wait_for(lambda: rules.read_text(encoding="utf-8") != original, timeout=2,
                                 what="the rules file to change")
            except AssertionError:
                return False
            return True

        desktop.wait_for(saved, timeout=30, what="Save to write the rules file")
        text = rules.read_text(encoding="utf-8")
        for line in original.splitlines():
            assert line in text, f"the rules file lost {line!r}:\n{text}"
        assert "resourceName: api" in text and "8000" in text, text

        tunnel = desktop.wait_for(lambda: (t := tunnel_for(tray, "api", 8000)) and t["state"] == "forwarding" and t,
                                  timeout=20, what="the new svc/api tunnel to forward")
        assert tunnel["resourceType"] == "service"
        with urllib.request.urlopen(f"http://127.0.0.1:{tunnel['localPort']}/", timeout=10) as answer:
            assert answer.status == 200
        desktop.xdotool("key", "Escape")
        desktop.wait_for(lambda: find_window(desktop) is None, timeout=10, what="the Forward window to close")
    finally:
        if tray.alive():
            assert tray.terminate() == 0, tray.stderr()
