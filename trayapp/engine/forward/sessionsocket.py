"""The connection under one SPDY port-forward session, as an asyncio protocol.

Before the upgrade it reads the API server's answer (the head, and an error's body); after it,
every byte goes straight to the session's callbacks as it arrives. A StreamReader would copy each
byte into its buffer and out again, and the session's frame decoder cuts frames out of what it is
given anyway: on a download that was a fifth of kubetray's CPU per GiB. Back-pressure is the
transport's own: `pause_reading` while a connection's buffer is full, and `drain` waits while the
socket's write buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

MAX_PENDING = 256 * 1024  # bytes held before the session attaches: a head and an error body
READ_BUFFER = 256 * 1024  # what one read may bring


class SessionSink(Protocol):
    def data_received(self, data: memoryview) -> None:
        """`data` is valid during the call only: what is kept must be copied."""
        ...

    def eof_received(self) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class SessionSocket(asyncio.BufferedProtocol):
    """A buffered protocol: TLS decrypts (and a plain socket receives) straight into one buffer
    that lives as long as the session, rather than into a new bytes object per read that is then
    joined with the others. The sink gets a view of it, valid only during its call (the SPDY
    decoder copies each frame out, and keeps a cut frame in its own buffer)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._view = memoryview(bytearray(READ_BUFFER))
        self._pending = bytearray()  # before `attach`: what came and was not read yet
        self._eof = False
        self._lost: Exception | None = None
        self._arrived: asyncio.Event = asyncio.Event()
        self._sink: SessionSink | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        with self._view[:nbytes] as data:
            self._received(data)

    def _received(self, data: memoryview) -> None:
        if self._sink is not None:
            self._sink.data_received(data)
            return
        self._pending += data
        self._arrived.set()
        if len(self._pending) > MAX_PENDING and self._transport is not None:
            self._transport.pause_reading()  # nobody reads this much before an upgrade

    def eof_received(self) -> bool | None:
        self._eof = True
        self._arrived.set()
        if self._sink is not None:
            self._sink.eof_received()
        return None  # the transport closes itself

    @property
    def _gone(self) -> bool:
        return self._closed.done()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc
        self._eof = True
        self._arrived.set()
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake_drainers()
        if self._sink is not None:
            self._sink.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- before the upgrade ----------------------------------------------------------------
    async def read_until(self, marker: bytes, limit: int) -> bytes:
        """Everything up to and including `marker`. ValueError past `limit` bytes without it,
        ConnectionError when the connection ends first."""
        while True:
            end = self._pending.find(marker)
            if end >= 0:
                return self._take(end + len(marker))
            if len(self._pending) > limit:
                raise ValueError(f"no {marker!r} within {limit} bytes")
            await self._more()

    async def read_exactly(self, size: int) -> bytes:
        while len(self._pending) < size:
            await self._more()
        return self._take(size)

    async def read_to_end(self, limit: int) -> bytes:
        """Up to `limit` bytes, until the server closes or `limit` is reached."""
        while len(self._pending) < limit and not self._eof:
            self._arrived.clear()
            await self._arrived.wait()
        return self._take(min(limit, len(self._pending)))

    async def _more(self) -> None:
        if self._eof:
            raise ConnectionResetError("The API server closed the connection.")
        self._arrived.clear()
        await self._arrived.wait()

    def _take(self, size: int) -> bytes:
        taken = bytes(self._pending[:size])
        del self._pending[:size]
        if self._transport is not None and len(self._pending) <= MAX_PENDING:
            self._transport.resume_reading()
        return taken

    # -- after the upgrade -----------------------------------------------------------------
    def attach(self, sink: SessionSink) -> None:
        """From now on bytes go to `sink`; what came with the answer's head goes next loop turn."""
        self._sink = sink
        left, self._pending = bytes(self._pending), bytearray()
        eof, gone, lost = self._eof, self._gone, self._lost

        def catch_up() -> None:
            if left:
                with memoryview(left) as view:
                    sink.data_received(view)
            if gone:
                sink.connection_lost(lost)
            elif eof:
                sink.eof_received()

        if left or eof:
            asyncio.get_running_loop().call_soon(catch_up)
        if self._transport is not None and not self._gone:
            self._transport.resume_reading()

    def write(self, data: bytes) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, pieces: list[bytes | memoryview]) -> None:
        if pieces and self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(pieces)

    async def drain(self) -> None:
        """Returns once the socket takes more; ConnectionResetError once the connection is gone."""
        if self._gone:
            raise ConnectionResetError("The connection to the API server is gone.")
        if not self._write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._gone:
            raise ConnectionResetError("The connection to the API server is gone.")

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._gone:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._gone:
            self._transport.resume_reading()

    def write_buffer_size(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def extra_info(self, name: str) -> object:
        return None if self._transport is None else self._transport.get_extra_info(name)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
