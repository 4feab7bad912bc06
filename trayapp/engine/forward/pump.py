"""Byte pumping between one accepted local connection and its connection to the pod (a PodConnection).

Back-pressure runs both ways: a local read waits until the transport took the previous chunk
(`PodConnection.send` returns once it can take more), and the pod's next bytes are taken only
after the local socket drained, so a slow side slows the other. What one connection can hold in
memory is then what its transport buffers (for v4, the websockets library's receive queue) plus
one READ_SIZE chunk.

Half-close depends on the transport. SPDY has a FIN per stream (`half_close` True): the local
side's EOF becomes the pod's EOF and the pod's EOF becomes a shutdown of the local socket's
writing half, while the other direction goes on, until both directions ended.

v4.channel.k8s.io has none, and from our side a peer that shut down its writing half looks
exactly like one that closed the socket. So after the local side's EOF kubetray keeps delivering
the pod's answer while it flows, and ends the connection once the pod has been silent for
HALF_CLOSE_LINGER seconds (socat's -t does the same), rather than holding closed connections,
and a connection to the pod, forever. Silence is counted only while kubetray waits for the pod:
time spent handing bytes to a slow local reader is not the pod being silent.

The relay closes the pod connection, never the local socket: when the pod turned out to be gone
before it answered, the caller may carry the same local connection, and the bytes already read
from it (`RelayResult.unanswered`), to another pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from trayapp.engine.aio import deadline
from trayapp.engine.forward.transport import PodConnection, PodRefused
from trayapp.errors import WireError

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # one transport message per local read, at most
HALF_CLOSE_LINGER = 2.0  # seconds of pod silence after the local EOF before the connection ends
# Bytes sent before the pod's first byte are kept (up to this much) so that a connection whose
# pod turned out to be gone can be replayed to its replacement.
REPLAY_LIMIT = 1024 * 1024
LOCAL_FLUSH_TIMEOUT = 5.0  # seconds a closing local connection may take to drain what is left


@dataclass(frozen=True)
class RelayResult:
    sent: int
    received: int
    error: str | None = None  # error-channel text or a protocol problem, for the tunnel to report
    # What the local side sent while the pod had sent nothing back; None once the pod answered
    # or the bytes passed REPLAY_LIMIT.
    unanswered: bytes | None = b""
    # The transport knows none of it reached the pod (PodRefused.never_reached): safe to send again.
    never_reached: bool = False


class _Progress:
    """Shared between the two pumps of one relay."""

    def __init__(self, first: bytes) -> None:
        self.sent = 0
        self.received = 0
        self.error: str | None = None
        self.never_reached = False
        self.unanswered: bytearray | None = bytearray(first)
        # When the downstream pump began waiting for the pod's next message; None while it is
        # handing a message to the local socket.
        self.waiting_since: float | None = None

    def note_error(self, exc: WireError) -> None:
        if self.error is None:
            self.error = exc.message
            self.never_reached = isinstance(exc, PodRefused) and exc.never_reached

    def note_sent(self, data: bytes) -> None:
        self.sent += len(data)
        if self.unanswered is not None:
            if len(self.unanswered) + len(data) > REPLAY_LIMIT:
                self.unanswered = None
            else:
                self.unanswered += data


async def relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pod: PodConnection,
    linger: float = HALF_CLOSE_LINGER,
    first: bytes = b"",
) -> RelayResult:
    """Pump bytes until both directions ended (or, without half-close, either side ended).
    `first` is sent to the pod before anything read now (bytes an earlier attempt read from this
    local connection)."""
    loop = asyncio.get_running_loop()
    progress = _Progress(first)
    half_close = pod.half_close

    async def upstream() -> None:
        if first:
            progress.sent += len(first)
            await pod.send(first)
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                # The local side is done sending; the answer may still be on its way.
                await pod.send_eof()
                return
            progress.note_sent(data)
            await pod.send(data)

    async def downstream() -> None:
        try:
            while True:
                progress.waiting_since = loop.time()
                data = await pod.receive()
                progress.waiting_since = None
                if not data:
                    if half_close and writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()  # the pod is done; the client may still be sending
                    return
                progress.received += len(data)
                progress.unanswered = None
                writer.write(data)
                await writer.drain()
        except WireError as exc:  # PodRefused (the kubelet's text) or a protocol problem
            progress.note_error(exc)
        finally:
            progress.waiting_since = None

    up = asyncio.create_task(upstream(), name="relay:up")
    down = asyncio.create_task(downstream(), name="relay:down")
    try:
        if half_close:
            await _both_directions(up, down, progress)
        else:
            await _until_silent(up, down, progress, linger)
    except (ConnectionError, OSError) as exc:
        log.debug("relay ended: %s", exc)
    finally:
        for task in (up, down):
            task.cancel()
        results = await asyncio.gather(up, down, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, (asyncio.CancelledError, ConnectionError, OSError, WireError)
            ):
                log.debug("relay task failed: %r", result)
        await pod.close()
    unanswered = bytes(progress.unanswered) if progress.unanswered is not None else None
    return RelayResult(progress.sent, progress.received, progress.error, unanswered, progress.never_reached)


async def _both_directions(up: asyncio.Task[None], down: asyncio.Task[None], progress: _Progress) -> None:
    """Half-close: each direction ends by itself; an error in either ends both."""
    pending = {up, down}
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, WireError):
                progress.note_error(error)  # the pod refused what we sent (a reset stream)
            if error is not None or progress.error is not None:
                return


async def _until_silent(up: asyncio.Task[None], down: asyncio.Task[None], progress: _Progress, linger: float) -> None:
    """No half-close: after the local EOF, deliver the rest of the pod's answer until it ends or
    falls silent for `linger` seconds."""
    loop = asyncio.get_running_loop()
    done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    if up in done and up.exception() is None:
        while not down.done():
            since = progress.waiting_since
            # While a slow reader takes the bytes, look again a linger later.
            remaining = linger if since is None else since + linger - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait({down}, timeout=remaining)


async def close_local(writer: asyncio.StreamWriter, flush_timeout: float = LOCAL_FLUSH_TIMEOUT) -> None:
    """End the local connection: EOF first, so a half-closed client reads to the end; a client
    that does not read what is still buffered for it loses it after `flush_timeout` seconds,
    rather than holding the tunnel (and kubetray's stop) forever."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    writer.close()
    try:
        async with deadline(flush_timeout):
            with contextlib.suppress(OSError):  # the client reset it: closed either way
                await writer.wait_closed()
    except (TimeoutError, asyncio.CancelledError) as exc:
        writer.transport.abort()
        if isinstance(exc, asyncio.CancelledError):
            raise
