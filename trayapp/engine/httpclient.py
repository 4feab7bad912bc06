"""A small asyncio HTTP/1.1 client for the API server's list and watch calls, on h11.

One request per connection: lists are short and watches hold their connection for minutes, so
pooling would buy little. TLS, SNI and an HTTP CONNECT proxy are set up here from ClusterAccess.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import h11

from trayapp.engine.aio import deadline
from trayapp.engine.auth import ClusterAccess
from trayapp.errors import ApiUnreachable

_READ_SIZE = 65536


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]


async def open_stream(
    access: ClusterAccess, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (through the proxy when there is one), then TLS when the server is https."""
    try:
        async with deadline(timeout):
            return await _open_stream(access)
    except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
        raise ApiUnreachable(f"kubetray could not reach the API server {access.server} ({reason}).") from exc


async def _open_stream(access: ClusterAccess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls = access.ssl_context if access.tls else None
    sni = access.server_hostname or access.host
    if not access.proxy:
        return await asyncio.open_connection(
            access.host, access.port, ssl=tls, server_hostname=sni if tls else None, limit=_READ_SIZE * 4
        )
    proxy = urlsplit(access.proxy)
    shown = f"{proxy.hostname}:{proxy.port or 80}"  # never the user:password part of the URL
    if proxy.scheme not in ("http", ""):
        raise ApiUnreachable(
            f"The kubeconfig's proxy-url {proxy.scheme}://{shown} uses {proxy.scheme}://, which kubetray does not speak yet; "
            "use an http:// proxy."
        )
    reader, writer = await asyncio.open_connection(proxy.hostname, proxy.port or 80, limit=_READ_SIZE * 4)
    try:
        return await _through_proxy(reader, writer, access, proxy, shown, tls, sni)
    except BaseException:
        writer.close()
        raise


async def _through_proxy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, access: ClusterAccess, proxy: SplitResult,
    shown: str, tls: ssl.SSLContext | None, sni: str,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    authority = f"{access.host}:{access.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username:
        pair = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(pair).decode())
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        writer.close()
        raise ApiUnreachable(f"The proxy {shown} refused to connect to {authority}: {head.splitlines()[0]!r}.")
    if tls:
        await writer.start_tls(tls, server_hostname=sni)
    return reader, writer


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
