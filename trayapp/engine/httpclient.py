"""A small asyncio HTTP/1.1 client for the API server's list and watch calls, on h11.

One request per connection: lists are short and watches hold their connection for minutes, so
pooling would buy little. The connection itself (proxy, keepalive, TLS) comes from connect.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import h11

from trayapp.engine.connect import open_stream  # noqa: F401 - kube.py opens its streams from here
from trayapp.errors import ApiUnreachable

_READ_SIZE = 65536


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]


class HttpStream:
    """One request and its streamed response body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.CLIENT)

    async def send(self, method: str, target: str, headers: list[tuple[str, str]]) -> Response:
        self._writer.write(self._conn.send(h11.Request(method=method, target=target, headers=headers)))
        self._writer.write(self._conn.send(h11.EndOfMessage()))
        await self._writer.drain()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return Response(
                    event.status_code,
                    {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
                )
            if isinstance(event, h11.InformationalResponse):
                continue
            raise ApiUnreachable("The API server closed the connection before answering.")

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ApiUnreachable(f"The API server sent a malformed HTTP response: {exc}.") from exc
            if event is h11.NEED_DATA:
                try:
                    data = await self._reader.read(_READ_SIZE)
                except (OSError, ConnectionError) as exc:
                    raise ApiUnreachable(f"The connection to the API server broke: {exc}.") from exc
                self._conn.receive_data(data)
                continue
            return event

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.body_chunks()])

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split into lines, as a watch streams one JSON event per line."""
        pending = b""
        async for chunk in self.body_chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    def close(self) -> None:
        self._writer.close()


def status_message(body: bytes, fallback: str) -> str:
    """The `message` of a Kubernetes Status body, or the fallback."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return fallback
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return fallback
