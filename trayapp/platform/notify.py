"""Desktop notifications through the platform's own service, via the desktop-notifier library.

On Linux that is org.freedesktop.Notifications on the session bus (dunst, GNOME Shell, KDE
Plasma), on macOS the Notification Center, on Windows toast notifications. When there is no such
service (no session bus, nobody owns the name) `send` says so by returning False, quickly and
without raising, and the caller shows the tray's own message instead.

No Qt here: everything runs on the asyncio loop that calls it (the engine's, in a worker
thread), and click callbacks run on that loop too; the UI marshals them to its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from desktop_notifier import DesktopNotifier, Icon, Notification, Urgency

from trayapp.model import Notice

log = logging.getLogger(__name__)

INFO_TIMEOUT = 8  # seconds an informational notice stays; errors stay until dismissed
ANSWER_TIMEOUT = 1.5  # seconds the service gets to answer; a bus that hangs counts as none
RETRY_AFTER = 60.0  # seconds before asking again for a service that was missing

_NEVER_EXPIRES = 0  # the freedesktop spec's expire_timeout for "until the user closes it"


class DesktopNotices:
    """Sends `Notice`s as desktop notifications; clicks come back as the `Notice` clicked."""

    def __init__(self, app_name: str = "kubetray", app_icon: Path | None = None,
                 on_clicked: Callable[[Notice], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app_name = app_name
        self.app_icon = app_icon
        self.on_clicked = on_clicked
        self._clock = clock
        self._notifier: DesktopNotifier | None = None
        # The D-Bus connection belongs to the loop it was opened on; another loop gets its own.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._missing_since: float | None = None
        self._told_missing = False

    async def send(self, notice: Notice) -> bool:
        """True: the platform's service took the notice; False: there is none, use the tray."""
        notifier = await self._ready()
        if notifier is None:
            return False
        dispatched = False

        def took_it() -> None:
            nonlocal dispatched
            dispatched = True

        notification = Notification(
            title=notice.title,
            message=notice.body,
            urgency=Urgency.Critical if notice.sticky else Urgency.Normal,
            timeout=_NEVER_EXPIRES if notice.sticky else INFO_TIMEOUT,
            on_dispatched=took_it,
            on_clicked=lambda: self._clicked(notice),
        )
        try:
            # The library logs and swallows a failed send; it calls on_dispatched only on success.
            async with asyncio.timeout(ANSWER_TIMEOUT):  # not wait_for: it can lose a cancel on 3.11
                await notifier.send_notification(notification)
        except Exception as exc:  # noqa: BLE001 - a hung service (TimeoutError) or one that vanished
            log.debug("the notification service did not take %r: %r", notice.title, exc)
        if not dispatched:
            # The service went away (the daemon quit): ask again next time, after a pause.
            await self._missing("the service stopped answering")
        return dispatched

    async def close(self) -> None:
        """Disconnect from the service; notices already shown stay on screen."""
        await self._drop(missing=False)

    async def _ready(self) -> DesktopNotifier | None:
        loop = asyncio.get_running_loop()
        if self._notifier is not None and self._loop is not loop:
            await self._drop(missing=False)
        if self._notifier is not None:
            return self._notifier
        if self._missing_since is not None and self._clock() - self._missing_since < RETRY_AFTER:
            return None
        try:
            # Building it loads the platform backend, which can fail too (a bundle missing it).
            notifier = DesktopNotifier(
                app_name=self.app_name, app_icon=Icon(path=self.app_icon) if self.app_icon else None)
        except Exception as exc:  # noqa: BLE001 - whatever the backend's import raises
            await self._missing(_describe(exc))
            return None
        self._notifier, self._loop = notifier, loop
        try:
            # Connects and asks the service what it supports; the library does not catch here,
            # so this is where a missing bus or a missing service shows.
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await notifier.get_capabilities()
        except Exception as exc:  # noqa: BLE001 - no bus, nobody owns the name, or no answer in time
            await self._missing(_describe(exc))
            return None
        if self._told_missing:
            log.info("A desktop notification service is available again.")
        self._missing_since, self._told_missing = None, False
        return notifier

    async def _missing(self, why: str) -> None:
        if not self._told_missing:
            # Once per outage: a desktop without a notification service is normal, not an error.
            log.info("No desktop notification service answered (%s); kubetray shows its messages "
                     "in the tray instead.", why)
            self._told_missing = True
        await self._drop(missing=True)

    async def _drop(self, missing: bool) -> None:
        notifier, loop = self._notifier, self._loop
        self._notifier = self._loop = None
        if missing:
            self._missing_since = self._clock()
        if notifier is not None and loop is not None:
            await _disconnect(notifier, loop)

    def _clicked(self, notice: Notice) -> None:
        if self.on_clicked is None:
            return
        try:
            self.on_clicked(notice)
        except Exception:
            log.exception("handling a click on the notice %r failed", notice.title)


async def _disconnect(notifier: DesktopNotifier, loop: asyncio.AbstractEventLoop) -> None:
    # desktop-notifier has no public close; its D-Bus backend keeps the connection as `bus`.
    # Without this each retry after a missing service would leave a connection open.
    bus: Any = getattr(getattr(notifier, "_backend", None), "bus", None)
    if bus is None:
        return
    try:
        if loop is asyncio.get_running_loop():
            bus.disconnect()
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await bus.wait_for_disconnect()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(bus.disconnect)  # that loop finishes the job itself
        else:
            # Its loop is gone and cannot finish the disconnect: shut the socket down and free
            # the descriptor now rather than at garbage collection.
            bus.disconnect()
            sock = getattr(bus, "_sock", None)
            if sock is not None:
                sock.close()
    except Exception as exc:  # noqa: BLE001 - the peer hung up first, or the loop closed meanwhile
        log.debug("closing the notification connection: %r", exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {ANSWER_TIMEOUT:g} s"
    return str(exc) or type(exc).__name__
