"""`kubetray autostart` in a desktop session: the XDG entry lands where the session's
XDG_CONFIG_HOME says, passes desktop-file-validate, and its Exec line really starts kubetray."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .harness import Desktop


def autostart(desktop: Desktop, action: str) -> str:
    result = desktop.run([sys.executable, "-m", "trayapp", "autostart", action])
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_autostart_on_status_off(desktop: Desktop) -> None:
    entry = Path(desktop.env["XDG_CONFIG_HOME"]) / "autostart" / "kubetray.desktop"
    assert "is off" in autostart(desktop, "status")
    try:
        assert str(entry) in autostart(desktop, "on")
        assert entry.is_file()
        validated = desktop.run(["desktop-file-validate", entry])
        # Errors fail the exit status; warnings do not, but desktops may still ignore such an
        # entry. Hints are style advice (e.g. two main categories) and are allowed.
        complaints = [line for line in (validated.stdout + validated.stderr).splitlines()
                      if ": hint: " not in line]
        assert validated.returncode == 0 and complaints == [], validated.stdout + validated.stderr
        assert "is on" in autostart(desktop, "status")

        fields = dict(line.split("=", 1) for line in entry.read_text(encoding="utf-8").splitlines() if "=" in line)
        command = shlex.split(fields["Exec"])
        started = desktop.run([*command, "--version"])
        assert started.returncode == 0 and started.stdout.startswith("kubetray "), started.stderr
    finally:
        off = autostart(desktop, "off")
    assert "no longer start at login" in off
    assert not entry.exists()
    assert "is off" in autostart(desktop, "status")
