"""Real proxies on 127.0.0.1 for the tests: an HTTP CONNECT proxy (also over TLS, as an https://
proxy) and a SOCKS5 proxy. Each counts the tunnels it carried and remembers what went through.

`hosts` maps names only the proxy knows to addresses: a server named `kube.invalid` can be
reached through the proxy and never directly, which proves a connection took the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Tunnel:
    target: str  # host:port as the client asked for it
    first_line: bytes | None = None  # the client's first line, when it spoke plain HTTP


@dataclass
class _Base:
    hosts: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    password: str | None = None
    tunnels: list[Tunnel] = field(default_factory=list)
    refused: int = 0  # clients turned away (bad credentials, unknown host)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def carried(self) -> int:
        return len(self.tunnels)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _listen(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._track, "127.0.0.1", 0, ssl=tls)

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): asyncio's server callback would log a cancelled handler as an error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _upstream(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(self.hosts.get(host, host), port)
        except OSError:
            return None

    async def _splice(self, tunnel: Tunnel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        self.tunnels.append(tunnel)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, sniff: bool) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await src.read(65536):
                    if sniff:
                        sniff = False
                        if data[:4] in (b"GET ", b"POST"):
                            tunnel.first_line = data.split(b"\r\n", 1)[0]
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()
                else:  # TLS has no half-close: end the whole connection
                    dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            up_writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@dataclass
class ConnectProxy(_Base):
    """An HTTP proxy that only tunnels (CONNECT), with Basic auth when user is set."""

    tls: ssl.SSLContext | None = None  # set: an https:// proxy
    status: bytes | None = None  # set: answer every CONNECT with this status line instead

    async def start(self) -> str:
        await self._listen(self.tls)
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{'https' if self.tls else 'http'}://{auth}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request, *header_lines = head.decode("latin-1").split("\r\n")
        method, authority, _ = request.split(" ", 2)
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if self.status is not None:
            self.refused += 1
            writer.write(self.status + b"\r\nContent-Length: 0\r\n\r\n")
            return
        if self.user is not None:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.refused += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                return
        host, _, port = authority.rpartition(":")
        upstream = await self._upstream(host.strip("[]"), int(port))
        if upstream is None:
            self.refused += 1
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await self._splice(Tunnel(authority), reader, writer, *upstream)


@dataclass
class Socks5Proxy(_Base):
    """A SOCKS5 proxy (RFC 1928, CONNECT only) with user/password auth (RFC 1929) when user is set."""

    requested_hosts: list[str] = field(default_factory=list)  # as the client sent them

    async def start(self) -> str:
        await self._listen()
        return f"socks5://127.0.0.1:{self.port}"

    def url(self, user: str | None = None, password: str | None = None, scheme: str = "socks5") -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            return
        wanted = 2 if self.user is not None else 0
        if wanted not in methods:
            self.refused += 1
            writer.write(b"\x05\xff")
            return
        writer.write(bytes([5, wanted]))
        if wanted == 2:
            _, length = await reader.readexactly(2)
            user = (await reader.readexactly(length)).decode()
            (length,) = await reader.readexactly(1)
            password = (await reader.readexactly(length)).decode()
            if (user, password) != (self.user, self.password):
                self.refused += 1
                writer.write(b"\x01\x01")
                return
            writer.write(b"\x01\x00")
        _, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.requested_hosts.append(host)
        upstream = await self._upstream(host, port) if command == 1 else None
        if upstream is None:
            self.refused += 1
            writer.write(b"\x05\x05\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
            return
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")
        await self._splice(Tunnel(f"{host}:{port}"), reader, writer, *upstream)
