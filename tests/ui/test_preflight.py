"""When the tray cannot start, kubetray runs headless and says why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from trayapp.ui import preflight
from trayapp.ui.preflight import desktop_problem


def found(name: str) -> str | None:
    return f"lib{name}.so.0"


def test_reasons() -> None:
    assert "No desktop display" in desktop_problem({}, "linux", found)
    assert desktop_problem({"DISPLAY": ":0"}, "linux", found) is None
    assert desktop_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", lambda n: None) is None
    missing = desktop_problem({"DISPLAY": ":0"}, "linux", lambda n: None)
    assert missing is not None and "apt install libxcb-cursor0" in missing
    assert desktop_problem({}, "darwin", found) is None
    assert desktop_problem({}, "win32", found) is None
    assert desktop_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", found) is None


def test_a_bundled_library_counts(tmp_path, monkeypatch) -> None:
    # The Linux bundle (PyInstaller) carries libxcb-cursor itself, in sys._MEIPASS.
    monkeypatch.setattr(preflight.ctypes.util, "find_library", lambda name: None)
    assert preflight.find_library("xcb-cursor") is None
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert preflight.find_library("xcb-cursor") is None
    (tmp_path / "libxcb-cursor.so.0").write_bytes(b"")
    assert preflight.find_library("xcb-cursor") == "libxcb-cursor.so.0"
    assert desktop_problem({"DISPLAY": ":0"}, "linux") is None


def test_without_a_display_kubetray_runs_headless(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward: []\n", encoding="utf-8")
    kubeconfig = tmp_path / "missing-kubeconfig"
    process = subprocess.Popen([sys.executable, "-m", "trayapp", "--config", str(rules), "--kubeconfig",
                                str(kubeconfig)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("No desktop display was found") and "runs without the tray" in first
        second = process.stderr.readline()
        assert str(kubeconfig) in second  # the headless engine is running and reports the kubeconfig
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
