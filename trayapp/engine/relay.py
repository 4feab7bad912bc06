"""Byte pumping between one accepted local connection and its port-forward WebSocket.

Both directions are bounded: a local read waits for the WebSocket's write buffer to drain, and a
WebSocket message is written locally only after the local socket drained, so a slow side slows
the other instead of filling memory.

v4.channel.k8s.io has no half-close, and from our side a peer that shut down its writing half
looks exactly like one that closed the socket. So after the local side's EOF kubetray keeps
delivering the pod's answer while it flows, and ends the connection once the pod has been silent
for HALF_CLOSE_LINGER seconds (socat's -t does the same), rather than holding closed connections,
and a connection to the pod, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from trayapp.engine.wire import ClientChannels, DataReceived, ErrorReceived
from trayapp.errors import WireError

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # one WebSocket message per local read, at most
HALF_CLOSE_LINGER = 2.0  # seconds of pod silence after the local EOF before the connection ends


@dataclass(frozen=True)
class RelayResult:
    sent: int
    received: int
    error: str | None = None  # error-channel text or a protocol problem, for the tunnel to report


async def relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ws: ClientConnection,
    port: int,
    linger: float = HALF_CLOSE_LINGER,
) -> RelayResult:
    channels = ClientChannels([port])
    counts = {"sent": 0, "received": 0}
    error: list[str] = []

    async def upstream() -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return  # the local side is done sending; the answer may still be on its way
            counts["sent"] += len(data)
            await ws.send(channels.encode_data(data))

    async def downstream() -> None:
        try:
            async for message in ws:
                for event in channels.receive(message):
                    if isinstance(event, DataReceived):
                        counts["received"] += len(event.data)
                        writer.write(event.data)
                        await writer.drain()
                    elif isinstance(event, ErrorReceived):
                        error.append(event.text)
                        return
        except WireError as exc:
            error.append(exc.message)
        except ConnectionClosed:
            pass

    up = asyncio.create_task(upstream(), name="relay:up")
    down = asyncio.create_task(downstream(), name="relay:down")
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and up.exception() is None:
            # Local EOF: deliver the rest of the pod's answer, until it ends or falls silent.
            while not down.done():
                before = counts["received"]
                await asyncio.wait({down}, timeout=linger)
                if not down.done() and counts["received"] == before:
                    break
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
        await _close(ws, writer)
    return RelayResult(counts["sent"], counts["received"], error[0] if error else None)


async def _close(ws: ClientConnection, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    writer.close()
    with contextlib.suppress(Exception):
        await ws.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
