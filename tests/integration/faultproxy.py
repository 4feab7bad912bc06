"""A TCP proxy in front of the simulator's API server that the tests own and misbehave with.

It passes every connection through byte for byte, except that it can answer the next port-forward
dials itself with `503 Service Unavailable` (an API server shedding load, or a proxy in front of it
restarting). The engine sees a real HTTP answer on a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.busy_dials = 0  # answer this many of the next port-forward dials with 503
        self.retry_after: int | None = None
        self.answered_busy = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/portforward" in head.split(b"\r\n", 1)[0] and self.busy_dials > 0:
                self.busy_dials -= 1
                self.answered_busy += 1
                self._busy(writer)
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head)
            pumps = [asyncio.ensure_future(_pump(reader, up_writer)), asyncio.ensure_future(_pump(up_reader, writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    def _busy(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                           "reason": "ServiceUnavailable", "message": "the server is currently unable to "
                           "handle the request"}).encode()
        extra = f"Retry-After: {self.retry_after}\r\n" if self.retry_after is not None else ""
        writer.write(f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode() + body)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
