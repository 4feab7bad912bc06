"""The v4.channel.k8s.io transport: one WebSocket per TCP connection to a pod's port.

`V4Dialer` is the `Dialer` of this transport (transport.py) and `V4Connection` its PodConnection;
v4 keeps no session, so warming and forgetting a pod cost nothing. The API server's `pods/portforward` subresource upgrades to a WebSocket whose channels carry one
port's data and error streams. The socket is opened by kube/connect.py (proxy, keepalive, TLS
settings shared with lists and watches), and refusals are translated into kubetray's errors with
the same wording as a list's.
"""

from __future__ import annotations

import contextlib
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from trayapp.engine.forward.transport import PodRefused
from trayapp.engine.forward.wire import SUBPROTOCOL, ClientChannels, DataReceived, ErrorReceived
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
from trayapp.errors import ApiUnreachable
from trayapp.model import Transport

# The largest port-forward message kubetray accepts. The kubelet sends at most 32 KiB per
# frame (its copy buffer) and our own pump 256 KiB (pump.READ_SIZE); 4 MiB leaves room for
# any proxy or server that coalesces, while a hostile server's 1 GiB frame is refused from its
# header (websockets checks the length before reading the payload) and closes that stream.
WS_MAX_MESSAGE = 4 * 1024 * 1024


async def dial_v4(api: KubeApi, namespace: str, pod: str, port: int, timeout: float = 10.0) -> ClientConnection:
    """A WebSocket carrying one TCP connection to the pod's port (v4.channel.k8s.io)."""
    return await with_fresh_credentials(api.credentials, lambda: _dial_once(api, namespace, pod, port, timeout))


async def _dial_once(api: KubeApi, namespace: str, pod: str, port: int, timeout: float) -> ClientConnection:
    access = api.access
    scheme = "wss" if access.tls else "ws"
    route = connection.route_for(access)
    uri = f"{scheme}://{route.authority}{portforward_path(api.access, namespace, pod)}?ports={port}"
    headers = []
    authorization = await api.credentials.authorization()
    if authorization:
        headers.append(("Authorization", authorization))
    what = f"port-forward to pod {pod!r} in namespace {namespace!r}"
    sock = await connection.open_socket(route, timeout)  # proxy, keepalive; raises ApiUnreachable
    tls: dict[str, Any] = {}
    if access.tls:
        tls = {"ssl": access.ssl_context, "server_hostname": access.server_hostname or access.host}
    try:
        return await connect(
            uri,
            sock=sock,
            proxy=None,  # the socket already goes through the proxy, when there is one
            subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
            additional_headers=headers,
            user_agent_header=USER_AGENT,
            compression=None,
            max_size=WS_MAX_MESSAGE,
            open_timeout=timeout,
            ping_interval=None,  # the kubelet answers pings, but a busy tunnel proves liveness itself
            close_timeout=2,
            **tls,
        )
    except websockets.InvalidStatus as exc:
        sock.close()
        response = exc.response
        raise error_for_status(
            response.status_code, status_message(bytes(response.body or b""), f"HTTP {response.status_code}"),
            what, context=access.context, server=access.server,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        ) from exc
    except websockets.InvalidHandshake as exc:
        sock.close()
        if isinstance(exc.__cause__, (OSError, EOFError)):  # the connection broke mid-handshake
            raise connection.unreachable(exc.__cause__, route, timeout, access.server_hostname) from exc
        raise ApiUnreachable(f"{route.described[:1].upper()}{route.described[1:]} did not open a {what}: "
                             "its answer was not a WebSocket handshake.") from exc
    except (TimeoutError, OSError) as exc:
        sock.close()
        raise connection.unreachable(exc, route, timeout, access.server_hostname) from exc


class V4Connection:
    """One pod connection on its own v4 WebSocket: data on channel 0, the kubelet's error text on 1."""

    def __init__(self, ws: ClientConnection, port: int) -> None:
        self._ws = ws
        self._channels = ClientChannels([port])
        self._pending: list[bytes] = []  # data that came in one message with more of it
        self._refused: str | None = None  # error text that came after data in one message

    @property
    def transport(self) -> Transport:
        return Transport.V4

    @property
    def half_close(self) -> bool:
        return False

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(self._channels.encode_data(data))
        except ConnectionClosed as exc:  # the pump knows sockets, not WebSockets
            raise ConnectionResetError("the port-forward WebSocket is closed") from exc

    async def send_eof(self) -> None:
        """v4 has no half-close: the pump lingers instead (pump.HALF_CLOSE_LINGER)."""

    async def receive(self) -> bytes:
        while not self._pending:
            if self._refused is not None:
                raise PodRefused(self._refused)
            try:
                message = await self._ws.recv()
            except ConnectionClosed:
                return b""
            for event in self._channels.receive(message):  # WireError for a malformed message
                if isinstance(event, DataReceived):
                    if event.data:
                        self._pending.append(event.data)
                elif isinstance(event, ErrorReceived):
                    self._refused = event.text
                    break
        return self._pending.pop(0)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()


class V4Dialer:
    """Opens one v4 WebSocket per connection, to the pods of one API server."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    @property
    def transport(self) -> Transport:
        return Transport.V4

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> V4Connection:
        ws = await dial_v4(self._api, namespace, pod, port, timeout)
        return V4Connection(ws, port)

    def warm(self, namespace: str, pod: str) -> None:
        """Nothing to open ahead: each connection dials its own WebSocket."""

    def forget(self, namespace: str, pod: str) -> None:
        """Nothing is kept per pod."""

    def network_changed(self) -> None:
        """Nothing is kept across connections; the forwarder ends the open ones itself."""

    async def aclose(self) -> None:
        """Each connection's WebSocket is closed by its own pump."""
