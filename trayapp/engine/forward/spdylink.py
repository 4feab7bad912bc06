"""Open the byte stream a port-forward SPDY session rides on: an HTTP/1.1 upgrade of a connection
to the API server, plain (`Upgrade: SPDY/3.1`) or as a WebSocket whose binary messages carry the
SPDY bytes (subprotocol `SPDY/3.1+portforward.k8s.io`, KEP-4006).

Both upgrades are written here on one socket from kube/connect.py (proxy, keepalive, TLS), rather
than with the websockets client: its handshake parses the answer's subprotocol as an RFC 7230
token, which "SPDY/3.1+portforward.k8s.io" is not (the "/"). After the upgrade wsframes.py reads
the server's WebSocket frames and writes our data frames; the websockets library's sans-I/O
`Protocol` writes our control frames.

Refusals become kubetray's errors with a list's wording (`error_for_status`), and
`TransportRefused` when the server does not speak the carrier. What a server that does not answers:
- no `PortForwardWebsockets` (API servers before 1.31, or the gate off): the API server proxies the
  WebSocket request to the kubelet, whose port-forward handler wants `?ports=` on a WebSocket and
  answers 400 with a plain-text reason (kubelet server.go, `NewV4Options`); with ports it would
  offer only v4 subprotocols (wsstream answers 403). client-go falls back on any non-101 answer
  (`httpstream.IsUpgradeFailure`) and on a 101 without the subprotocol it asked for;
- no SPDY (a proxy or gateway in front): `httpstream.Handshake`'s 403 text, or an answer that is
  not an upgrade at all.
A 400 or 403 that is a Kubernetes `Status` object is the API server itself speaking (RBAC, a pod
that is not running) and keeps its meaning.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

from websockets.protocol import OPEN, Protocol, Side
from websockets.utils import accept_key

from trayapp.engine.aio import deadline
from trayapp.engine.forward.sessionsocket import SessionSocket
from trayapp.engine.forward.transport import TransportRefused
from trayapp.engine.forward.wsframes import CLOSE, PING, TEXT, ServerFrameReader, client_binary_frame
from trayapp.engine.kube import (
    USER_AGENT,
    KubeApi,
    error_for_status,
    portforward_path,
    retry_after_seconds,
    status_message,
    with_fresh_credentials,
)
from trayapp.engine.kube import connect as connection
from trayapp.errors import ApiUnreachable, WireError

PROTOCOL = "portforward.k8s.io"
TUNNEL_SUBPROTOCOL = f"SPDY/3.1+{PROTOCOL}"
MAX_RESPONSE_HEAD = 64 * 1024
MAX_ERROR_BODY = 64 * 1024
# The largest WebSocket message kubetray takes: the API server's tunnel writes each SPDY frame
# write as a message (at most a 32 KiB DATA frame and its header).
WS_MAX_MESSAGE = 4 * 1024 * 1024


Pieces = list[bytes | memoryview]


class Carrier:
    """Plain SPDY: the session's bytes are the socket's bytes."""

    def wrap(self, pieces: Pieces) -> Pieces:
        """The SPDY bytes `pieces` as the socket's bytes (pieces too: written with writelines)."""
        return pieces

    def unwrap(self, data: memoryview) -> tuple[list[bytes | memoryview], bytes, bool]:
        """(stretches of the SPDY byte stream, bytes to write back, the peer ended the stream)"""
        return [data], b"", False

    def closing(self) -> bytes:
        return b""


class WebSocketCarrier(Carrier):
    """SPDY in binary WebSocket messages; pings are answered, a close frame is the end. wsframes.py
    reads the server's frames and writes our data frames; the websockets library writes our
    control frames (pong, close) and keeps the closing state."""

    def __init__(self) -> None:
        self._ws = Protocol(Side.CLIENT, state=OPEN, max_size=WS_MAX_MESSAGE)
        self._frames = ServerFrameReader(WS_MAX_MESSAGE)

    def _out(self) -> bytes:
        return b"".join(self._ws.data_to_send())

    def wrap(self, pieces: Pieces) -> Pieces:
        if self._ws.state is not OPEN:
            return []
        return client_binary_frame(pieces)

    def unwrap(self, data: memoryview) -> tuple[list[bytes | memoryview], bytes, bool]:
        if self._frames.closed:
            return [], b"", True
        try:
            stream, controls = self._frames.receive_data(data)
        except WireError:
            if self._ws.state is OPEN:
                self._ws.fail(1002, "a frame no WebSocket server may send")
            return [], self._out(), True
        ended = False
        for control in controls:
            if self._ws.state is not OPEN:
                ended = ended or control.opcode in (TEXT, CLOSE)
            elif control.opcode == PING:
                self._ws.send_pong(control.payload)
            elif control.opcode == TEXT:
                self._ws.fail(1003, "the SPDY tunnel carries binary messages only")
                ended = True
            elif control.opcode == CLOSE:
                self._ws.send_close(_close_code(control.payload))
                ended = True
        return list(stream), self._out(), ended

    def closing(self) -> bytes:
        if self._ws.state is OPEN:
            self._ws.send_close(1000)
        return self._out()


def _close_code(payload: bytes) -> int | None:
    """The close frame's own code, to send back as RFC 6455 section 5.5.1 asks; None if it had none."""
    if len(payload) >= 2:
        code = int.from_bytes(payload[:2], "big")
        if 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015):
            return code
    return None


@dataclass
class Upgraded:
    socket: SessionSocket
    carrier: Carrier


async def upgrade(api: KubeApi, namespace: str, pod: str, *, over_websocket: bool, timeout: float) -> Upgraded:
    """An upgraded connection for one SPDY session to the pod; one retry with fresh credentials on 401."""
    return await with_fresh_credentials(
        api.credentials, lambda: _upgrade_once(api, namespace, pod, over_websocket, timeout))


async def _upgrade_once(api: KubeApi, namespace: str, pod: str, over_websocket: bool, timeout: float) -> Upgraded:
    access = api.access
    route = connection.route_for(access)
    what = f"port-forward to pod {pod!r} in namespace {namespace!r}"
    _, sock = await connection.open_protocol(access, SessionSocket, timeout)  # raises ApiUnreachable
    try:
        async with deadline(timeout):
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [
                f"{'GET' if over_websocket else 'POST'} {portforward_path(api.access, namespace, pod)} HTTP/1.1",
                f"Host: {route.authority}", f"User-Agent: {USER_AGENT}", "Connection: Upgrade",
            ]
            if over_websocket:
                lines += ["Upgrade: websocket", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {key}",
                          f"Sec-WebSocket-Protocol: {TUNNEL_SUBPROTOCOL}"]
            else:
                lines += ["Upgrade: SPDY/3.1", f"X-Stream-Protocol-Version: {PROTOCOL}", "Content-Length: 0"]
            authorization = await api.credentials.authorization()
            if authorization:
                lines.append(f"Authorization: {authorization}")
            sock.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await sock.read_until(b"\r\n\r\n", MAX_RESPONSE_HEAD)
            status, headers = _parse_head(head)
            if status != 101:
                body = await _body(sock, headers)
                raise _refusal(status, headers, body, what, over_websocket, api)
            if over_websocket:
                if headers.get("sec-websocket-accept") != accept_key(key) or \
                        headers.get("sec-websocket-protocol", "").strip() != TUNNEL_SUBPROTOCOL:
                    raise TransportRefused(f"The API server {access.server} upgraded the {what} to a WebSocket "
                                           f"without SPDY in it (subprotocol "
                                           f"{headers.get('sec-websocket-protocol', 'none')!r}).", status=101)
                return Upgraded(sock, WebSocketCarrier())
            if headers.get("upgrade", "").strip().lower() != "spdy/3.1":
                raise TransportRefused(f"The API server {access.server} upgraded the {what} to "
                                       f"{headers.get('upgrade', 'nothing')!r} instead of SPDY/3.1.", status=101)
            return Upgraded(sock, Carrier())
    except BaseException as exc:
        sock.abort()
        if isinstance(exc, ValueError):
            raise ApiUnreachable(f"{route.described[:1].upper()}{route.described[1:]} did not answer the {what} "
                                 "with an HTTP response kubetray can read.") from exc
        if isinstance(exc, TimeoutError | OSError):
            raise connection.unreachable(exc, route, timeout, access.server_hostname) from exc
        raise


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError("not an HTTP/1.1 status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return int(parts[1]), headers


async def _body(sock: SessionSocket, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length", "")
    if length.isdigit():
        return await sock.read_exactly(min(int(length), MAX_ERROR_BODY))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return b""  # an error body kubetray does not need: the status says enough
    return await sock.read_to_end(MAX_ERROR_BODY)


def _is_status(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("kind") == "Status"


def _refusal(status: int, headers: dict[str, str], body: bytes, what: str, over_websocket: bool,
             api: KubeApi) -> Exception:
    carrier = "SPDY in a WebSocket" if over_websocket else "SPDY"
    if (status in (400, 403) and not _is_status(body)) or 200 <= status < 400:
        reason = body.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"
        return TransportRefused(f"The API server {api.access.server} does not serve {carrier} for the {what} "
                                f"(HTTP {status}: {reason.rstrip('.')}).", status=status)
    return error_for_status(status, status_message(body, f"HTTP {status}"), what, context=api.access.context,
                            server=api.access.server, retry_after=retry_after_seconds(headers.get("retry-after")))
