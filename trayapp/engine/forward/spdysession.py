"""The client side of one port-forward SPDY/3.1 session (`portforward.k8s.io`), sans-I/O.

`SpdyClientSession` takes the server's bytes in (`receive_data`), hands bytes out
(`data_to_send`) and keeps the state of every forwarded connection it carries: a pair of streams,
the error stream and the data stream, with the same `requestid`. The asyncio side (spdydial.py)
only moves bytes, wakes readers and calls `timer` when the session asks to be woken.

Opening without waiting. kubectl creates the error stream, waits for its SYN_REPLY, creates the
data stream, waits again, and only then copies data: two round trips. We write the error stream's
SYN_STREAM and FIN, the data stream's SYN_STREAM and the first DATA at once. That is safe with the
kubelet's spdystream (moby/spdystream connection.go, apimachinery httpstream/spdy connection.go):

- its reader puts every frame of one stream on the same worker queue (partitioned by stream id),
  in arrival order, so a stream's DATA is never handled before its SYN_STREAM;
- the worker handles a SYN_STREAM by calling the kubelet's stream handler, which checks `port`
  and `streamtype`, queues the stream for pairing and then sends the SYN_REPLY (marking the stream
  replied) before that worker takes its next frame. `handleDataFrame` drops DATA for a stream not
  replied yet, so early data would be lost only if the reply came later; it cannot;
- a refused stream (bad headers) is reset instead of replied, and its DATA is dropped: that
  connection fails with the RST_STREAM, which is what it would do anyway;
- the DATA then waits in the stream's channel until the kubelet's copy to the pod reads it, the
  same wait kubectl's first bytes have after its replies.

The pairing by `requestid` does not depend on order either (kubelet httpstream.go keeps half pairs
until the stream-creation timeout).

What no client can avoid: when the kubelet fails a connection (the pod's port refused, or the copy
to the pod broke), nothing reads that data stream any more, and spdystream's worker blocks on the
first DATA for it until the stream's remote side closes, which our FIN or RST (queued behind that
DATA on the same worker) never can. Early data makes this happen for a refused port instead of
only for data sent after the failure; kubectl meets the same and closes its whole session on any
error text. Here the session is `poisoned` instead: it takes no new connections (the dialer opens
a fresh one), and the connections already on it run to their end.

Head-of-line blocking. The kubelet sends without flow control (spdystream ignores WINDOW_UPDATE),
so a connection whose local reader stops would make us buffer without end. Each data stream's
buffer is bounded (`buffer_limit`); once one is full the session is `paused`: the I/O side stops
reading the socket (TCP then holds the kubelet back) until that reader takes its bytes. The dialer
opens new connections on a fresh session meanwhile, so only the connections already sharing the
stalled session wait.

Health: the session sends a PING when nothing went either way for `ping_interval`, and is dead
when that PING is unanswered after `ping_timeout` (see `timer` for what is not judged, and why).
GOAWAY stops new streams; open ones run to their end, streams past the server's last good id
fail. A session that dies fails every connection it carried.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from trayapp.engine.forward.spdy import (
    Data,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    Ping,
    RstStatus,
    RstStream,
    SynReply,
    SynStream,
    data_header,
)
from trayapp.engine.forward.transport import PodRefused
from trayapp.errors import WireError

BUFFER_LIMIT = 1024 * 1024  # bytes from the pod one connection may hold unread
MAX_DATA_FRAME = 64 * 1024  # our DATA frames; the kubelet's own are at most 32 KiB
MAX_ERROR_TEXT = 64 * 1024  # the kubelet's error texts are one line
PING_INTERVAL = 30.0
PING_TIMEOUT = 15.0
_MAX_STREAM_ID = 0x7FFFFFFF
READ_JOIN = 256 * 1024  # the most one read hands the pump at once (its own READ_SIZE)


class SessionLost(PodRefused):
    """The session that carried this connection died (its socket closed, a PING went unanswered,
    the server sent something that is not SPDY): every connection on it ends."""

    def __init__(self, message: str, *, never_reached: bool = False) -> None:
        super().__init__(message)
        self.never_reached = never_reached


class SessionState(enum.Enum):
    OPEN = "open"  # takes new connections
    DRAINING = "draining"  # GOAWAY (theirs or ours): open connections run to their end
    DEAD = "dead"  # every connection on it failed; the socket is to be closed


@dataclass(eq=False)
class _Connection:
    request_id: str
    port: int
    error_id: int
    data_id: int
    received: deque[bytes] = field(default_factory=deque)
    buffered: int = 0
    error_text: bytearray = field(default_factory=bytearray)
    error_done: bool = False  # the error stream ended (FIN or reset)
    pod_eof: bool = False  # the data stream's FIN came
    eof_sent: bool = False
    sent_data: bool = False  # DATA went out on the data stream
    # The kubelet replied to the data stream. It replies as it takes a stream, before it pairs it
    # and copies anything to the pod, so without a reply nothing of ours reached the pod.
    replied: bool = False
    failure: PodRefused | None = None
    closed: bool = False  # the user closed it: forgotten


class SpdyClientSession:
    """One session's protocol state; `now` arguments are the caller's clock (loop.time())."""

    def __init__(self, now: float, *, buffer_limit: int = BUFFER_LIMIT, ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._out: list[bytes | memoryview] = []
        self._by_stream: dict[int, _Connection] = {}
        self._by_handle: dict[int, _Connection] = {}
        self._next_id = 1
        self._next_request = 0
        self._next_ping = 1  # our PING ids are odd, the server's even
        self._changed: set[int] = set()
        self.state = SessionState.OPEN
        self.failure: SessionLost | None = None
        self.buffer_limit = buffer_limit
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._heard = now
        self._sending = False  # the user sent something since the last timer call
        self._ping_sent: tuple[int, float] | None = None
        self.streams_opened = 0
        # The kubelet failed a connection we had sent bytes to: see `poisoned`.
        self.poisoned = False

    # -- output --------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        return b"".join(self.pieces_to_send())

    def pieces_to_send(self) -> list[bytes | memoryview]:
        """What `data_to_send` would join: frames, and DATA as its header and a view of the caller's
        bytes, so a socket that takes a list (TLS writes each piece) needs no copy first."""
        out, self._out = self._out, []
        return out

    def _send(self, *frames: Frame) -> None:
        if self.state is not SessionState.DEAD:
            self._out.extend(self._encoder.encode(f) for f in frames)

    def take_changed(self) -> set[int]:
        """Handles whose connection has news for its reader (bytes, an end, a failure)."""
        changed, self._changed = self._changed, set()
        return changed

    # -- what the user does --------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self.state is SessionState.OPEN and self._next_id + 2 <= _MAX_STREAM_ID

    @property
    def connections(self) -> int:
        """Connections not closed yet by their user."""
        return len(self._by_handle)

    @property
    def paused(self) -> bool:
        """Some connection's buffer is full: stop reading the socket until `resumable`."""
        return any(c.buffered >= self.buffer_limit for c in self._by_handle.values())

    def open(self, port: int) -> int:
        """A new connection to `port`: both streams and the error stream's FIN go out now.
        Returns its handle. Raises SessionLost when the session takes no new connections."""
        if not self.accepting:
            raise SessionLost("kubetray's session to the API server for this pod is closing; the connection "
                              "goes to a new one.")
        error_id, data_id = self._next_id, self._next_id + 2
        self._next_id += 4
        request_id = str(self._next_request)
        self._next_request += 1
        conn = _Connection(request_id, port, error_id, data_id)
        self._by_stream[error_id] = self._by_stream[data_id] = self._by_handle[data_id] = conn
        base = (("port", str(port)), ("requestid", request_id))
        # As kubectl does: the error stream carries nothing from us, so it is half-closed at once.
        self._send(SynStream(error_id, (("streamtype", "error"), *base)), Data(error_id, b"", fin=True),
                   SynStream(data_id, (("streamtype", "data"), *base)))
        self._sending = True
        self.streams_opened += 2
        return data_id

    def send(self, handle: int, data: bytes) -> None:
        conn = self._live(handle)
        if conn.eof_sent:
            raise WireError("kubetray sent bytes after ending its side of a connection.")
        self._sending = True
        conn.sent_data = True
        if self.state is SessionState.DEAD:
            return
        view = memoryview(data)
        for start in range(0, len(view), MAX_DATA_FRAME):
            part = view[start:start + MAX_DATA_FRAME]
            self._out += (data_header(conn.data_id, len(part)), part)

    def send_eof(self, handle: int) -> None:
        conn = self._live(handle)
        if not conn.eof_sent:
            conn.eof_sent = True
            self._send(Data(conn.data_id, b"", fin=True))

    def read(self, handle: int) -> bytes | None:
        """The pod's next bytes, b"" at its EOF, None when there is nothing yet.
        Raises PodRefused (the kubelet's text) or SessionLost once the buffered bytes are read."""
        conn = self._by_handle.get(handle)
        if conn is None:
            return b""
        if conn.received:
            # Everything buffered in one piece (up to READ_JOIN): the kubelet's DATA frames are
            # 32 KiB, and one local write per frame costs more than the join.
            chunk = conn.received.popleft()
            if conn.received and len(chunk) < READ_JOIN:
                parts = [chunk]
                size = len(chunk)
                while conn.received and size + len(conn.received[0]) <= READ_JOIN:
                    part = conn.received.popleft()
                    parts.append(part)
                    size += len(part)
                chunk = b"".join(parts)
            conn.buffered -= len(chunk)
            return chunk
        if conn.failure is not None:
            raise conn.failure
        if conn.error_text and (conn.error_done or conn.pod_eof):
            raise PodRefused(conn.error_text.decode("utf-8", "replace"))
        if conn.pod_eof:
            return b""
        return None

    def buffered(self, handle: int) -> int:
        """Bytes from the pod this connection holds unread."""
        conn = self._by_handle.get(handle)
        return conn.buffered if conn is not None else 0

    def close(self, handle: int) -> None:
        """The user is done: streams still open on either side are reset, the connection forgotten."""
        conn = self._by_handle.pop(handle, None)
        if conn is None:
            return
        conn.closed = True
        conn.received.clear()
        conn.buffered = 0
        if conn.failure is None and not (conn.pod_eof and conn.eof_sent and conn.error_done):
            self._send(*(RstStream(sid, RstStatus.CANCEL) for sid in (conn.error_id, conn.data_id)))
        for sid in (conn.error_id, conn.data_id):
            self._by_stream.pop(sid, None)

    def go_away(self) -> None:
        """No new connections here; the open ones run to their end, then the session ends."""
        if self.state is SessionState.OPEN:
            self._send(GoAway(0))
            self.state = SessionState.DRAINING

    @property
    def finished(self) -> bool:
        """Dead, or draining with nothing left on it: the socket may close."""
        return self.state is SessionState.DEAD or (self.state is SessionState.DRAINING and not self._by_handle)

    def _live(self, handle: int) -> _Connection:
        conn = self._by_handle.get(handle)
        if conn is None:
            raise WireError("kubetray used a connection after closing it.")
        if conn.failure is not None:
            raise conn.failure
        if self.failure is not None:
            raise self.failure
        return conn

    # -- what the server does ------------------------------------------------------------
    def receive_data(self, data: bytes | memoryview, now: float) -> None:
        if self.state is SessionState.DEAD:
            return
        self._heard = now
        try:
            frames = self._decoder.receive_data(data)
        except WireError as exc:
            self.die(f"The API server's port-forward session broke the SPDY protocol ({exc.message}).")
            return
        for frame in frames:
            self._frame(frame)

    def receive_eof(self) -> None:
        self.die("The API server closed kubetray's port-forward session.")

    def _frame(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            self._data(frame)
        elif isinstance(frame, RstStream):
            self._reset(frame)
        elif isinstance(frame, Ping):
            if frame.ping_id % 2 == 0:
                self._send(Ping(frame.ping_id))  # the server's: echoed, as spdystream does
            elif self._ping_sent is not None and self._ping_sent[0] == frame.ping_id:
                self._ping_sent = None
        elif isinstance(frame, GoAway):
            self._gone_away(frame.last_good_stream_id)
        elif isinstance(frame, SynStream):
            self._send(RstStream(frame.stream_id, RstStatus.REFUSED_STREAM))  # the kubelet opens none
        elif isinstance(frame, SynReply):
            # Empty, and our streams did not wait for it; it still tells that the kubelet took them.
            conn = self._by_stream.get(frame.stream_id)
            if conn is not None and frame.stream_id == conn.data_id:
                conn.replied = True
        # SETTINGS, WINDOW_UPDATE and HEADERS carry nothing for port-forward.

    def _data(self, frame: Data) -> None:
        conn = self._by_stream.get(frame.stream_id)
        if conn is None or conn.failure is not None:
            return  # a stream we reset or forgot: its late frames are dropped
        if frame.stream_id == conn.error_id:
            room = MAX_ERROR_TEXT - len(conn.error_text)
            conn.error_text += frame.data[:max(room, 0)]
            if frame.data and conn.sent_data:
                self.poisoned = True
            if frame.fin:
                conn.error_done = True
        else:
            if frame.data:
                conn.received.append(frame.data)
                conn.buffered += len(frame.data)
            if frame.fin:
                conn.pod_eof = True
        self._changed.add(conn.data_id)

    def _reset(self, frame: RstStream) -> None:
        conn = self._by_stream.get(frame.stream_id)
        if conn is None:
            return
        if conn.error_text:
            text = conn.error_text.decode("utf-8", "replace")
        else:
            which = "error" if frame.stream_id == conn.error_id else "data"
            text = (f"The kubelet reset the {which} stream of a connection to port {conn.port} "
                    f"(SPDY status {_status_name(frame.status)}).")
        self._fail(conn, PodRefused(text))

    def _gone_away(self, last_good: int) -> None:
        if self.state is SessionState.OPEN:
            self.state = SessionState.DRAINING
        for conn in list(self._by_handle.values()):
            if conn.error_id > last_good or conn.data_id > last_good:
                self._fail(conn, SessionLost("The API server closed kubetray's port-forward session before it took "
                                             "this connection.", never_reached=True))

    def _fail(self, conn: _Connection, failure: PodRefused) -> None:
        if conn.failure is None:
            conn.failure = failure
            conn.error_done = True
            self._changed.add(conn.data_id)

    def die(self, reason: str) -> None:
        """The session is over: every connection fails with `reason`."""
        if self.state is SessionState.DEAD:
            return
        self.failure = SessionLost(reason)
        for conn in self._by_handle.values():
            self._fail(conn, self.failure if conn.replied else SessionLost(reason, never_reached=True))
        self.state = SessionState.DEAD
        self._out.clear()

    # -- time ----------------------------------------------------------------------------
    def timer(self, now: float, *, write_backlog: bool = False) -> float | None:
        """Call at (or after) the time this returns: a PING goes out on a quiet session, and a
        PING unanswered for `ping_timeout` kills it. None once the session is dead.

        Only silence both ways is judged. While we send (or our writes wait in the socket,
        `write_backlog`), the kubelet may be slow to answer for a good reason: spdystream handles
        a PING on a frame worker that can be blocked behind DATA for a pod that does not read,
        and kubectl never times a PING out at all. A dead path under outgoing data is TCP's to
        notice (kube/connect.py's TCP_USER_TIMEOUT); a stalled session (`paused`) is known to
        have the server's bytes waiting unread.
        """
        if self.state is SessionState.DEAD:
            return None
        if self.paused or self._sending or write_backlog:
            self._heard, self._ping_sent, self._sending = now, None, False
            return now + self.ping_interval
        if self._ping_sent is not None:
            ping_id, sent = self._ping_sent
            if self._heard > sent:  # the answer may sit behind other frames: anything heard will do
                self._ping_sent = None
            elif now >= sent + self.ping_timeout:
                self.die(f"The API server did not answer kubetray's PING within {self.ping_timeout:g} s; the "
                         "path to it is gone.")
                return None
            else:
                return sent + self.ping_timeout
        if now >= self._heard + self.ping_interval:
            ping_id = self._next_ping
            self._next_ping = (self._next_ping + 2) & 0x7FFFFFFF or 1
            self._ping_sent = (ping_id, now)
            self._send(Ping(ping_id))
            return now + self.ping_timeout
        return self._heard + self.ping_interval


def _status_name(status: int) -> str:
    try:
        return RstStatus(status).name
    except ValueError:
        return str(status)
