"""A tiny HTTP/1.1 API server on 127.0.0.1 that misbehaves on demand, for the hostile-server tests.

It speaks just enough of the Kubernetes list/watch protocol to be a healthy server (paged lists,
watches with events and bookmarks), and each test swaps in a misbehaviour for lists or watches:
an endless line, a chunk that promises a terabyte, garbage JSON, one byte a second, silence,
a reset, an error status. Real sockets; nothing in the client is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trayapp.engine.aio import deadline
from trayapp.sim.kubeconfig import ClusterEntry, write_kubeconfig

TOKEN = "hostile-token"
_CHUNK = b"x" * 65536
TIB = 1 << 40


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    at: float  # loop time it arrived

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


Plan = Callable[["HostileServer", Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def pod(name: str, rv: int = 1, **extra: Any) -> dict[str, Any]:
    """A pod the engine can read (Running and Ready)."""
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": str(rv),
                     "labels": {"app": "x"}},
        "spec": {"nodeName": "node", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        **extra,
    }


# ---- writing responses --------------------------------------------------------------------------


def head(writer: asyncio.StreamWriter, status: int = 200, headers: Iterable[tuple[str, str]] = (),
         chunked: bool = True) -> None:
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers)]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())


async def chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode())
    writer.write(data)
    writer.write(b"\r\n")
    await writer.drain()  # never buffer ahead of the client: the memory measured is the client's


async def respond_json(writer: asyncio.StreamWriter, status: int, body: object,
                       headers: Iterable[tuple[str, str]] = ()) -> None:
    data = json.dumps(body).encode()
    head(writer, status, [*headers, ("Content-Length", str(len(data)))], chunked=False)
    writer.write(data)
    await writer.drain()


async def hang(reader: asyncio.StreamReader) -> None:
    """Keep the connection open, sending nothing, until the client goes away."""
    while await reader.read(65536):
        pass


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dead middlebox or a rebooted server does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---- plans: healthy ------------------------------------------------------------------------------


async def good_list(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    """The objects, paged by `limit` with `continue` tokens that are offsets."""
    items = list(server.objects.values())
    start = int(request.query.get("continue") or 0)
    limit = int(request.query.get("limit") or 0) or len(items) or 1
    page = items[start:start + limit]
    metadata: dict[str, Any] = {"resourceVersion": str(server.rv)}
    if start + limit < len(items):
        metadata["continue"] = str(start + limit)
    await respond_json(writer, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page})


async def good_watch(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
    """Events pushed with `HostileServer.emit`, and bookmarks when `bookmark_interval` is set."""
    head(writer)
    await writer.drain()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    server.watchers.add(queue)
    closed = asyncio.get_running_loop().create_task(hang(reader))
    try:
        while not closed.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, closed}, timeout=server.bookmark_interval,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await chunk(writer, getter.result())
                continue
            getter.cancel()
            if not done:  # the interval passed quietly
                bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": str(server.rv)}}}
                await chunk(writer, json.dumps(bookmark).encode() + b"\n")
    finally:
        server.watchers.discard(queue)
        closed.cancel()


# ---- plans: hostile ------------------------------------------------------------------------------


def endless_line(total: int) -> Plan:
    """A watch (or list) body of `total` bytes without a newline, then silence."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer)
        sent = 0
        while sent < total:
            await chunk(writer, _CHUNK)
            sent += len(_CHUNK)
        await hang(reader)
    return plan


def huge_chunk(body: bytes = b"") -> Plan:
    """A chunk header promising 1 TiB, then `body` (or endless x's when empty), never the rest."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer)
        writer.write(f"{TIB:x}\r\n".encode())
        if body:
            writer.write(body)
            await writer.drain()
            await hang(reader)
            return
        while True:
            writer.write(_CHUNK)
            await writer.drain()
    return plan


def huge_length() -> Plan:
    """A Content-Length of 1 TiB, then a trickle."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer, 200, [("Content-Length", str(TIB))], chunked=False)
        writer.write(b"{")
        await writer.drain()
        await hang(reader)
    return plan


def lines(*texts: bytes, then_hang: bool = True) -> Plan:
    """A watch that sends these lines (garbage JSON, malformed events...), then hangs or ends."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer)
        for text in texts:
            await chunk(writer, text + b"\n")
        if then_hang:
            await hang(reader)
        else:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    return plan


def trickle(interval: float, data: bytes = b"x" * 100000) -> Plan:
    """One byte every `interval` seconds, forever as far as the client can tell."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer)
        for byte in data:
            await chunk(writer, bytes([byte]))
            await asyncio.sleep(interval)
    return plan


async def silent(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Accept the request and never answer."""
    await hang(reader)


async def silent_after_head(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    """A 200 head for a watch, then nothing: a path that died after the watch opened."""
    head(writer)
    await writer.drain()
    await hang(reader)


def status(code: int, message: str = "go away", headers: Iterable[tuple[str, str]] = (),
           details: Mapping[str, Any] | None = None) -> Plan:
    """A Kubernetes Status error answer."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                "code": code}
        if details:
            body["details"] = dict(details)
        await respond_json(writer, code, body, headers)
    return plan


def reset_after(data: bytes) -> Plan:
    """A 200 head and `data`, then a TCP reset."""
    async def plan(server: HostileServer, request: Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        head(writer)
        await chunk(writer, data)
        rst(writer)
    return plan


# ---- the server ----------------------------------------------------------------------------------


class HostileServer:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 1
        self.bookmark_interval: float | None = None
        self.on_list: Plan = good_list
        self.on_watch: Plan = good_watch
        self.requests: list[Request] = []
        self.watchers: set[asyncio.Queue[bytes]] = set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def write_kubeconfig(self, path: Path, context: str = "hostile") -> Path:
        return write_kubeconfig(path, [ClusterEntry(context, self.url, token=TOKEN)], current=context)

    def put(self, obj: dict[str, Any], event: str = "ADDED") -> None:
        """Store an object (bumping the resourceVersion) and send it to the open healthy watches."""
        self.rv += 1
        name = str(obj["metadata"]["name"]) if isinstance(obj.get("metadata"), dict) else str(self.rv)
        obj = json.loads(json.dumps(obj))
        if isinstance(obj.get("metadata"), dict):
            obj["metadata"]["resourceVersion"] = str(self.rv)
        if event == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self.emit(event, obj)

    def emit(self, event: str, obj: object) -> None:
        line = json.dumps({"type": event, "object": obj}).encode() + b"\n"
        for queue in self.watchers:
            queue.put_nowait(line)

    async def wait_requests(self, count: int, watch: bool | None = None, timeout: float = 20.0) -> list[Request]:
        """Wait until `count` requests (only watches, or only lists, if asked) have arrived."""
        def matching() -> list[Request]:
            return [r for r in self.requests if watch is None or r.is_watch == watch]

        async def wait() -> list[Request]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(matching()) >= count)
                return matching()

        async with deadline(timeout):
            return await wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            parts = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in header_lines if ": " in line)}
            request = Request(method, parts.path, query, headers, asyncio.get_running_loop().time())
            async with self._arrived:
                self.requests.append(request)
                self._arrived.notify_all()
            plan = self.on_watch if request.is_watch else self.on_list
            await plan(self, request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the top of the handler task: stop() cancels it, and asyncio logs a cancelled one
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


# ---- helpers for tests ---------------------------------------------------------------------------


async def kube_api(server: HostileServer, folder: Path, **options: Any) -> Any:
    """A real KubeApi on a kubeconfig that points at the server (loaded as the app loads one)."""
    from trayapp.engine.kube.api import KubeApi
    from trayapp.engine.kube.auth import Credentials

    credentials = Credentials([server.write_kubeconfig(folder / "kubeconfig")], None)
    access = await asyncio.to_thread(credentials.load)
    return KubeApi(access, credentials, **options)


class Recorder:
    """Collects an informer's (or a subscriber's) callbacks and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.changes = 0
        self.errors: list[Exception] = []
        self._poke = asyncio.Event()

    def changed(self, *_: object) -> None:
        self.changes += 1
        self._poke.set()

    def failed(self, *args: object) -> None:
        error = args[-1]
        assert isinstance(error, Exception)
        self.errors.append(error)
        self._poke.set()

    async def until(self, condition: Callable[[], object], timeout: float = 20.0) -> None:
        try:
            async with deadline(timeout):
                while not condition():
                    self._poke.clear()
                    await self._poke.wait()
        except TimeoutError:
            raise AssertionError(f"not reached in {timeout} s; changes {self.changes}, errors {self.errors}") from None
