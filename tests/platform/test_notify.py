"""DesktopNotices without a notification service: False, fast, one log line, never an exception.

Sending to a real daemon (dunst on a real session bus) is in tests/desktop/test_notify_dbus.py.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.model import Notice
from trayapp.platform.notify import DesktopNotices

NOTICE = Notice("web failed", "web: the cluster refused the credentials.", sticky=True,
                url="http://localhost:8080/", tunnel_id="dev/default/svc/web:80@127.0.0.1")

# A session bus that activates nothing: no service directories, so no name is ever owned.
EMPTY_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def empty_bus(tmp_path: Path) -> Iterator[str]:
    """The address of a real, private dbus-daemon on which nobody serves notifications."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("This test needs dbus-daemon (apt-get install dbus).")
    socket = tmp_path / "bus"
    config = tmp_path / "bus.conf"
    config.write_text(EMPTY_BUS_CONFIG.format(socket=socket), encoding="utf-8")
    daemon = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()  # printed once the bus accepts clients
        assert address.startswith("unix:"), address
        yield address
    finally:
        daemon.terminate()
        daemon.wait(timeout=5)
        if daemon.stdout is not None:
            daemon.stdout.close()


async def sent_quickly(notices: DesktopNotices) -> bool:
    started = time.monotonic()
    result = await notices.send(NOTICE)
    assert time.monotonic() - started < 2.0
    return result


async def test_no_session_bus_is_false_quickly_and_logged_once(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-such-bus'}")
    caplog.set_level(logging.INFO, logger="trayapp.platform.notify")
    notices = DesktopNotices(on_clicked=lambda notice: None)
    assert await sent_quickly(notices) is False
    assert await sent_quickly(notices) is False
    await notices.close()
    told = [r for r in caplog.records if r.name == "trayapp.platform.notify" and r.levelno >= logging.INFO]
    assert len(told) == 1
    assert told[0].levelno == logging.INFO
    assert "in the tray instead" in told[0].getMessage()


async def test_no_address_at_all_is_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)  # nothing to autolaunch a bus for
    assert await sent_quickly(DesktopNotices()) is False


async def test_bus_without_a_notification_service_is_false_quickly(
        monkeypatch: pytest.MonkeyPatch, empty_bus: str, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", empty_bus)
    caplog.set_level(logging.INFO, logger="trayapp.platform.notify")
    notices = DesktopNotices()
    assert await sent_quickly(notices) is False
    assert await sent_quickly(notices) is False
    await notices.close()
    assert [r.levelno for r in caplog.records if r.name == "trayapp.platform.notify"
            and r.levelno >= logging.INFO] == [logging.INFO]
    # Nothing was sent, so the library had nothing to complain about either.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

