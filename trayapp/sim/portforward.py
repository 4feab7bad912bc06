"""The kubelet's side of one port-forward WebSocket (`v4.channel.k8s.io`): upgrade, then relay
each requested port between the WebSocket and that pod's backend listener.

Framing is the websockets library's sans-I/O ServerProtocol, channels are
`trayapp.engine.forward.wire.ServerChannels`; this module only pumps bytes between transports. Flow
control is end to end: a full WebSocket send buffer pauses reading from the backends, a full
backend buffer pauses reading from the WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol

from trayapp.engine.forward import SUBPROTOCOL, ServerChannels
from trayapp.errors import WireError
from trayapp.sim.http import HttpConnection, Request

log = logging.getLogger(__name__)

# A client that ignores our close frame loses its socket after this long.
CLOSE_TIMEOUT = 5.0


def flush_websocket(ws: ServerProtocol, conn: HttpConnection) -> None:
    """Write what the sans-I/O WebSocket has to send; close the socket once its closing is over."""
    transport = conn.transport
    if transport is None:
        return
    for chunk in ws.data_to_send():
        if chunk:
            if not transport.is_closing():
                transport.write(chunk)
        else:
            # websockets asks for EOF: the closing handshake is over on our side.
            conn.close()
    if ws.state is State.CLOSED:
        conn.close()


@dataclass(frozen=True)
class PortTarget:
    port: int
    address: tuple[str, int] | None  # the backend listener; None: nothing listens on that port
    error: str | None = None  # the error-channel text instead of connecting (a lost sandbox)


def sandbox_gone_text(port: int, pod_name: str, uid: str) -> str:
    """containerd's wording when the API still has the pod but the node no longer has its sandbox."""
    return f"error forwarding port {port} to pod {uid}, uid : failed to find sandbox \"{uid}\" in store: not found"


def refused_text(port: int, pod_name: str) -> str:
    """The kubelet's (containerd's) wording for a port nothing listens on."""
    return (f"error forwarding port {port} to pod {pod_name}, uid : failed to execute portforward in "
            f"network namespace \"/var/run/netns/cni-sim\": failed to connect to localhost:{port} inside "
            f"namespace \"{pod_name}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused ")


class _BackendSide(asyncio.Protocol):
    def __init__(self, session: PortForwardSession, index: int) -> None:
        self._session = session
        self._index = index
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._session.to_client(self._index, data)

    def pause_writing(self) -> None:
        self._session.backend_full(self._index, True)

    def resume_writing(self) -> None:
        self._session.backend_full(self._index, False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.backend_closed(self._index)


class PortForwardSession:
    """Owns the upgraded socket (via HttpConnection.take_over) and one backend per port."""

    def __init__(self, conn: HttpConnection, pod_name: str, targets: list[PortTarget],
                 tasks: set[asyncio.Task[None]]) -> None:
        self._conn = conn
        self._pod = pod_name
        self._targets = targets
        self._channels = ServerChannels([t.port for t in targets])
        # Our h11 server already read the HTTP request, so framing starts in state OPEN; a
        # separate protocol object (in `upgrade`) computes the handshake answer.
        self._ws = ServerProtocol(state=OPEN, max_size=None)
        self._backends: list[_BackendSide | None] = [None] * len(targets)
        self._pending: list[list[bytes]] = [[] for _ in targets]
        self._done = [False] * len(targets)
        self._full: set[int] = set()
        self._tasks = tasks
        self._close_timer: asyncio.TimerHandle | None = None
        self._lost = False
        self.forget: Callable[[], None] | None = None  # unregisters pod_stopped, if registered

    # -- handshake -----------------------------------------------------------------------
    def upgrade(self, request: Request) -> None:
        headers = Headers()
        for name, value in request.headers.items():
            headers[name] = value
        # The API server also takes POST for port-forward; websockets only knows GET.
        shake = ServerProtocol(subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
        response = shake.accept(WsRequest(request.target, headers))
        shake.send_response(response)
        handshake = b"".join(shake.data_to_send())
        if response.status_code != 101:
            assert self._conn.transport is not None
            self._conn.transport.write(handshake)
            self._conn.close()
            return
        trailing = self._conn.take_over(self, handshake)
        for message in self._channels.opening_messages():
            self._ws.send_binary(message)
        self._flush()
        loop = asyncio.get_running_loop()
        for index, target in enumerate(self._targets):
            if target.address is None or target.error:
                self._refuse(index)
            else:
                task = loop.create_task(self._connect(index, target.address),
                                        name=f"sim:portforward:{self._pod}:{target.port}:connect")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if trailing:
            self.data_received(trailing)

    async def _connect(self, index: int, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, side = await loop.create_connection(lambda: _BackendSide(self, index), *address)
        except OSError:
            self._refuse(index)
            return
        if self._lost:
            assert side.transport is not None
            side.transport.close()
            return
        self._backends[index] = side
        assert side.transport is not None
        for chunk in self._pending[index]:
            side.transport.write(chunk)
        self._pending[index].clear()
        if not any(self._pending):
            self._conn.resume_reading()

    def pod_stopped(self) -> None:
        """The pod's programs died under open connections: say so on their error channels, as a
        kubelet whose copy to the pod broke does (the backends' close follows)."""
        for index, side in enumerate(self._backends):
            if side is not None and self._ws.state is OPEN:
                port = self._targets[index].port
                self._ws.send_binary(self._channels.encode_error(
                    f"error forwarding port {port} to pod {self._pod}, uid : failed to execute portforward in "
                    f"network namespace \"/var/run/netns/cni-sim\": read tcp4 127.0.0.1:51234->127.0.0.1:{port}: "
                    "read: connection reset by peer", index))
        self._flush()

    def _refuse(self, index: int) -> None:
        if self._ws.state is OPEN:
            target = self._targets[index]
            self._ws.send_binary(self._channels.encode_error(target.error or refused_text(target.port, self._pod),
                                                             index))
            self._flush()
        self.backend_closed(index)

    # -- client -> backend ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for frame in self._ws.events_received():
            if not isinstance(frame, Frame):
                continue
            if frame.opcode is Opcode.BINARY:
                self._from_client(bytes(frame.data))
            elif frame.opcode is Opcode.TEXT:
                self._ws.fail(1003, "v4.channel.k8s.io carries binary messages only")
            elif frame.opcode is Opcode.CLOSE:
                self._close_backends()
        self._flush()

    def _from_client(self, message: bytes) -> None:
        try:
            data = self._channels.receive(bytes(message))
        except WireError as exc:
            self._ws.fail(1002, exc.message[:120])
            return
        side = self._backends[data.port_index]
        if side is not None and side.transport is not None:
            side.transport.write(data.data)
        elif not self._done[data.port_index]:
            # The backend connection is still being made: hold the bytes, stop reading.
            self._pending[data.port_index].append(data.data)
            self._conn.pause_reading()

    def eof_received(self) -> None:
        self._ws.receive_eof()
        self._close_backends()
        self._flush()

    # -- backend -> client ---------------------------------------------------------------
    def to_client(self, index: int, data: bytes) -> None:
        if self._ws.state is not OPEN:
            return
        self._ws.send_binary(self._channels.encode_data(data, index))
        self._flush()

    def backend_full(self, index: int, full: bool) -> None:
        (self._full.add if full else self._full.discard)(index)
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            return
        if self._full:
            transport.pause_reading()
        elif not any(self._pending):
            transport.resume_reading()

    def backend_closed(self, index: int) -> None:
        self._done[index] = True
        self._backends[index] = None
        if all(self._done) and self._ws.state is OPEN:
            # Everything the backend sent is already in the transport's buffer, ahead of this.
            self._ws.send_close(1000)
            self._flush()
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._conn.abort)

    # -- WebSocket side flow control -----------------------------------------------------
    def pause_writing(self) -> None:
        for side in self._backends:
            if side is not None and side.transport is not None:
                side.transport.pause_reading()

    def resume_writing(self) -> None:
        for side in self._backends:
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.resume_reading()

    def _flush(self) -> None:
        flush_websocket(self._ws, self._conn)

    def _close_backends(self) -> None:
        for side in self._backends:
            if side is not None and side.transport is not None:
                side.transport.close()

    def connection_lost(self) -> None:
        self._lost = True
        if self.forget is not None:
            self.forget()
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_backends()
        self._pending = [[] for _ in self._targets]
