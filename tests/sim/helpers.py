"""A tiny HTTP client over asyncio streams + h11 for talking to the simulator in async tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import h11


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def _next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                self.conn.receive_data(data)
                continue
            return event

    async def send(self, method: str, path: str, headers: dict[str, str] | None = None,
                   body: bytes = b"") -> h11.Response:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        hs = [("Host", "127.0.0.1"), *(headers or {}).items()]
        if body:
            hs.append(("Content-Length", str(len(body))))
        self.writer.write(self.conn.send(h11.Request(method=method, target=path, headers=hs)))
        if body:
            self.writer.write(self.conn.send(h11.Data(data=body)))
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        event = await self._next()
        assert isinstance(event, h11.Response), event
        return event

    async def body(self) -> bytes:
        out = bytearray()
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                out += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(out)
            else:
                raise AssertionError(event)

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        """JSON lines of a streaming (watch) body, until the response ends."""
        buf = b""
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                buf += event.data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    yield json.loads(line)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise AssertionError(event)


async def get_json(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    client = await RawClient.connect(port)
    try:
        response = await client.send("GET", path, headers)
        return response.status_code, json.loads(await client.body())
    finally:
        await client.close()
