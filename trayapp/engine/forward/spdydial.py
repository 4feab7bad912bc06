"""The SPDY dialers: one port-forward session per pod, shared by every connection to that pod.

`SpdyDialer` keeps the session of each (namespace, pod) and opens each local connection as a
stream pair on it (spdysession.py), so a new connection costs no round trip to the API server
once the session is up. Sessions are replaced, not repaired: a dead one (socket gone, PING
unanswered), one the server sent GOAWAY on, and one stalled by a full receive buffer give their
place to a new session at the next `open`; the old one keeps its connections until they end.

The asyncio part is thin: the socket's protocol (sessionsocket.py) hands each arrival to the
session, which wakes the connections it names, and a timer calls `SpdyClientSession.timer` when
the session asks.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import trsock
from collections.abc import Callable

from trayapp.engine.aio import deadline
from trayapp.engine.forward.spdylink import Upgraded, upgrade
from trayapp.engine.forward.spdysession import (
    BUFFER_LIMIT,
    PING_INTERVAL,
    PING_TIMEOUT,
    SessionLost,
    SessionState,
    SpdyClientSession,
)
from trayapp.engine.forward.transport import PodConnection
from trayapp.engine.kube import KubeApi
from trayapp.errors import ApiUnreachable
from trayapp.model import Transport

log = logging.getLogger(__name__)

CLOSE_WAIT = 1.0  # seconds aclose gives TLS's goodbye before the socket is simply dropped
Key = tuple[str, str]


class SpdyConnection:
    """One forwarded TCP connection: a stream pair on a shared session (a PodConnection)."""

    def __init__(self, session: Session, handle: int) -> None:
        self._session = session
        self._handle = handle
        self._news = asyncio.Event()
        self._closed = False

    @property
    def transport(self) -> Transport:
        return self._session.transport

    @property
    def half_close(self) -> bool:
        return True

    async def send(self, data: bytes) -> None:
        if data:
            self._session.core.send(self._handle, data)
            await self._session.flush_and_drain()

    async def send_eof(self) -> None:
        self._session.core.send_eof(self._handle)
        await self._session.flush_and_drain()

    async def receive(self) -> bytes:
        while True:
            self._news.clear()
            chunk = self._session.core.read(self._handle)
            self._session.maybe_resume()
            if chunk is not None:
                return chunk
            await self._news.wait()

    def wake(self) -> None:
        self._news.set()

    @property
    def buffered(self) -> int:
        """Bytes from the pod received and not yet taken by `receive`."""
        return self._session.core.buffered(self._handle)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.release(self._handle)
            self._news.set()  # a receive still waiting returns b""


class Session:
    """The asyncio side of one SpdyClientSession on its upgraded socket."""

    def __init__(self, key: Key, link: Upgraded, transport: Transport, *, ping_interval: float,
                 ping_timeout: float, buffer_limit: int, on_closed: Callable[[Session], None] | None = None,
                 on_unusable: Callable[[Session], None] | None = None) -> None:
        self.key = key
        self._on_closed = on_closed
        self._on_unusable = on_unusable  # it takes no more connections: the dialer replaces it now
        self.transport = transport
        self._link = link
        loop = asyncio.get_running_loop()
        self.core = SpdyClientSession(loop.time(), buffer_limit=buffer_limit, ping_interval=ping_interval,
                                      ping_timeout=ping_timeout)
        self.retired = False  # no longer the pod's session: ends when its last connection does
        self._connections: dict[int, SpdyConnection] = {}
        self.stalled = asyncio.Event()  # set while a full buffer keeps the socket unread
        self._flush_pending = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        link.socket.attach(self)
        self._arm_timer()

    # -- state the dialer asks about ---------------------------------------------------------
    @property
    def usable(self) -> bool:
        """New connections may go here: open, not stalled by a full buffer, not retired."""
        return (not self._closed and not self.retired and self.core.accepting and not self.core.paused
                and not self.core.poisoned)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def socket(self) -> trsock.TransportSocket | None:
        """The TCP socket under the session (under TLS, when there is TLS)."""
        sock = self._link.socket.extra_info("socket")
        return sock if isinstance(sock, trsock.TransportSocket) else None

    # -- connections ---------------------------------------------------------------------------
    def open(self, port: int) -> SpdyConnection:
        handle = self.core.open(port)  # raises SessionLost when it takes no new connections
        conn = SpdyConnection(self, handle)
        self._connections[handle] = conn
        # The SYN_STREAMs go out with the connection's first bytes when the caller sends at once,
        # in one write; a server-speaks-first protocol sends nothing, so they go next loop turn.
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)
        return conn

    def release(self, handle: int) -> None:
        self._connections.pop(handle, None)
        self.core.close(handle)
        self._flush()
        self.maybe_resume()
        self._end_if_done()

    def retire(self) -> None:
        self.retired = True
        self._end_if_done()

    def kill(self, reason: str) -> None:
        self.core.die(reason)
        self._after_input()

    # -- bytes out -----------------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_pending = False
        out = self.core.pieces_to_send()
        if out and not self._closed:
            self._link.socket.writelines(self._link.carrier.wrap(out))

    async def flush_and_drain(self) -> None:
        self._flush()
        if self.core.failure is not None:
            raise self.core.failure
        try:
            await self._link.socket.drain()
        except (ConnectionError, OSError) as exc:
            self.kill(f"kubetray lost its port-forward session to the API server ({exc.__class__.__name__}).")
            raise SessionLost("kubetray lost its port-forward session to the API server.") from exc

    # -- bytes in (SessionSocket calls these) ---------------------------------------------------
    def data_received(self, data: memoryview) -> None:
        if self._closed:
            return
        try:
            stream, answer, ended = self._link.carrier.unwrap(data)
            if answer:
                self._link.socket.write(answer)
            now = asyncio.get_running_loop().time()
            for part in stream:
                self.core.receive_data(part, now)
            if ended:
                self.core.receive_eof()
            self._after_input()
            if self.core.paused and not self.stalled.is_set() and not self._closed:
                self.stalled.set()
                self._link.socket.pause_reading()  # until a reader takes its bytes (maybe_resume)
        except Exception:  # a bug must not leave the connections waiting on bytes that never come
            log.exception("The SPDY session to pod %s/%s failed on what the server sent", *self.key)
            self.kill("kubetray's port-forward session to the API server failed; see the log.")

    def eof_received(self) -> None:
        self.core.receive_eof()
        self._after_input()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f" ({exc.__class__.__name__})" if exc is not None else ""
        self.kill(f"kubetray lost its port-forward session to the API server{reason}.")
        self._close_socket()

    def maybe_resume(self) -> None:
        if self.stalled.is_set() and not self.core.paused:
            self.stalled.clear()
            self._link.socket.resume_reading()

    def _after_input(self) -> None:
        self._flush()
        dead = self.core.state is SessionState.DEAD
        for handle in self.core.take_changed():
            conn = self._connections.get(handle)
            if conn is not None:
                conn.wake()
        if dead:
            for conn in self._connections.values():
                conn.wake()
        if not self.retired and (dead or self.core.poisoned or self.core.state is SessionState.DRAINING) \
                and self._on_unusable is not None:
            self._on_unusable(self)
        self._end_if_done()

    # -- time ----------------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        if self._closed:
            return
        backlog = self._link.socket.write_buffer_size() > 0
        when = self.core.timer(asyncio.get_running_loop().time(), write_backlog=backlog)
        self._flush()
        if when is None:
            self._after_input()
            return
        self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._arm_timer()

    # -- ending --------------------------------------------------------------------------------
    def _end_if_done(self) -> None:
        if self._closed:
            return
        if self.retired and self.core.connections == 0 and self.core.state is SessionState.OPEN:
            self.core.go_away()
        if self.core.finished:
            self._close_socket()

    def _close_socket(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock = self._link.socket
        if not sock.is_closing():
            sock.write(self._link.carrier.closing())
            sock.close()
        log.debug("SPDY session to pod %s/%s closed", *self.key)
        if self._on_closed is not None:
            self._on_closed(self)

    async def aclose(self, reason: str) -> None:
        self.kill(reason)
        self._close_socket()
        try:
            async with deadline(CLOSE_WAIT):
                await self._link.socket.wait_closed()
        except TimeoutError:
            self._link.socket.abort()


class SpdyDialer:
    """Opens PodConnections over one SPDY session per pod (a Dialer)."""

    def __init__(self, api: KubeApi, *, over_websocket: bool, ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT, buffer_limit: int = BUFFER_LIMIT,
                 connect_timeout: float = 10.0) -> None:
        self._api = api
        self._over_websocket = over_websocket
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._buffer_limit = buffer_limit
        self._connect_timeout = connect_timeout
        self._current: dict[Key, Session] = {}
        self._opening: dict[Key, asyncio.Task[Session]] = {}
        self._older: set[Session] = set()  # retired, still carrying connections

    @property
    def transport(self) -> Transport:
        return Transport.SPDY_WS if self._over_websocket else Transport.SPDY

    def sessions(self, namespace: str, pod: str) -> list[Session]:
        """The pod's sessions still open (the current one last), for tests and status."""
        key = (namespace, pod)
        older = [s for s in self._older if s.key == key and not s.closed]
        current = self._current.get(key)
        return older + ([current] if current is not None and not current.closed else [])

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        key = (namespace, pod)
        try:
            async with deadline(timeout):
                while True:
                    session = await self._session(key)
                    try:
                        return session.open(port)
                    except SessionLost:
                        self._replace(key, session)  # it went away since the upgrade: the next one
        except TimeoutError:
            raise ApiUnreachable(f"The API server {self._api.access.server} did not open a port-forward session to "
                                 f"pod {pod!r} in namespace {namespace!r} within {timeout:g} s.") from None

    def warm(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        current = self._current.get(key)
        if (current is None or not current.usable) and key not in self._opening:
            self._start_opening(key)

    def forget(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        task = self._opening.pop(key, None)
        if task is not None:
            task.cancel()
        session = self._current.pop(key, None)
        if session is not None:
            self._retire(session)

    def network_changed(self) -> None:
        for task in self._opening.values():
            task.cancel()
        self._opening.clear()
        for session in [*self._current.values(), *self._older]:
            session.kill("The network changed under kubetray's port-forward session; connections on it ended.")
        self._current.clear()
        self._older.clear()

    async def aclose(self) -> None:
        tasks = list(self._opening.values())
        for task in tasks:
            task.cancel()
        self._opening.clear()
        sessions = [*self._current.values(), *self._older]
        self._current.clear()
        self._older.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions:
            await session.aclose("kubetray stopped forwarding to this pod.")

    # -- sessions ------------------------------------------------------------------------------
    async def _session(self, key: Key) -> Session:
        current = self._current.get(key)
        if current is not None:
            if current.usable:
                return current
            self._replace(key, current)
        task = self._opening.get(key) or self._start_opening(key)
        try:
            # Shielded: one caller's deadline must not cancel the upgrade the others wait for.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current_task = asyncio.current_task()
            if not task.cancelled() or (current_task is not None and current_task.cancelling()):
                raise
            # The upgrade itself was called off (forget, network change, shutdown), not this caller.
            raise ApiUnreachable(f"kubetray dropped the port-forward session it was opening to pod {key[1]!r} in "
                                 f"namespace {key[0]!r} (the pod was forgotten or the network changed).") from None

    def _start_opening(self, key: Key) -> asyncio.Task[Session]:
        task = asyncio.get_running_loop().create_task(self._upgrade(key), name=f"spdy:{key[0]}/{key[1]}:upgrade")
        self._opening[key] = task
        task.add_done_callback(lambda t: self._opened(key, t))
        return task

    async def _upgrade(self, key: Key) -> Session:
        link = await upgrade(self._api, key[0], key[1], over_websocket=self._over_websocket,
                             timeout=self._connect_timeout)
        return Session(key, link, self.transport, ping_interval=self._ping_interval,
                       ping_timeout=self._ping_timeout, buffer_limit=self._buffer_limit, on_closed=self._older.discard,
                       on_unusable=self._unusable)

    def _opened(self, key: Key, task: asyncio.Task[Session]) -> None:
        if self._opening.get(key) is task:
            del self._opening[key]
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so a warm-up nobody awaited never warns
        if exc is not None:
            log.debug("SPDY session to pod %s/%s did not open: %s", key[0], key[1], exc)
            return
        session = task.result()
        previous = self._current.get(key)
        if previous is not None and previous is not session:
            self._retire(previous)
        self._current[key] = session

    def _unusable(self, session: Session) -> None:
        """A session died, was sent GOAWAY or was poisoned: retire it and open its successor now,
        so the next connection need not wait for the upgrade."""
        key = session.key
        if self._current.get(key) is not session:
            session.retire()
            return
        self._replace(key, session)
        if session.core.poisoned or session.core.state is SessionState.DRAINING:
            self.warm(*key)  # a dead one is replaced at the next open: the path may be gone

    def _replace(self, key: Key, session: Session) -> None:
        if self._current.get(key) is session:
            del self._current[key]
        self._retire(session)

    def _retire(self, session: Session) -> None:
        session.retire()
        if not session.closed:
            self._older.add(session)
