"""The programs "running" in simulated pods: one real TCP listener on 127.0.0.1 per container port.

Kinds: `http` (keep-alive HTTP/1.1 naming the pod, `/bytes/N`, `POST /upload`), `echo` and
`source` (endless deterministic bytes). All are asyncio Protocols that pause reading or writing
when the other side's buffer is full, so bulk transfers stay flat in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11

# Byte i of every deterministic stream is i % 256; a block is a multiple of 256 so blocks chain.
BLOCK = bytes(range(256)) * 1024


def pattern(n: int) -> bytes:
    """The first n bytes of the deterministic stream (for tests to compare against)."""
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    name: str
    uid: str


class _Flow(asyncio.Protocol):
    """Common bookkeeping: the owning listener, the transport and write flow control."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.listener.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.listener.connections.discard(self.transport)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class EchoBackend(_Flow):
    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        assert self.transport is not None
        self.transport.resume_reading()


class SourceBackend(_Flow):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._fill()

    def data_received(self, data: bytes) -> None:
        pass

    def resume_writing(self) -> None:
        super().resume_writing()
        self._fill()

    def _fill(self) -> None:
        # write() calls pause_writing() itself once the buffer passes its high-water mark.
        while self.transport is not None and not self.paused and not self.transport.is_closing():
            self.transport.write(BLOCK)


class HttpBackend(_Flow):
    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self._h11 = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._upload: Any = None  # a hashlib sha256 while a POST /upload body arrives
        self._uploaded = 0
        self._remaining = 0  # bytes still to send of a /bytes/N answer
        self._offset = 0

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self._h11.receive_data(b"")
        self._process()
        return None

    def _process(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._upload = hashlib.sha256() if event.target == b"/upload" else None
                self._uploaded = 0
            elif isinstance(event, h11.Data):
                if self._upload is not None:
                    self._upload.update(event.data)
                    self._uploaded += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._answer()
                if self._remaining:
                    return  # the rest of the answer goes out as the socket drains
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return
            else:
                if event is h11.PAUSED and self._h11.our_state is h11.DONE:
                    self._h11.start_next_cycle()
                    continue
                return

    def _send(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data and self.transport is not None:
            self.transport.write(data)

    def _answer(self) -> None:
        assert self._request is not None
        ident = self.listener.pod
        target = self._request.target.decode("latin-1")
        method = self._request.method.decode("ascii")
        headers = [("X-Pod", ident.name), ("X-Namespace", ident.namespace)]
        if method == "POST" and target == "/upload" and self._upload is not None:
            body = json.dumps({"bytes": self._uploaded, "sha256": self._upload.hexdigest()}).encode()
            self._respond(200, body, "application/json", headers)
        elif method == "GET" and target.startswith("/bytes/") and target[7:].isdigit():
            self._remaining = int(target[7:])
            self._send(h11.Response(status_code=200, headers=[
                *headers, ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(self._remaining))]))
            self._offset = 0
            self._pump()
        elif method == "GET" and target in ("/", "/healthz"):
            text = f"pod={ident.name} namespace={ident.namespace} port={self.listener.container_port}\n"
            self._respond(200, text.encode(), "text/plain; charset=utf-8", headers)
        else:
            self._respond(404, b"not found\n", "text/plain", headers)

    def _respond(self, code: int, body: bytes, ctype: str, headers: list[tuple[str, str]]) -> None:
        self._send(h11.Response(status_code=code, headers=[
            *headers, ("Content-Type", ctype), ("Content-Length", str(len(body)))]))
        self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())
        self._next_cycle()

    def _next_cycle(self) -> None:
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        elif self._h11.our_state is h11.MUST_CLOSE and self.transport is not None:
            # Later, not now: from inside resume_writing, Python 3.11's transport would report
            # connection_lost twice (and log a traceback) when closed there.
            asyncio.get_running_loop().call_soon(self.transport.close)

    def _pump(self) -> None:
        while self._remaining and not self.paused and self.transport is not None \
                and not self.transport.is_closing():
            start = self._offset % len(BLOCK)
            n = min(self._remaining, len(BLOCK) - start)
            self._send(h11.Data(data=BLOCK[start:start + n]))
            self._offset += n
            self._remaining -= n
        if not self._remaining and self._h11.our_state is h11.SEND_BODY:
            self._send(h11.EndOfMessage())
            self._next_cycle()
            self._process()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._remaining:
            self._pump()


_PROTOCOLS: dict[str, type[_Flow]] = {"http": HttpBackend, "echo": EchoBackend, "source": SourceBackend}
BACKEND_KINDS = tuple(_PROTOCOLS)


@dataclass(eq=False)
class Listener:
    pod: PodIdentity
    container_port: int
    kind: str
    sock: socket.socket
    connections: set[asyncio.Transport] = field(default_factory=set)
    server: asyncio.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.server is not None:
            self.server.close()
        self.sock.close()
        for transport in list(self.connections):
            transport.abort()
        self.connections.clear()


class Backends:
    """Every pod's listeners, keyed by pod uid; started and stopped by the kubelet."""

    def __init__(self) -> None:
        self._by_pod: dict[str, dict[int, Listener]] = {}
        self._on_stop: dict[str, set[Callable[[], None]]] = {}

    def on_stop(self, uid: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once when the pod's programs stop (deletion, restart); returns a canceller."""
        self._on_stop.setdefault(uid, set()).add(callback)
        return lambda: self._on_stop.get(uid, set()).discard(callback)

    def start(self, pod: PodIdentity, specs: dict[int, dict[str, object]]) -> None:
        loop = asyncio.get_running_loop()
        listeners: dict[int, Listener] = {}
        for port, spec in specs.items():
            if spec.get("refuse"):
                continue
            kind = str(spec.get("kind", "http"))
            if kind not in _PROTOCOLS:
                raise ValueError(f"unknown backend kind {kind!r}; use one of {', '.join(BACKEND_KINDS)}")
            # Bind now, serve a moment later: connections wait in the backlog, so the port is
            # usable as soon as the pod is Running, with no window of "connection refused".
            # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted sockets, as real servers do.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            sock.setblocking(False)
            listener = Listener(pod, port, kind, sock)
            listener.task = loop.create_task(self._serve(listener),
                                             name=f"sim:backend:{pod.namespace}/{pod.name}:{port}")
            listeners[port] = listener
        self.stop(pod.uid)
        self._by_pod[pod.uid] = listeners

    @staticmethod
    async def _serve(listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        protocol = _PROTOCOLS[listener.kind]
        listener.server = await loop.create_server(lambda: protocol(listener), sock=listener.sock)
        listener.task = None

    def stop(self, uid: str) -> None:
        for callback in self._on_stop.pop(uid, set()):
            callback()
        for listener in self._by_pod.pop(uid, {}).values():
            listener.close()

    def address(self, uid: str, port: int) -> tuple[str, int] | None:
        listener = self._by_pod.get(uid, {}).get(port)
        return listener.address if listener is not None else None

    def stop_all(self) -> None:
        for uid in list(self._by_pod):
            self.stop(uid)
