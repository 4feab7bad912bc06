"""SPDY port-forward carried in a WebSocket (KEP-4006, subprotocol `SPDY/3.1+portforward.k8s.io`):
what kubectl asks for first since 1.31. The API server answers the WebSocket upgrade and the SPDY
session's bytes then travel in binary messages, in either direction cut anywhere.

Only the carrier lives here; the session is `spdyforward.SpdyForwardSession`. WebSocket framing
is the websockets library's sans-I/O ServerProtocol, as in the v4 path; the handshake answer is
written here.
"""

from __future__ import annotations

import asyncio

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from trayapp.sim.http import HttpConnection, Request
from trayapp.sim.portforward import flush_websocket
from trayapp.sim.spdyforward import SpdyForwardSession

TUNNEL_SUBPROTOCOL = "SPDY/3.1+portforward.k8s.io"
# A client that ignores our close frame loses its socket after this long.
CLOSE_TIMEOUT = 5.0


def offers_tunnel(request: Request) -> bool:
    offered = request.headers.get("sec-websocket-protocol", "")
    return TUNNEL_SUBPROTOCOL in (p.strip() for p in offered.split(","))


class SpdyTunnel:
    """Owns the upgraded socket: WebSocket messages in and out, SPDY bytes to and from the session."""

    def __init__(self, conn: HttpConnection, session: SpdyForwardSession) -> None:
        self._conn = conn
        self._session = session
        # Our h11 server already read the HTTP request, so framing starts in state OPEN; a
        # separate protocol object (in `upgrade`) computes the handshake answer.
        self._ws = ServerProtocol(state=OPEN, max_size=None)
        self._close_timer: asyncio.TimerHandle | None = None

    def upgrade(self, request: Request) -> None:
        # websockets' handshake reads subprotocols as RFC 7230 tokens, which "SPDY/3.1+..." is
        # not (the "/"), so the answer is made here; the checks are RFC 6455's.
        key = request.headers.get("sec-websocket-key", "")
        if (request.headers.get("upgrade", "").lower() != "websocket"
                or request.headers.get("sec-websocket-version") != "13" or not key):
            self._conn.respond(400, b"Failed to open a WebSocket connection: not a WebSocket version 13 "
                                    b"upgrade.\n", "text/plain", close=True)
            return
        handshake = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
                     f"Sec-WebSocket-Protocol: {TUNNEL_SUBPROTOCOL}\r\n\r\n").encode()
        trailing = self._conn.take_over(self, handshake)
        self._session.start(self)
        if trailing:
            self.data_received(trailing)

    # -- SpdyLink ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._ws.state is OPEN:
            self._ws.send_binary(data)
            self._flush()

    def close(self) -> None:
        if self._ws.state is OPEN:
            self._ws.send_close(1000)
            self._flush()
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._conn.abort)

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    # -- TakeOver ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for frame in self._ws.events_received():
            if not isinstance(frame, Frame):
                continue
            if frame.opcode is Opcode.BINARY:
                self._session.receive_data(bytes(frame.data))
            elif frame.opcode is Opcode.TEXT:
                self._ws.fail(1003, "the SPDY tunnel carries binary messages only")
            elif frame.opcode is Opcode.CLOSE:
                self._session.receive_eof()
        self._flush()

    def eof_received(self) -> None:
        self._ws.receive_eof()
        self._session.receive_eof()
        self._flush()

    def pause_writing(self) -> None:
        self._session.link_full(True)

    def resume_writing(self) -> None:
        self._session.link_full(False)

    def connection_lost(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._session.connection_lost()

    def _flush(self) -> None:
        flush_websocket(self._ws, self._conn)
