"""Sans-I/O codec for the Kubernetes port-forward channel protocol `v4.channel.k8s.io`.

A port-forward WebSocket carries, for the i-th port of its `ports=` query, a data channel 2i and
an error channel 2i+1. Every binary message starts with its channel byte. The server opens each
channel with a message whose payload is the port as a little-endian uint16; after that, data-channel
payloads are the TCP bytes and error-channel payloads are the kubelet's error text. The client
sends channel byte + payload, with no port prefix.

This module only turns messages into events and payloads into messages. It never touches a
socket, so the same code serves the engine (client role) and the simulator (server role).
Standard library only.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from trayapp.errors import WireError

SUBPROTOCOL = "v4.channel.k8s.io"
_PORT = struct.Struct("<H")


def data_channel(port_index: int) -> int:
    return 2 * port_index


def error_channel(port_index: int) -> int:
    return 2 * port_index + 1


@dataclass(frozen=True)
class PortConfirmed:
    """The server opened a channel and named the port it serves."""

    port_index: int
    port: int
    is_error_channel: bool


@dataclass(frozen=True)
class DataReceived:
    port_index: int
    data: bytes


@dataclass(frozen=True)
class ErrorReceived:
    """Text on an error channel: that port's connection failed."""

    port_index: int
    text: str


ChannelEvent = PortConfirmed | DataReceived | ErrorReceived


class UnexpectedPort(WireError):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"The API server opened the channel for port {got}, but kubetray asked for port {expected}.")
        self.expected = expected
        self.got = got


class BadMessage(WireError):
    pass


def _check_ports(ports: Sequence[int]) -> tuple[int, ...]:
    if not ports:
        raise ValueError("a port-forward stream needs at least one port")
    if len(ports) > 127:
        raise ValueError("at most 127 ports fit in one stream's channel numbers")
    for port in ports:
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is outside 1-65535")
    return tuple(ports)


class ClientChannels:
    """The client's side of one port-forward stream."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = _check_ports(ports)
        self._opened: set[int] = set()

    @property
    def confirmed(self) -> bool:
        """True once the server has opened every data and error channel."""
        return len(self._opened) == 2 * len(self.ports)

    def receive(self, message: bytes | str) -> list[ChannelEvent]:
        """Decode one WebSocket message from the server into events (none, one or two)."""
        if isinstance(message, str):
            raise BadMessage("The API server sent a text message on a binary v4.channel.k8s.io stream.")
        if not message:
            raise BadMessage("The API server sent an empty port-forward message with no channel byte.")
        channel = message[0]
        port_index, is_error = divmod(channel, 2)
        if port_index >= len(self.ports):
            raise BadMessage(f"The API server sent data on channel {channel}, which no requested port uses.")
        payload = bytes(message[1:])
        events: list[ChannelEvent] = []
        if channel not in self._opened:
            if len(payload) < _PORT.size:
                raise BadMessage(
                    f"The API server's first message on channel {channel} is {len(payload)} bytes long; "
                    "it must start with the 2-byte port number."
                )
            (port,) = _PORT.unpack_from(payload)
            if port != self.ports[port_index]:
                raise UnexpectedPort(self.ports[port_index], port)
            self._opened.add(channel)
            events.append(PortConfirmed(port_index, port, bool(is_error)))
            payload = payload[_PORT.size:]
            if not payload:
                return events
        if is_error:
            events.append(ErrorReceived(port_index, payload.decode("utf-8", errors="replace")))
        else:
            events.append(DataReceived(port_index, payload))
        return events

    def encode_data(self, data: bytes, port_index: int = 0) -> bytes:
        """The message that carries `data` to the pod's port."""
        if not 0 <= port_index < len(self.ports):
            raise ValueError(f"port index {port_index} is not in this stream")
        return bytes((data_channel(port_index),)) + data


@dataclass(frozen=True)
class ClientData:
    port_index: int
    data: bytes


class ServerChannels:
    """The server's (kubelet's) side of one port-forward stream, used by the simulator."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = _check_ports(ports)

    def opening_messages(self) -> list[bytes]:
        """The first message of every channel, in the order the kubelet sends them."""
        messages = []
        for index, port in enumerate(self.ports):
            prefix = _PORT.pack(port)
            messages.append(bytes((data_channel(index),)) + prefix)
            messages.append(bytes((error_channel(index),)) + prefix)
        return messages

    def receive(self, message: bytes | str) -> ClientData:
        if isinstance(message, str):
            raise BadMessage("The client sent a text message on a binary v4.channel.k8s.io stream.")
        if not message:
            raise BadMessage("The client sent an empty port-forward message with no channel byte.")
        port_index, is_error = divmod(message[0], 2)
        if port_index >= len(self.ports):
            raise BadMessage(f"The client sent data on channel {message[0]}, which no requested port uses.")
        if is_error:
            raise BadMessage(f"The client wrote to error channel {message[0]}; only the server may.")
        return ClientData(port_index, bytes(message[1:]))

    def encode_data(self, data: bytes, port_index: int = 0) -> bytes:
        return bytes((data_channel(port_index),)) + data

    def encode_error(self, text: str, port_index: int = 0) -> bytes:
        return bytes((error_channel(port_index),)) + text.encode("utf-8")
