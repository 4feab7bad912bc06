"""One tunnel's traffic counters: connections open and accepted, bytes each way.

The forwarder hands each accepted connection's reader and writer to `TunnelCounter.track`, which
counts the connection as open and returns stand-ins that count what passes through them, whatever
the byte pump does with them. The counter does not publish on every byte: a change arms one timer
(a `loop.call_later`) when none is armed, and when that fires it publishes a `stats` event with the
totals. A busy tunnel so publishes once a second, a tunnel that went quiet publishes once more
after its last byte, and for a tunnel nothing moves through, nothing runs at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, cast

from trayapp.model import Event, EventKind, TunnelStats

STATS_INTERVAL = 1.0  # seconds: a tunnel's stats are published at most this often


class TunnelCounter:
    def __init__(self, context: str, tunnel_id: str, publish: Callable[[Event], None],
                 interval: float = STATS_INTERVAL) -> None:
        self._context = context
        self._tunnel_id = tunnel_id
        self._publish = publish
        self._interval = interval
        self._open = 0
        self._connections = 0
        self._in = 0
        self._out = 0
        self._published = TunnelStats()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    @property
    def value(self) -> TunnelStats:
        return TunnelStats(self._open, self._connections, self._in, self._out)

    @property
    def armed(self) -> bool:
        """Whether a publication is due: False once nothing moved since the last one."""
        return self._timer is not None

    def track(self, reader: asyncio.StreamReader,
              writer: asyncio.StreamWriter) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Count one accepted connection as open (until `closed`) and the bytes it carries."""
        self._open += 1
        self._connections += 1
        self._changed()
        # Stand-ins that pass every other call through: typed as what they stand for.
        return (cast(asyncio.StreamReader, _CountingReader(reader, self._read)),
                cast(asyncio.StreamWriter, _CountingWriter(writer, self._written)))

    def closed(self) -> None:
        self._open = max(0, self._open - 1)
        self._changed()

    def stop(self) -> None:
        """The tunnel ended: no more timers for it."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read(self, count: int) -> None:  # from a local client, on its way to the pod
        if count:
            self._out += count
            self._changed()

    def _written(self, count: int) -> None:  # from the pod, on its way to a local client
        if count:
            self._in += count
            self._changed()

    def _changed(self) -> None:
        if self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        value = self.value
        if value == self._published:
            return
        self._published = value
        self._publish(Event(EventKind.STATS, "", context=self._context, tunnel_id=self._tunnel_id, stats=value))


class _CountingReader:
    def __init__(self, inner: asyncio.StreamReader, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count

    async def read(self, n: int = -1) -> bytes:
        data = await self._inner.read(n)
        self._count(len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self._inner.readexactly(n)
        self._count(len(data))
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        data = await self._inner.readuntil(separator)
        self._count(len(data))
        return data

    async def readline(self) -> bytes:
        data = await self._inner.readline()
        self._count(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingWriter:
    def __init__(self, inner: asyncio.StreamWriter, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)
        self._count(len(data))

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in data:
            self.write(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
