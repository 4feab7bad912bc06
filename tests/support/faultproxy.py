"""A TCP proxy the tests own, on 127.0.0.1 in front of a target (the simulator's API server),
that fails the way real networks fail: switched at run time by the test or the bench.

- pass: bytes flow both ways, a FIN is passed on as a FIN, a reset as a reset.
- slow link: added latency per direction (pipelined: it delays bytes, it does not cap the rate)
  and an optional bandwidth cap per direction, shared by every connection as on one real link.
- blackhole (a dropped VPN, a sleeping laptop): every open connection goes silent both ways, no
  FIN and no reset; what either side sends is held, never forwarded. New connections are
  accepted (the kernel would answer the SYN anyway) but never connected upstream.
  `pass_through()` afterwards is the same network coming back: TCP retransmits what was held,
  so the held bytes flow and the old connections go on.
- sleep, then wake on a new network: sleep is a blackhole; `wake()` makes the old connections
  dead for good (their 4-tuples name an address that is gone): whatever either side sends on one
  of them, now or later, is answered with a reset (RST) to that side, and the other side hears
  nothing. New connections pass.
- reset: `reset_all()` sends an RST (SO_LINGER 0, then close) to both ends of every open
  connection; `refuse()` resets each new connection as soon as it arrives (a reset storm).
- 503: `unavailable()` answers each new connection's first HTTP request with
  `503 Service Unavailable` and `Retry-After` (plain HTTP targets only), then closes it.

It counts connections (`counts()`), and `wait_until()` waits on those counts without polling.
`FaultProxyThread` runs one on its own event loop in a thread, for synchronous code (the bench).

What a user-space proxy cannot show: TCP keepalive probes from the client end at the proxy's
socket, which is alive, so they never notice a blackhole here. Only read deadlines, bookmarks and
the platform's sleep and network signals can; a kernel keepalive is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from trayapp.engine.aio import deadline

T = TypeVar("T")

CHUNK = 64 * 1024
_QUEUE_CHUNKS = 16  # per direction: what the proxy holds before it stops reading (backpressure)
_HEAD_LIMIT = 64 * 1024  # an HTTP request head the 503 mode reads before answering


class Mode(str, enum.Enum):
    """What happens to a connection that arrives now."""

    PASS = "pass"
    BLACKHOLE = "blackhole"
    REFUSE = "reset"
    UNAVAILABLE = "503"


@dataclass(frozen=True)
class Shape:
    """A slow link: seconds added to each direction and bytes per second per direction (None: no cap)."""

    latency: float = 0.0
    bandwidth: float | None = None


@dataclass(frozen=True)
class Counts:
    accepted: int = 0  # connections the proxy accepted, in every mode
    connected: int = 0  # upstream connections it made
    open: int = 0  # accepted connections not closed yet on both ends
    held: int = 0  # open connections the blackhole holds silent
    dead: int = 0  # open connections of an earlier network (after wake())
    resets: int = 0  # RSTs the proxy sent, one per end
    unavailable: int = 0  # 503 answers
    network: int = 0  # how many times wake() moved to a new network


def reset_socket(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: SO_LINGER on, timeout 0, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pacer:
    """One direction of the link's bandwidth: each chunk takes its turn, len/bandwidth seconds."""

    def __init__(self) -> None:
        self.free_at = 0.0

    async def take(self, size: int, bandwidth: float | None) -> None:
        if not bandwidth:
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self.free_at)
        self.free_at = start + size / bandwidth
        await asyncio.sleep(self.free_at - loop.time())


@dataclass(eq=False)
class _End:
    """One side of a proxied connection: the client's socket or the upstream one."""

    name: str  # "client" or "upstream"
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    closed: bool = False


@dataclass(eq=False)
class _Conn:
    number: int
    network: int  # the proxy's network when it was accepted
    client: _End
    upstream: _End = field(default_factory=lambda: _End("upstream"))
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False  # an old network's connection: whatever arrives is answered with a reset
    # what each side sent, by side: (when it was read, bytes; b"" a FIN, None a reset)
    queues: dict[str, asyncio.Queue[tuple[float, bytes | None]]] = field(default_factory=dict)
    unsent: dict[str, int] = field(default_factory=lambda: {"client": 0, "upstream": 0})  # read, not passed on
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    eofs: int = 0  # directions that ended with a FIN passed on

    @property
    def finished(self) -> bool:
        return self.client.closed and self.upstream.closed


class FaultProxy:
    """The proxy on one event loop. Control methods are plain calls, made on that loop's thread."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._mode = Mode.PASS
        self._shape = Shape()
        self._retry_after = 1
        self._network = 0
        self._accepted = 0
        self._connected = 0
        self._resets = 0
        self._unavailable = 0
        self._pacers = {"client": _Pacer(), "upstream": _Pacer()}  # by the side that sent the bytes
        self._changed = asyncio.Event()  # set and replaced on every change the counts show

    # -- lifetime ------------------------------------------------------------------------
    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accepted_conn, self._host, self._port, limit=CHUNK)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._close_both(conn)
        tasks = [t for conn in self._conns for t in conn.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._conns.clear()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    # -- faults --------------------------------------------------------------------------
    def pass_through(self) -> None:
        """Normal again; a blackhole ends on the same network: held bytes flow, connections go on."""
        self._mode, self._shape = Mode.PASS, Shape()
        self._thaw()

    def slow(self, latency: float = 0.0, bandwidth: float | None = None) -> None:
        """A slow link for every connection, open or new: latency per direction, bytes/s per direction."""
        self._mode, self._shape = Mode.PASS, Shape(latency, bandwidth)
        self._thaw()

    def blackhole(self) -> None:
        """Every open connection goes silent both ways; new ones are accepted and left hanging."""
        self._mode = Mode.BLACKHOLE
        for conn in self._conns:
            conn.flowing.clear()
        self._notify()

    def sleep(self) -> None:
        """The laptop sleeps: a blackhole."""
        self.blackhole()

    def wake(self) -> None:
        """Awake on a new network: the old connections are dead for good, new ones pass."""
        self._network += 1
        self._mode, self._shape = Mode.PASS, Shape()
        for conn in list(self._conns):
            if conn.network < self._network:
                self._kill(conn)
        self._notify()

    def reset_all(self) -> None:
        """An RST to both ends of every open connection; the mode stays as it is."""
        for conn in list(self._conns):
            self._reset_end(conn, conn.client)
            self._reset_end(conn, conn.upstream)
        self._notify()

    def refuse(self) -> None:
        """Reset every new connection as it arrives (and, with reset_all(), a reset storm)."""
        self._mode = Mode.REFUSE
        self._thaw()

    def unavailable(self, retry_after: int = 1) -> None:
        """Answer each new connection's HTTP request with 503 and Retry-After; open ones go on."""
        self._mode, self._retry_after = Mode.UNAVAILABLE, retry_after
        self._thaw()

    # -- counting ------------------------------------------------------------------------
    def counts(self) -> Counts:
        live = [c for c in self._conns if not c.finished]
        return Counts(
            accepted=self._accepted,
            connected=self._connected,
            open=len(live),
            held=sum(1 for c in live if not c.dead and not c.flowing.is_set()),
            dead=sum(1 for c in live if c.dead),
            resets=self._resets,
            unavailable=self._unavailable,
            network=self._network,
        )

    async def wait_until(self, condition: Callable[[Counts], bool], timeout: float) -> Counts:
        """The counts once `condition` holds for them; TimeoutError after `timeout` seconds."""
        try:
            async with deadline(timeout):
                while not condition(counts := self.counts()):
                    await self._changed.wait()
                return counts
        except TimeoutError:
            raise TimeoutError(f"the proxy's counts did not get there in {timeout} s: {self.counts()}") from None

    def _notify(self) -> None:
        # Wake every waiter once; later waiters wait on a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- connections ---------------------------------------------------------------------
    async def _accepted_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        conn = _Conn(self._accepted, self._network, _End("client", reader, writer))
        self._conns.add(conn)
        task = asyncio.current_task()
        assert task is not None
        conn.tasks.add(task)
        try:
            if self._mode == Mode.REFUSE:
                self._reset_end(conn, conn.client)
            elif self._mode == Mode.UNAVAILABLE:
                await self._answer_503(conn)
            else:
                if self._mode == Mode.PASS:
                    conn.flowing.set()
                await self._proxy(conn)
        except asyncio.CancelledError:
            pass
        finally:
            conn.tasks.discard(task)
            self._forget_if_done(conn)

    async def _proxy(self, conn: _Conn) -> None:
        # The client's bytes are read (and held) even before there is an upstream to send them to,
        # so a dead connection still resets the side that writes.
        conn.queues = {"client": asyncio.Queue(_QUEUE_CHUNKS), "upstream": asyncio.Queue(_QUEUE_CHUNKS)}
        self._spawn(conn, self._read(conn, conn.client), f"faultproxy:{conn.number}:read-client")
        if not await self._held(conn):
            return
        try:
            reader, writer = await asyncio.open_connection(*self.target, limit=CHUNK)
        except OSError:
            self._reset_end(conn, conn.client)  # the target is down: the client sees a refusal
            return
        if conn.dead or conn.client.closed:
            writer.transport.abort()
            return
        self._connected += 1
        conn.upstream.reader, conn.upstream.writer = reader, writer
        self._notify()
        self._spawn(conn, self._read(conn, conn.upstream), f"faultproxy:{conn.number}:read-upstream")
        self._spawn(conn, self._send(conn, conn.client, conn.upstream), f"faultproxy:{conn.number}:to-upstream")
        self._spawn(conn, self._send(conn, conn.upstream, conn.client), f"faultproxy:{conn.number}:to-client")

    def _spawn(self, conn: _Conn, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        conn.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            conn.tasks.discard(t)
            self._forget_if_done(conn)

        task.add_done_callback(done)

    async def _held(self, conn: _Conn) -> bool:
        """Wait while the path is dead; False if the connection died for good meanwhile."""
        while not conn.flowing.is_set():
            if conn.dead or conn.client.closed:
                return False
            await conn.flowing.wait()
        return not conn.dead

    async def _read(self, conn: _Conn, end: _End) -> None:
        assert end.reader is not None
        queue = conn.queues[end.name]
        loop = asyncio.get_running_loop()
        while True:
            try:
                data: bytes | None = await end.reader.read(CHUNK)
            except (ConnectionError, OSError):
                data = None  # the peer reset its end: the path carries that reset, in order
            if conn.dead:
                self._reset_end(conn, end)  # a write (or a FIN) on an old network's connection
                return
            conn.unsent[end.name] += 1
            await queue.put((loop.time(), data))
            if data is None:
                self._mark_closed(conn, end)
            if not data:
                return

    async def _send(self, conn: _Conn, source: _End, dest: _End) -> None:
        queue = conn.queues[source.name]
        pacer = self._pacers[source.name]
        loop = asyncio.get_running_loop()
        while True:
            read_at, data = await queue.get()
            if not await self._held(conn):
                return  # wake() answers what was held with a reset
            delay = read_at + self._shape.latency - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await pacer.take(len(data) if data else 0, self._shape.bandwidth)
            if not await self._held(conn):
                return
            assert dest.writer is not None
            if dest.closed:
                return
            conn.unsent[source.name] -= 1
            if data is None:
                self._reset_end(conn, dest)
                return
            try:
                if not data:
                    if dest.writer.can_write_eof():
                        dest.writer.write_eof()
                    conn.eofs += 1
                    if conn.eofs == 2:
                        self._close_both(conn)
                    return
                dest.writer.write(data)
                await dest.writer.drain()
            except (ConnectionError, OSError):
                self._reset_end(conn, source)
                self._mark_closed(conn, dest)
                return

    async def _answer_503(self, conn: _Conn) -> None:
        reader, writer = conn.client.reader, conn.client.writer
        assert reader is not None and writer is not None
        try:
            async with deadline(10):
                await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            self._close_end(conn, conn.client)
            return
        body = json.dumps({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
            "reason": "ServiceUnavailable", "message": "the server is currently unable to handle the request",
        }).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"Retry-After: {self._retry_after}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        self._unavailable += 1
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        self._close_end(conn, conn.client)

    # -- state changes -------------------------------------------------------------------
    def _thaw(self) -> None:
        for conn in self._conns:
            if not conn.dead:
                conn.flowing.set()
        self._notify()

    def _kill(self, conn: _Conn) -> None:
        """Dead for good: what either side already sent during the sleep gets its reset now."""
        conn.dead = True
        conn.flowing.set()  # wakes the senders and a pending connect, which then see `dead`
        for end in (conn.client, conn.upstream):
            if conn.unsent[end.name]:
                self._reset_end(conn, end)
            queue = conn.queues.get(end.name)
            while queue is not None and not queue.empty():  # lets a reader blocked on a full queue see the end
                queue.get_nowait()

    def _reset_end(self, conn: _Conn, end: _End) -> None:
        if end.closed or end.writer is None:
            return
        reset_socket(end.writer)
        self._resets += 1
        self._mark_closed(conn, end)

    def _close_end(self, conn: _Conn, end: _End) -> None:
        if end.closed or end.writer is None:
            return
        end.writer.close()
        self._mark_closed(conn, end)

    def _close_both(self, conn: _Conn) -> None:
        self._close_end(conn, conn.client)
        self._close_end(conn, conn.upstream)

    def _mark_closed(self, conn: _Conn, end: _End) -> None:
        end.closed = True
        if end is conn.client and conn.upstream.writer is None:
            conn.upstream.closed = True  # never connected: nothing more to close
        if conn.finished:
            current = asyncio.current_task()
            for task in list(conn.tasks):
                if task is not current:
                    task.cancel()
        self._notify()

    def _forget_if_done(self, conn: _Conn) -> None:
        if conn.finished and not conn.tasks:
            self._conns.discard(conn)
            self._notify()


class FaultProxyThread:
    """A FaultProxy on its own event loop in a daemon thread, controlled from synchronous code."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = FaultProxy(target, host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run `fn(*args)` on the proxy's loop and return its result."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return self.proxy.url

    def pass_through(self) -> None:
        self.call(self.proxy.pass_through)

    def slow(self, latency: float = 0.0, bandwidth: float | None = None) -> None:
        self.call(self.proxy.slow, latency, bandwidth)

    def blackhole(self) -> None:
        self.call(self.proxy.blackhole)

    def sleep(self) -> None:
        self.call(self.proxy.sleep)

    def wake(self) -> None:
        self.call(self.proxy.wake)

    def reset_all(self) -> None:
        self.call(self.proxy.reset_all)

    def refuse(self) -> None:
        self.call(self.proxy.refuse)

    def unavailable(self, retry_after: int = 1) -> None:
        self.call(self.proxy.unavailable, retry_after)

    def counts(self) -> Counts:
        return self.call(self.proxy.counts)
