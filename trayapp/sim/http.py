"""The simulator's HTTP/1.1 server: asyncio transports with h11 parsing, one connection object per
socket, plain and chunked (streaming) responses, and hand-over of the raw socket after an Upgrade.

It knows nothing about Kubernetes: a `Handler` gets each complete request and answers through the
`HttpConnection`. Streaming answers (watches) and upgraded streams (port-forward WebSockets) keep
the connection; `drop_connections` cuts them all, as an API server restart would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import h11

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower() and "upgrade" in self.headers


class Handler(Protocol):
    def handle(self, request: Request, conn: HttpConnection) -> None: ...


class TakeOver(Protocol):
    """What owns the socket after an Upgrade: raw bytes in, flow control and loss callbacks."""

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def connection_lost(self) -> None: ...


def _reason(code: int) -> bytes:
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return b""


class HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self.transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._takeover: TakeOver | None = None
        self._streaming = False
        self._closers: list[Callable[[], None]] = []
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._takeover is not None:
            self._takeover.data_received(data)
            return
        self._h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if self._takeover is not None:
            self._takeover.eof_received()
            return True
        self._h11.receive_data(b"")
        self._process()
        return None

    def pause_writing(self) -> None:
        if self._takeover is not None:
            self._takeover.pause_writing()

    def resume_writing(self) -> None:
        if self._takeover is not None:
            self._takeover.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        if self._takeover is not None:
            self._takeover.connection_lost()
        for closer in self._closers:
            closer()
        self._closers.clear()

    # -- request parsing -----------------------------------------------------------------
    def _process(self) -> None:
        while not self.closed and self._takeover is None and not self._streaming:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, str(exc))
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body.clear()
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return

    def _dispatch(self) -> None:
        assert self._request is not None
        raw = self._request
        target = raw.target.decode("latin-1")
        split = urlsplit(target)
        headers: dict[str, str] = {}
        for name, value in raw.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(raw.method.decode("ascii"), target, split.path,
                          parse_qs(split.query, keep_blank_values=True), headers, bytes(self._body))
        try:
            self._server.handler.handle(request, self)
        except Exception:
            log.exception("simulator handler failed on %s %s", request.method, target)
            if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self.respond_json(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "code": 500, "reason": "InternalError",
                                        "message": "the simulator failed; see its log"})
        self._maybe_next_cycle()

    def _fail(self, status: int, message: str) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                self.respond(status, message.encode(), "text/plain", close=True)
            except h11.LocalProtocolError:
                pass
        self.close()

    def _maybe_next_cycle(self) -> None:
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            # Pipelined requests may already sit in h11's buffer.
            asyncio.get_running_loop().call_soon(self._process)
        elif self._h11.our_state is h11.MUST_CLOSE:
            self.close()

    # -- answering -----------------------------------------------------------------------
    def _write(self, event: Any) -> None:
        data = self._h11.send(event)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def respond(self, status: int, body: bytes, content_type: str,
                headers: list[tuple[str, str]] | None = None, close: bool = False) -> None:
        hs = [("Content-Type", content_type), ("Content-Length", str(len(body))),
              ("Cache-Control", "no-cache, private"), *(headers or [])]
        if close:
            hs.append(("Connection", "close"))
        self._write(h11.Response(status_code=status, headers=hs, reason=_reason(status)))
        self._write(h11.Data(data=body))
        self._write(h11.EndOfMessage())

    def respond_json(self, status: int, obj: Any, headers: list[tuple[str, str]] | None = None,
                     close: bool = False) -> None:
        self.respond(status, json.dumps(obj).encode(), "application/json", headers, close)

    def start_stream(self, status: int, content_type: str) -> None:
        """Begin a chunked response; each `send_chunk` goes out at once (watch events)."""
        self._streaming = True
        self._write(h11.Response(status_code=status, reason=_reason(status), headers=[
            ("Content-Type", content_type), ("Transfer-Encoding", "chunked"),
            ("Cache-Control", "no-cache, private")]))

    def send_chunk(self, data: bytes) -> None:
        if not self.closed:
            self._write(h11.Data(data=data))

    def end_stream(self) -> None:
        if self.closed or not self._streaming:
            return
        self._write(h11.EndOfMessage())
        self._streaming = False
        self._run_closers()
        self._maybe_next_cycle()

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the connection goes away or the current stream ends."""
        self._closers.append(closer)

    def _run_closers(self) -> None:
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()

    def take_over(self, owner: TakeOver, handshake: bytes) -> bytes:
        """Write the 101 answer and hand the socket to `owner`; returns bytes the client already
        sent after its request (the first WebSocket frames)."""
        assert self.transport is not None
        self._takeover = owner
        self.transport.write(handshake)
        trailing, _ = self._h11.trailing_data
        return bytes(trailing)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        """Back-pressure from whoever took the connection over (a port-forward session)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class HttpServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connections: set[HttpConnection] = set()
        self._server: asyncio.Server | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._reopen_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # reuse_address lets a restart bind the same port while old sockets sit in TIME_WAIT.
        # A real API server (Go) listens with the kernel's somaxconn backlog, not asyncio's 100:
        # with 100, a burst of port-forward dials loses SYNs and stalls for seconds.
        self._server = await loop.create_server(lambda: HttpConnection(self), self.host, self.port,
                                                ssl=self.ssl_context, reuse_address=True, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        await self._close_listener()
        for conn in list(self.connections):
            conn.abort()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def drop_connections(self, down_for: float = 0.0) -> None:
        """Cut every open connection; with `down_for` > 0 also refuse new ones for that long and
        then listen again on the same port."""
        if down_for > 0:
            await self._close_listener()
            loop = asyncio.get_running_loop()

            def reopen() -> None:
                self._reopen = None
                self._reopen_task = loop.create_task(self.start(), name=f"sim:http:{self.port}:reopen")

            self._reopen = loop.call_later(down_for, reopen)
        for conn in list(self.connections):
            conn.abort()
        # Give the loop one turn so connection_lost callbacks run before the caller goes on.
        await asyncio.sleep(0)
