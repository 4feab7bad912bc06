"""What carries one local connection to a pod's port, whatever the transport underneath.

The pump (pump.py) moves bytes between an accepted local socket and a `PodConnection`; a `Dialer`
opens those. v4 opens a WebSocket per connection; the SPDY transports open a stream pair on a
session they keep per pod. The forwarder picks a dialer per API server (negotiation: spdy-ws,
then spdy, then v4, unless the user forces one) and never knows which one it holds.

Errors: `open` raises kubetray's ApiError family exactly as kube/ raises them for a list
(NotFound for a pod that is gone, ApiUnreachable/ApiBusy for a server that is away, AuthError), and
`TransportRefused` when the API server does not speak this transport, so the negotiation moves on to
the next. `receive` raises `PodRefused` with the kubelet's text when the pod side refuses or breaks
the connection (v4's error channel, SPDY's error stream, or RST_STREAM).
"""

from __future__ import annotations

from typing import Protocol

from trayapp.errors import ApiError, WireError
from trayapp.model import Transport


class TransportRefused(ApiError):
    """The API server does not speak this transport (its upgrade was refused or answered otherwise)."""


class PodRefused(WireError):
    """The kubelet ended this one connection with an error text (its own words in `message`)."""

    # True when the server cannot have handed any of the connection's bytes to the pod (its
    # session died, or said GOAWAY, before the kubelet took the stream): the forwarder may then
    # send the same bytes again on a new session without delivering a request twice.
    never_reached: bool = False


class PodConnection(Protocol):
    """One TCP connection to a pod's port."""

    @property
    def transport(self) -> Transport: ...

    @property
    def half_close(self) -> bool:
        """True when `send_eof` reaches the pod as a FIN and `receive` returns b"" at the pod's
        EOF while sending may go on (SPDY); False for v4, which has no half-close."""
        ...

    async def send(self, data: bytes) -> None:
        """Queue `data` for the pod; returns once the transport can take more (back-pressure)."""
        ...

    async def send_eof(self) -> None:
        """The local side is done sending. No-op where half_close is False."""
        ...

    async def receive(self) -> bytes:
        """The pod's next bytes; b"" once its side ended. Raises PodRefused with the kubelet's text."""
        ...

    async def close(self) -> None:
        """End both directions now (RST where the transport has one). Idempotent, never raises."""
        ...


class Dialer(Protocol):
    """Opens PodConnections to the pods of one API server over one transport."""

    @property
    def transport(self) -> Transport: ...

    async def open(self, namespace: str, pod: str, port: int, timeout: float) -> PodConnection:
        """A new connection to `port` of the pod, within `timeout` seconds."""
        ...

    def warm(self, namespace: str, pod: str) -> None:
        """The tunnel now points at this pod: open its session ahead of the first connection, in the
        background (best effort, errors only logged). No-op for v4."""
        ...

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone or no longer used: let its session go once its streams end."""
        ...

    def network_changed(self) -> None:
        """After sleep or a network change: sessions on the old path are dropped (their streams
        fail), the next connection opens a new session."""
        ...

    async def aclose(self) -> None:
        """Close every session; connections still open end."""
        ...
