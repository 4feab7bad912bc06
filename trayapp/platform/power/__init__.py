"""Tell the engine when the network may have changed: a wake from sleep or a new network path.

After a laptop sleeps or moves to another network, every open connection may be silently dead
(no FIN, no reset), so the caller restarts its watches and sessions at once instead of waiting
for them to time out. `NetworkWatcher.changes()` yields one `Change` per burst of the OS's
signals: NetworkManager announces several state changes within a second of a wake, and they
become one restart. The burst window is fixed from its first signal, so a wake acts within
`WINDOW` seconds however many signals follow it. Going to sleep restarts nothing (there is no
network to restart on); it is remembered, so the wake can say how long the machine slept.

Where the signals come from, one small module per OS, each imported only on its own OS:
- Linux (`linux.py`): logind's PrepareForSleep and NetworkManager's state and primary
  connection, over the system D-Bus with dbus-fast. Tested for real against a private
  dbus-daemon standing in for the system bus (tests/platform/test_power.py,
  tests/integration/test_power_wake.py).
- macOS (`macos.py`): NSWorkspace's wake notification and SystemConfiguration's dynamic store
  (the global IPv4/IPv6 state), through pyobjc. Written and reviewed, not run here.
- Windows (`windows.py`): the suspend/resume callback of powrprof and iphlpapi's unicast
  address notifications, through ctypes. Written and reviewed, not run here.

With no source (no system bus, a missing library, another OS) the watcher says so once in the log
and yields nothing: the engine's own liveness checks still find dead connections, only later.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

WINDOW = 0.5  # seconds a burst of signals is gathered into one change


class Reason(enum.Enum):
    """What the OS said; the value is the start of a log line."""

    WOKE = "the computer woke from sleep"
    SLEEPING = "the computer is going to sleep"
    NETWORK = "the network changed"


@dataclass(frozen=True)
class Change:
    """One burst of signals: its weightiest reason, and how long the machine slept, if known."""

    reason: Reason
    slept: float | None = None  # seconds between going to sleep and waking

    @property
    def text(self) -> str:
        if self.reason is Reason.WOKE and self.slept is not None:
            return f"{self.reason.value} after {_duration(self.slept)}"
        return self.reason.value


Emit = Callable[[Reason], None]


class SourceUnavailable(Exception):
    """This machine offers no such signals; the message says why, for the log."""


class Source(Protocol):
    """One OS's signals. `emit` must be called on the event loop that called `start`."""

    name: str

    async def start(self, emit: Emit) -> None:
        """Begin listening; SourceUnavailable if there is nothing to listen to."""

    async def aclose(self) -> None:
        """Stop listening; never blocks for long, even when the OS service hangs."""


def default_source() -> Source | None:
    """The source for this OS, or None where kubetray has none."""
    if sys.platform.startswith("linux"):
        from trayapp.platform.power.linux import LinuxSource

        return LinuxSource()
    if sys.platform == "darwin":
        from trayapp.platform.power.macos import MacSource

        return MacSource()
    if sys.platform == "win32":
        from trayapp.platform.power.windows import WindowsSource

        return WindowsSource()
    return None


class NetworkWatcher:
    """Yields a `Change` for each burst of sleep, wake and network signals from `source`."""

    def __init__(self, source: Source | None = None, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source if source is not None else default_source()
        self._window = window
        self._clock = clock
        self._slept_at: float | None = None
        self._burst: set[Reason] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._ready: asyncio.Queue[Change] = asyncio.Queue()
        self.listening = asyncio.Event()  # set once the source listens, or is known to be missing

    async def changes(self) -> AsyncIterator[Change]:
        """Each change as it happens, until cancelled; nothing at all without a source."""
        source = self._source
        if source is None:
            log.info("kubetray has no way to hear about sleep and network changes on %s; "
                     "its own checks still notice a dead connection.", sys.platform)
        else:
            try:
                await source.start(self._signal)
            except SourceUnavailable as exc:
                log.info("kubetray will not hear about sleep and network changes: %s "
                         "Its own checks still notice a dead connection.", exc)
                source = None
        self.listening.set()
        try:
            while True:
                yield await self._ready.get()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if source is not None:
                await source.aclose()

    def _signal(self, reason: Reason) -> None:
        if reason is Reason.SLEEPING:
            self._slept_at = self._clock()
            log.info("%s; kubetray restarts its watches and connections when it wakes.",
                     reason.value)
            return
        self._burst.add(reason)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush)

    def _flush(self) -> None:
        self._timer = None
        burst, self._burst = self._burst, set()
        if Reason.WOKE in burst:
            slept_at, self._slept_at = self._slept_at, None
            slept = None if slept_at is None else self._clock() - slept_at
            self._ready.put_nowait(Change(Reason.WOKE, slept))
        elif burst:
            self._ready.put_nowait(Change(Reason.NETWORK))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
