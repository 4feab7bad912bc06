"""The kubelet's side of one port-forward SPDY/3.1 session (`portforward.k8s.io`): many forwarded
connections on one upgraded socket, each a pair of streams (error and data) with one `requestid`.

Framing is `trayapp.engine.forward.spdy`; this module plays the kubelet's stream handler
(pkg/kubelet/cri/streaming/portforward/httpstream.go): an empty SYN_REPLY per accepted stream, a
reset for a stream without a usable `port` or `streamtype`, pairing by `requestid` with a timeout,
the pod's port dialled once a pair is complete, failures written as text on the error stream,
PINGs echoed, WINDOW_UPDATE and SETTINGS ignored (spdystream has no flow control). Data that comes
before its pair is complete waits in a bounded buffer.

`SpdyForwardSession` knows nothing about sockets: it writes SPDY bytes to a `SpdyLink`, so the same
session serves the plain `Upgrade: SPDY/3.1` socket (`SpdyUpgrade` here) and, later, SPDY carried
in WebSocket messages. Back-pressure is TCP's, as the kubelet's blocking copies have it: a full
client socket pauses the backends, a full backend pauses the client socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from trayapp.engine.forward.spdy import (
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
)
from trayapp.errors import WireError
from trayapp.sim.http import HttpConnection, Request
from trayapp.sim.portforward import PortTarget, refused_text

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
# The kubelet's copy buffer: no DATA frame of ours is larger.
MAX_DATA = 32 * 1024
# The kubelet's default stream-creation timeout: a half pair is given up after this long.
PAIR_TIMEOUT = 30.0
# Bytes a stream may carry before it is connected; past this the session stops reading until the
# pod's port is connected (spdystream's frame worker waits on the stream, as the kubelet's does).
MAX_EARLY = 1024 * 1024
# Once one direction of a connection has ended, the other gets this long to end too before both
# streams are closed (containerd's port-forward waits a second, as socat does).
LINGER = 1.0


class SpdyLink(Protocol):
    """Where the session's SPDY bytes go (the upgraded socket, or a WebSocket tunnel)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class _BackendSide(asyncio.Protocol):
    def __init__(self, session: SpdyForwardSession, pair: _Pair) -> None:
        self._session = session
        self._pair = pair
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._session.to_client(self._pair, data)

    def eof_received(self) -> bool:
        self._session.backend_eof(self._pair)
        return True  # keep our half open: the client may still be sending

    def pause_writing(self) -> None:
        self._session.backend_full(self._pair, True)

    def resume_writing(self) -> None:
        self._session.backend_full(self._pair, False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.backend_closed(self._pair)


@dataclass(eq=False)
class _Pair:
    request_id: str
    port: int
    error_id: int | None = None
    data_id: int | None = None
    early: bytearray = field(default_factory=bytearray)  # client bytes before the backend is there
    client_fin: bool = False  # the client half-closed the data stream
    backend_fin: bool = False  # we half-closed the data stream
    backend: _BackendSide | None = None
    timer: asyncio.TimerHandle | None = None
    linger: asyncio.TimerHandle | None = None
    done: bool = False


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str:
    for key, value in headers:
        if key == name:
            return value
    return ""


class SpdyForwardSession:
    """One SPDY session: `receive_data` takes the client's bytes, answers go to the link."""

    def __init__(self, pod_name: str, target_for: Callable[[int], PortTarget],
                 tasks: set[asyncio.Task[None]], pair_timeout: float = PAIR_TIMEOUT,
                 linger: float = LINGER, max_early: int = MAX_EARLY) -> None:
        self._pod = pod_name
        self._max_early = max_early
        self._target_for = target_for
        self._tasks = tasks
        self._pair_timeout = pair_timeout
        self._linger = linger
        self._decoder = FrameDecoder()
        self._encoder = FrameEncoder()
        self._link: SpdyLink | None = None
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}
        self._last_id = 0
        self._draining = False  # the client sent GOAWAY: no new streams, close when the last ends
        self._full: set[int] = set()  # ids of pairs whose backend's buffer is full
        self._link_full = False
        self._lost = False
        self.forget: Callable[[], None] | None = None  # unregisters pod_stopped, if registered

    def start(self, link: SpdyLink) -> None:
        self._link = link

    def _send(self, *frames: SynReply | RstStream | Data | Ping | GoAway) -> None:
        if self._link is not None and not self._lost:
            self._link.write(b"".join(self._encoder.encode(f) for f in frames))

    # -- client -> us --------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        try:
            frames = self._decoder.receive_data(data)
        except WireError:
            self._shut(GoAway(self._last_id, 1))
            return
        for frame in frames:
            if isinstance(frame, SynStream):
                self._stream_opened(frame)
            elif isinstance(frame, Data):
                self._client_data(frame)
            elif isinstance(frame, RstStream):
                pair = self._by_stream.get(frame.stream_id)
                if pair is not None:
                    self._finish(pair)
            elif isinstance(frame, Ping):
                self._send(Ping(frame.ping_id))
            elif isinstance(frame, GoAway):
                # No new streams come; the open ones run to their end, then the socket goes.
                self._draining = True
                if not self._pairs:
                    self._shut()
            # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do, as for spdystream.

    def receive_eof(self) -> None:
        self._shut()

    def _stream_opened(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if self._draining or sid <= self._last_id or sid % 2 == 0:
            self._send(RstStream(sid, RstStatus.PROTOCOL_ERROR))
            return
        self._last_id = sid
        kind = _header(frame.headers, "streamtype")
        port_text = _header(frame.headers, "port")
        if kind not in ("error", "data") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            self._send(RstStream(sid, RstStatus.CANCEL))  # the kubelet's handler refused the stream
            return
        # A client without request ids (before kubernetes 1.5) gets the kubelet's guess: the
        # error stream's id, and the data stream's id minus two.
        request_id = _header(frame.headers, "requestid") or str(sid if kind == "error" else sid - 2)
        self._send(SynReply(sid))
        pair = self._pairs.get(request_id)
        if pair is None:
            pair = _Pair(request_id, int(port_text))
            self._pairs[request_id] = pair
            pair.timer = asyncio.get_running_loop().call_later(self._pair_timeout, self._pair_timed_out, pair)
        if (pair.error_id if kind == "error" else pair.data_id) is not None:
            self._send(RstStream(sid, RstStatus.CANCEL))  # a second stream of one type: refused
            return
        if kind == "error":
            pair.error_id = sid
        else:
            pair.data_id = sid
            pair.port = int(port_text)  # the kubelet dials the data stream's port
        self._by_stream[sid] = pair
        if frame.fin and kind == "data":
            pair.client_fin = True
        if pair.error_id is not None and pair.data_id is not None:
            if pair.timer is not None:
                pair.timer.cancel()
            self._connect(pair)

    def _client_data(self, frame: Data) -> None:
        pair = self._by_stream.get(frame.stream_id)
        if pair is None or pair.done or frame.stream_id != pair.data_id:
            return  # the error stream carries nothing from the client; unknown streams are gone
        backend = pair.backend
        if frame.data:
            if backend is not None and backend.transport is not None:
                backend.transport.write(frame.data)
            else:
                pair.early += frame.data
                if len(pair.early) > self._max_early:
                    # spdystream hands a stream's frames over one at a time: until the copy to
                    # the pod starts, the frame worker waits, and with it the session's reading.
                    self.backend_full(pair, True)
        if frame.fin:
            pair.client_fin = True
            if backend is not None and backend.transport is not None and not pair.early:
                backend.transport.write_eof()
            self._maybe_done(pair)

    def _pair_timed_out(self, pair: _Pair) -> None:
        if pair.error_id is not None:
            self._send(Data(pair.error_id, f"timed out waiting for streams of request {pair.request_id}".encode()))
        self._reset(pair, RstStatus.CANCEL)

    # -- the pod's port ------------------------------------------------------------------
    def _connect(self, pair: _Pair) -> None:
        target = self._target_for(pair.port)
        if target.address is None or target.error:
            self._fail(pair, target.error or refused_text(pair.port, self._pod))
            return
        task = asyncio.get_running_loop().create_task(
            self._dial(pair, target.address), name=f"sim:spdyforward:{self._pod}:{pair.port}:connect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, pair: _Pair, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, side = await loop.create_connection(lambda: _BackendSide(self, pair), *address)
        except OSError:
            self._fail(pair, refused_text(pair.port, self._pod))
            return
        assert side.transport is not None
        if self._lost or pair.done:
            side.transport.close()
            return
        pair.backend = side
        if pair.early:
            side.transport.write(bytes(pair.early))
            pair.early.clear()
            self.backend_full(pair, False)  # the session reads on (the backend's own pace rules now)
        if pair.client_fin:
            side.transport.write_eof()
            self._maybe_done(pair)
        if self._link_full:
            side.transport.pause_reading()

    def _fail(self, pair: _Pair, text: str) -> None:
        """The kubelet writes the failure on the error stream and closes both streams."""
        assert pair.error_id is not None and pair.data_id is not None
        self._send(Data(pair.error_id, text.encode()), Data(pair.error_id, b"", fin=True),
                   Data(pair.data_id, b"", fin=True))
        self._finish(pair)

    def pod_stopped(self) -> None:
        """The pod's programs died under open connections: say so on their error streams, as a
        kubelet whose copy to the pod broke does (the backends' close follows)."""
        for pair in list(self._pairs.values()):
            if pair.backend is not None and pair.error_id is not None:
                self._send(Data(pair.error_id, (
                    f"error forwarding port {pair.port} to pod {self._pod}, uid : failed to execute portforward in "
                    f"network namespace \"/var/run/netns/cni-sim\": read tcp4 127.0.0.1:51234->127.0.0.1:{pair.port}: "
                    "read: connection reset by peer").encode()))

    # -- backend -> client ---------------------------------------------------------------
    def to_client(self, pair: _Pair, data: bytes) -> None:
        if pair.done or pair.data_id is None:
            return
        view = memoryview(data)
        self._send(*(Data(pair.data_id, bytes(view[i:i + MAX_DATA])) for i in range(0, len(view), MAX_DATA)))

    def backend_eof(self, pair: _Pair) -> None:
        if not pair.done and not pair.backend_fin and pair.data_id is not None:
            pair.backend_fin = True
            self._send(Data(pair.data_id, b"", fin=True))
        self._maybe_done(pair)

    def backend_closed(self, pair: _Pair) -> None:
        self.backend_eof(pair)
        if not pair.done:
            # The pod closed both ways while the client still sends: nothing reads those bytes now.
            self._end(pair)

    def backend_full(self, pair: _Pair, full: bool) -> None:
        (self._full.add if full else self._full.discard)(id(pair))
        if self._link is None or self._lost:
            return
        if self._full:
            self._link.pause_reading()
        else:
            self._link.resume_reading()

    def link_full(self, full: bool) -> None:
        self._link_full = full
        for pair in self._pairs.values():
            transport = pair.backend.transport if pair.backend is not None else None
            if transport is not None and not transport.is_closing():
                (transport.pause_reading if full else transport.resume_reading)()

    # -- endings -------------------------------------------------------------------------
    def _maybe_done(self, pair: _Pair) -> None:
        if pair.done:
            return
        if pair.client_fin and pair.backend_fin:
            self._end(pair)
        elif pair.linger is None and pair.backend is not None:
            pair.linger = asyncio.get_running_loop().call_later(self._linger, self._end, pair)

    def _end(self, pair: _Pair) -> None:
        """Both directions are over: close the error stream too (the kubelet closes both)."""
        if pair.error_id is not None:
            self._send(Data(pair.error_id, b"", fin=True))
        if pair.data_id is not None and not pair.backend_fin:
            pair.backend_fin = True
            self._send(Data(pair.data_id, b"", fin=True))
        self._finish(pair)

    def _reset(self, pair: _Pair, status: RstStatus) -> None:
        for sid in (pair.error_id, pair.data_id):
            if sid is not None:
                self._send(RstStream(sid, status))
        self._finish(pair)

    def _finish(self, pair: _Pair) -> None:
        pair.done = True
        if id(pair) in self._full:
            self.backend_full(pair, False)
        for timer in (pair.timer, pair.linger):
            if timer is not None:
                timer.cancel()
        if pair.backend is not None and pair.backend.transport is not None:
            pair.backend.transport.close()
        pair.early.clear()
        self._full.discard(id(pair))
        if self._pairs.get(pair.request_id) is pair:
            del self._pairs[pair.request_id]
        for sid in (pair.error_id, pair.data_id):
            if sid is not None and self._by_stream.get(sid) is pair:
                del self._by_stream[sid]
        if self._draining and not self._pairs:
            self._shut()

    def _shut(self, goaway: GoAway | None = None) -> None:
        for pair in list(self._pairs.values()):
            self._finish(pair)
        if goaway is not None:
            self._send(goaway)
        if self._link is not None:
            self._link.close()

    def go_away(self) -> None:
        """Close the session from our side, as spdystream's Close does: GOAWAY, then the socket."""
        self._shut(GoAway(self._last_id))

    def connection_lost(self) -> None:
        self._lost = True
        if self.forget is not None:
            self.forget()
        for pair in list(self._pairs.values()):
            self._finish(pair)


class SpdyUpgrade:
    """The plain `Upgrade: SPDY/3.1` socket: answers the upgrade, then feeds the session."""

    def __init__(self, conn: HttpConnection, session: SpdyForwardSession) -> None:
        self._conn = conn
        self._session = session

    def upgrade(self, request: Request) -> None:
        handshake = ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     f"X-Stream-Protocol-Version: {PROTOCOL}\r\n\r\n").encode()
        trailing = self._conn.take_over(self, handshake)
        self._session.start(self)
        if trailing:
            self._session.receive_data(trailing)

    # -- SpdyLink ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        transport = self._conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        self._conn.close()

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    # -- TakeOver ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._session.receive_data(data)

    def eof_received(self) -> None:
        self._session.receive_eof()

    def pause_writing(self) -> None:
        self._session.link_full(True)

    def resume_writing(self) -> None:
        self._session.link_full(False)

    def connection_lost(self) -> None:
        self._session.connection_lost()


def offers_spdy(request: Request) -> bool:
    """A plain SPDY upgrade (what kubectl falls back to, and what it used before 1.31)."""
    return request.headers.get("upgrade", "").strip().lower() == "spdy/3.1"


def offers_portforward_protocol(request: Request) -> bool:
    versions = request.headers.get("x-stream-protocol-version", "")
    return PROTOCOL in (v.strip() for v in versions.split(","))
