"""wsframes.py (the server's WebSocket frames, read sans-I/O) and the SPDY-in-WebSocket carrier,
against frames written by an independent encoder: the websockets library in the server role."""

from __future__ import annotations

import random
import struct

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from trayapp.engine.forward.spdylink import WebSocketCarrier
from trayapp.engine.forward.wsframes import BINARY, CLOSE, PING, TEXT, Control, ServerFrameReader
from trayapp.errors import WireError


def server() -> Protocol:
    return Protocol(Side.SERVER, state=OPEN, max_size=None)


def wire(ws: Protocol) -> bytes:
    return b"".join(ws.data_to_send())


def read_all(reader: ServerFrameReader, data: bytes, cuts: list[int]) -> tuple[bytes, list[Control]]:
    """Feeds `data` cut at `cuts`; returns the stream bytes and the control frames."""
    stream, controls = bytearray(), []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        parts, found = reader.receive_data(data[start:end])
        for part in parts:
            stream += part
        controls += found
    return bytes(stream), controls


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def test_binary_frames_of_every_length_class_in_one_read() -> None:
    ws = server()
    payloads = [bytes([n % 251]) * n for n in SIZES]
    for payload in payloads:
        ws.send_binary(payload)
    stream, controls = read_all(ServerFrameReader(1 << 20), wire(ws), [])
    assert stream == b"".join(payloads)
    assert controls == []


def test_every_cut_of_a_frame_sequence_gives_the_same_stream() -> None:
    ws = server()
    ws.send_binary(b"a" * 130)
    ws.send_ping(b"are you there")
    ws.send_binary(b"bc", fin=False)
    ws.send_continuation(b"d" * 300, fin=True)
    ws.send_binary(b"")
    ws.send_close(1000, "bye")
    data = wire(ws)
    expected = b"a" * 130 + b"bc" + b"d" * 300
    for cut in range(len(data) + 1):
        stream, controls = read_all(ServerFrameReader(1 << 20), data, [cut])
        assert stream == expected, cut
        assert controls == [Control(PING, b"are you there"), Control(CLOSE, Close(1000, "bye").serialize())], cut
    rng = random.Random(7)
    for _ in range(200):
        cuts = rng.sample(range(len(data)), rng.randint(1, 30))
        assert read_all(ServerFrameReader(1 << 20), data, cuts)[0] == expected


def test_byte_by_byte() -> None:
    ws = server()
    ws.send_binary(b"x" * 66000)
    ws.send_binary(b"y" * 200)
    data = wire(ws)
    stream, _ = read_all(ServerFrameReader(1 << 20), data, list(range(1, len(data))))
    assert stream == b"x" * 66000 + b"y" * 200


def test_data_is_passed_on_before_its_frame_ends_and_without_copies() -> None:
    ws = server()
    ws.send_binary(b"z" * 1000)
    data = wire(ws)
    reader = ServerFrameReader(1 << 20)
    parts, _ = reader.receive_data(data[:500])
    assert b"".join(parts) == b"z" * (500 - 4)  # 4 header bytes: 126 and a 16-bit length
    assert all(isinstance(part, memoryview) for part in parts)
    parts, _ = reader.receive_data(data[500:])
    assert b"".join(parts) == b"z" * 504


def test_nothing_after_a_close_frame_is_read() -> None:
    ws = server()
    ws.send_close(1001)
    data = wire(ws) + b"\x82\x01!"  # a binary frame no server would send after its close
    reader = ServerFrameReader(1 << 20)
    stream, controls = reader.receive_data(data)
    assert stream == [] and [c.opcode for c in controls] == [CLOSE] and reader.closed


# Written by hand: the websockets library refuses to write these.
@pytest.mark.parametrize(("data", "words"), [
    (b"\xc2\x01x", "reserved bits"),  # FIN, RSV1, binary
    (bytes([0x89, 126]) + struct.pack(">H", 126) + b"p" * 126, "control frame of 126 bytes"),
    (b"\x09\x01p", "fragmented"),  # a ping without FIN
])
def test_frames_no_server_may_send_are_refused(data: bytes, words: str) -> None:
    reader = ServerFrameReader(1 << 20)
    with pytest.raises(WireError, match=words):
        read_all(reader, data, [])
    assert reader.closed


def test_a_masked_frame_an_unknown_opcode_and_a_frame_too_long_are_refused() -> None:
    masked = Frame(Opcode.BINARY, b"hello").serialize(mask=True)
    with pytest.raises(WireError, match="masked"):
        ServerFrameReader(1 << 20).receive_data(masked)
    with pytest.raises(WireError, match="unknown opcode 3"):
        ServerFrameReader(1 << 20).receive_data(b"\x83\x00")
    huge = bytes([0x82, 127]) + struct.pack(">Q", 1 << 40)
    with pytest.raises(WireError, match="more than kubetray accepts"):
        ServerFrameReader(4 << 20).receive_data(huge)


def test_a_text_frame_ends_the_stream() -> None:
    ws = server()
    ws.send_binary(b"ok")
    ws.send_text(b"not spdy")
    reader = ServerFrameReader(1 << 20)
    stream, controls = read_all(reader, wire(ws), [])
    assert stream == b"ok" and controls == [Control(TEXT, b"")] and reader.closed


# -- the carrier: what kubetray answers ---------------------------------------------------------

def answered(data: bytes) -> list[Frame]:
    """The frames kubetray wrote, read by a server (which checks they are masked)."""
    ws = server()
    ws.receive_data(data)
    return [event for event in ws.events_received() if isinstance(event, Frame)]


def test_the_carrier_answers_a_ping_with_its_payload_and_passes_the_stream_on() -> None:
    ws = server()
    ws.send_binary(b"spdy bytes")
    ws.send_ping(b"42")
    carrier = WebSocketCarrier()
    stream, answer, ended = carrier.unwrap(wire(ws))
    assert b"".join(stream) == b"spdy bytes" and not ended
    (pong,) = answered(answer)
    assert pong.opcode is Opcode.PONG and pong.data == b"42"


def test_the_carrier_sends_the_close_code_back_and_ends() -> None:
    ws = server()
    ws.send_close(1001, "going away")
    stream, answer, ended = WebSocketCarrier().unwrap(wire(ws))
    assert stream == [] and ended
    (close,) = answered(answer)
    assert close.opcode is Opcode.CLOSE and Close.parse(close.data).code == 1001


@pytest.mark.parametrize(("data", "code"), [
    (Frame(Opcode.TEXT, b"{}").serialize(mask=False), 1003),
    (Frame(Opcode.BINARY, b"x").serialize(mask=True), 1002),
])
def test_the_carrier_fails_the_websocket_on_what_it_cannot_carry(data: bytes, code: int) -> None:
    carrier = WebSocketCarrier()
    _, answer, ended = carrier.unwrap(data)
    assert ended
    (close,) = answered(answer)
    assert Close.parse(close.data).code == code
    assert carrier.unwrap(b"\x82\x01!") == ([], b"", True)  # nothing more is read


def test_the_opcodes_match_the_rfc() -> None:
    assert (BINARY, TEXT, CLOSE, PING) == (Opcode.BINARY.value, Opcode.TEXT.value, Opcode.CLOSE.value,
                                           Opcode.PING.value)


@pytest.mark.parametrize("sizes", [[3], [125], [100, 26], [8, 65528], [3, 5, 8, 65543, 1], [8, 65536, 8, 65536]])
def test_the_carriers_frames_are_one_masked_binary_message_a_server_reads_back(sizes: list[int]) -> None:
    """Pieces of any length, each masked with the key turned to its offset: a server (which
    refuses unmasked client frames) reads one binary message holding them in order."""
    rng = random.Random(sum(sizes))
    pieces: list[bytes | memoryview] = [rng.randbytes(n) for n in sizes]
    pieces[-1] = memoryview(bytes(pieces[-1]))  # DATA payloads come as views of the caller's bytes
    wire = WebSocketCarrier().wrap(pieces)
    (frame,) = answered(b"".join(wire))
    assert frame.opcode is Opcode.BINARY and frame.fin
    assert frame.data == b"".join(bytes(p) for p in pieces)
    assert all(not isinstance(piece, memoryview) for piece in wire[1:])  # masked copies, not the views


def test_nothing_to_wrap_writes_nothing() -> None:
    assert WebSocketCarrier().wrap([]) == [] and WebSocketCarrier().wrap([b""]) == []
