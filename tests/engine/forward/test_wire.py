"""Byte-exact tests of the v4.channel.k8s.io codec, with no sockets."""

import pytest

from trayapp.engine.forward import wire


def test_client_confirms_both_channels_then_passes_data() -> None:
    client = wire.ClientChannels([8080])
    assert client.receive(b"\x00\x90\x1f") == [wire.PortConfirmed(0, 8080, False)]
    assert not client.confirmed
    assert client.receive(b"\x01\x90\x1f") == [wire.PortConfirmed(0, 8080, True)]
    assert client.confirmed
    assert client.receive(b"\x00hello") == [wire.DataReceived(0, b"hello")]
    assert client.receive(b"\x00") == [wire.DataReceived(0, b"")]


def test_error_channel_text_is_decoded() -> None:
    client = wire.ClientChannels([80])
    client.receive(b"\x00\x50\x00")
    client.receive(b"\x01\x50\x00")
    text = "error forwarding port 80 to pod web-1, uid : connect: connection refused"
    assert client.receive(b"\x01" + text.encode()) == [wire.ErrorReceived(0, text)]


def test_first_message_may_carry_payload_after_the_port() -> None:
    client = wire.ClientChannels([80])
    assert client.receive(b"\x00\x50\x00abc") == [wire.PortConfirmed(0, 80, False), wire.DataReceived(0, b"abc")]


def test_second_port_uses_channels_two_and_three() -> None:
    client = wire.ClientChannels([80, 443])
    assert client.receive(b"\x02\xbb\x01") == [wire.PortConfirmed(1, 443, False)]
    assert client.receive(b"\x03\xbb\x01") == [wire.PortConfirmed(1, 443, True)]
    assert client.receive(b"\x02x") == [wire.DataReceived(1, b"x")]
    assert client.encode_data(b"y", 1) == b"\x02y"


def test_client_encodes_data_with_channel_byte_only() -> None:
    assert wire.ClientChannels([8080]).encode_data(b"GET / HTTP/1.1\r\n") == b"\x00GET / HTTP/1.1\r\n"


def test_unexpected_port_is_a_typed_error() -> None:
    client = wire.ClientChannels([8080])
    with pytest.raises(wire.UnexpectedPort) as caught:
        client.receive(b"\x00\x91\x1f")
    assert (caught.value.expected, caught.value.got) == (8080, 8081)


@pytest.mark.parametrize(
    "message",
    [b"", b"\x00\x90", b"\x04\x90\x1f", "text frame"],
    ids=["empty", "short-port", "unknown-channel", "text"],
)
def test_malformed_messages_are_rejected(message: bytes | str) -> None:
    with pytest.raises(wire.BadMessage):
        wire.ClientChannels([8080]).receive(message)


def test_server_opening_messages_and_roundtrip() -> None:
    server = wire.ServerChannels([8080, 9090])
    assert server.opening_messages() == [b"\x00\x90\x1f", b"\x01\x90\x1f", b"\x02\x82\x23", b"\x03\x82\x23"]
    client = wire.ClientChannels([8080, 9090])
    for message in server.opening_messages():
        client.receive(message)
    assert client.confirmed
    assert server.receive(client.encode_data(b"ping", 1)) == wire.ClientData(1, b"ping")
    assert client.receive(server.encode_data(b"pong", 1)) == [wire.DataReceived(1, b"pong")]
    assert server.encode_error("boom") == b"\x01boom"


def test_server_rejects_client_writes_to_error_channel() -> None:
    with pytest.raises(wire.BadMessage):
        wire.ServerChannels([80]).receive(b"\x01oops")


def test_ports_are_checked() -> None:
    with pytest.raises(ValueError):
        wire.ClientChannels([])
    with pytest.raises(ValueError):
        wire.ClientChannels([0])
