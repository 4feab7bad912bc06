"""Byte pumping between one accepted local connection and its port-forward WebSocket.

Back-pressure runs both ways: a local read waits until the WebSocket's write buffer drained, and
the next message from the pod is taken only after the local socket drained, so a slow side slows
the other. What one connection can hold in memory is then the websockets library's receive queue
(`max_queue` messages, each at most the `max_size` v4dial.py dials with) plus one READ_SIZE chunk.

v4.channel.k8s.io has no half-close, and from our side a peer that shut down its writing half
looks exactly like one that closed the socket. So after the local side's EOF kubetray keeps
delivering the pod's answer while it flows, and ends the connection once the pod has been silent
for HALF_CLOSE_LINGER seconds (socat's -t does the same), rather than holding closed connections,
and a connection to the pod, forever. Silence is counted only while kubetray waits for the pod:
time spent handing bytes to a slow local reader is not the pod being silent.

The relay closes the WebSocket, never the local socket: when the pod turned out to be gone before
it answered, the caller may carry the same local connection, and the bytes already read from it
(`RelayResult.unanswered`), to another pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from trayapp.engine.aio import deadline
from trayapp.engine.forward.wire import ClientChannels, DataReceived, ErrorReceived
from trayapp.errors import WireError

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # one WebSocket message per local read, at most
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


class _Progress:
    """Shared between the two pumps of one relay."""

    def __init__(self, first: bytes) -> None:
        self.sent = 0
        self.received = 0
        self.error: str | None = None
        self.unanswered: bytearray | None = bytearray(first)
        # When the downstream pump began waiting for the pod's next message; None while it is
        # handing a message to the local socket.
        self.waiting_since: float | None = None

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
    ws: ClientConnection,
    port: int,
    linger: float = HALF_CLOSE_LINGER,
    first: bytes = b"",
) -> RelayResult:
    """Pump bytes until either side ends. `first` is sent to the pod before anything read now
    (bytes an earlier attempt read from this local connection)."""
    loop = asyncio.get_running_loop()
    channels = ClientChannels([port])
    progress = _Progress(first)

    async def upstream() -> None:
        if first:
            progress.sent += len(first)
            await ws.send(channels.encode_data(first))
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return  # the local side is done sending; the answer may still be on its way
            progress.note_sent(data)
            await ws.send(channels.encode_data(data))

    async def downstream() -> None:
        try:
            while True:
                progress.waiting_since = loop.time()
                message = await ws.recv()
                progress.waiting_since = None
                for event in channels.receive(message):
                    if isinstance(event, DataReceived):
                        progress.received += len(event.data)
                        progress.unanswered = None
                        writer.write(event.data)
                        await writer.drain()
                    elif isinstance(event, ErrorReceived):
                        progress.error = event.text
                        return
        except WireError as exc:
            progress.error = exc.message
        except ConnectionClosed:
            pass
        finally:
            progress.waiting_since = None

    up = asyncio.create_task(upstream(), name="relay:up")
    down = asyncio.create_task(downstream(), name="relay:down")
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and up.exception() is None:
            # Local EOF: deliver the rest of the pod's answer, until it ends or falls silent.
            while not down.done():
                since = progress.waiting_since
                # While a slow reader takes the bytes, look again a linger later.
                remaining = linger if since is None else since + linger - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait({down}, timeout=remaining)
    except (ConnectionError, OSError) as exc:
        log.debug("relay ended: %s", exc)
    finally:
        for task in (up, down):
            task.cancel()
        results = await asyncio.gather(up, down, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(
                result, (asyncio.CancelledError, ConnectionError, OSError, ConnectionClosed)
            ):
                log.debug("relay task failed: %r", result)
        with contextlib.suppress(Exception):
            await ws.close()
    unanswered = bytes(progress.unanswered) if progress.unanswered is not None else None
    return RelayResult(progress.sent, progress.received, progress.error, unanswered)


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
