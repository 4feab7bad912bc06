"""DesktopNotices against a real dunst on a real session bus: what dunst receives, and clicks.

The adapter runs in the test process (desktop-notifier reads DBUS_SESSION_BUS_ADDRESS from this
process's environment); the session's bus monitor reports what dunst accepted, and `dunstctl
action 0` clicks the notification as a user would.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from trayapp.model import Notice
from trayapp.platform.notify import INFO_TIMEOUT, RETRY_AFTER, DesktopNotices

from .harness import Desktop

INFO = Notice("web moved to pod web-7d9-x2k", "web moved from pod web-1 to pod web-7d9-x2k; "
              "127.0.0.1:8080 stays the same.", url="http://localhost:8080/", tunnel_id="dev/web")
STICKY = Notice("db failed", "db: the cluster refused the credentials.", sticky=True,
                url="http://localhost:5432/", tunnel_id="dev/db")

URGENCY_NORMAL, URGENCY_CRITICAL = 1, 2


@pytest.fixture
def session_bus(desktop: Desktop, monkeypatch: pytest.MonkeyPatch) -> Desktop:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.env["DBUS_SESSION_BUS_ADDRESS"])
    return desktop


async def wait_for_notifications(desktop: Desktop, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        seen = desktop.notifications()
        return seen if len(seen) >= count else None

    # The harness's wait_for sleeps; run it beside the loop so D-Bus signals keep flowing.
    return await asyncio.to_thread(desktop.wait_for, enough, 10.0, f"{count} notification(s) at dunst")


async def test_info_and_sticky_notices_reach_dunst(session_bus: Desktop) -> None:
    notices = DesktopNotices(app_name="kubetray")
    try:
        assert await notices.send(INFO) is True
        assert await notices.send(STICKY) is True
    finally:
        await notices.close()
    info, sticky = await wait_for_notifications(session_bus, 2)
    assert (info["appname"], info["summary"], info["body"]) == ("kubetray", INFO.title, INFO.body)
    assert (info["urgency"], info["timeout"]) == (URGENCY_NORMAL, INFO_TIMEOUT * 1000)
    assert (sticky["summary"], sticky["body"]) == (STICKY.title, STICKY.body)
    # Critical and never expiring: an error stays until the user closes it.
    assert (sticky["urgency"], sticky["timeout"]) == (URGENCY_CRITICAL, 0)
    assert "default" in info["actions"] and "default" in sticky["actions"]


async def test_clicking_a_notice_hands_it_back(session_bus: Desktop) -> None:
    clicked: asyncio.Queue[Notice] = asyncio.Queue()
    notices = DesktopNotices(on_clicked=clicked.put_nowait)
    try:
        assert await notices.send(INFO) is True
        [shown] = await wait_for_notifications(session_bus, 1)
        assert shown["closed"] is None
        result = await asyncio.to_thread(session_bus.run, ["dunstctl", "action", "0"])
        assert result.returncode == 0, result.stderr
        assert await asyncio.wait_for(clicked.get(), 10.0) == INFO
    finally:
        await notices.close()
    [shown] = session_bus.notifications()
    assert shown["invoked"] == ["default"]


def test_a_new_event_loop_gets_a_new_connection(session_bus: Desktop) -> None:
    # The engine's loop may be replaced (its worker thread restarted); a connection made on the
    # old, closed loop must not be used again.
    notices = DesktopNotices()
    assert asyncio.run(notices.send(INFO)) is True
    assert asyncio.run(notices.send(STICKY)) is True
    asyncio.run(notices.close())
    shown = session_bus.wait_for(lambda: len(session_bus.notifications()) >= 2, what="two notifications at dunst")
    assert shown and [n["summary"] for n in session_bus.notifications()] == [INFO.title, STICKY.title]


def test_an_icon_file_is_sent_as_a_uri(session_bus: Desktop, tmp_path: Path) -> None:
    icon = tmp_path / "kubetray.png"
    icon.write_bytes(b"")  # dunst only gets its address; an unreadable image just shows none

    async def send() -> bool:
        notices = DesktopNotices(app_icon=icon)
        try:
            return await notices.send(INFO)
        finally:
            await notices.close()

    assert asyncio.run(send()) is True
    [shown] = session_bus.wait_for(session_bus.notifications, what="the notification at dunst")
    assert shown["icon"] == icon.as_uri()


async def test_a_service_that_appears_later_is_used_after_the_pause(
        desktop: Desktop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    notices = DesktopNotices(clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="trayapp.platform.notify")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus-yet'}")
    try:
        assert await notices.send(INFO) is False
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        now[0] += RETRY_AFTER - 1
        assert await notices.send(INFO) is False  # still pausing: no probe on every notice
        now[0] += 1
        assert await notices.send(INFO) is True
    finally:
        await notices.close()
    [shown] = await wait_for_notifications(desktop, 1)
    assert shown["summary"] == INFO.title
    told = [r.getMessage() for r in caplog.records if r.name == "trayapp.platform.notify" and r.levelno >= logging.INFO]
    assert len(told) == 2 and "in the tray instead" in told[0] and "available again" in told[1]
