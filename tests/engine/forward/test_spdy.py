"""SPDY/3.1 framing: byte-exact frames, one zlib context per direction, hostile input refused."""

from __future__ import annotations

import struct
import zlib

import pytest

from trayapp.engine.forward.spdy import (
    DICTIONARY,
    Data,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    decode_header_block,
    encode_header_block,
)
from trayapp.errors import WireError

PORT_FORWARD_HEADERS = (("streamtype", "data"), ("port", "8080"), ("requestid", "0"))


def test_the_dictionary_is_the_drafts() -> None:
    # 1423 bytes; its Adler-32 is the dictionary id every SPDY/3 peer puts in its zlib header.
    assert len(DICTIONARY) == 1423
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


@pytest.mark.parametrize(("frame", "wire"), [
    (Ping(1), b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"),
    (RstStream(3, RstStatus.REFUSED_STREAM), b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x03"),
    (GoAway(5), b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x00"),
    (WindowUpdate(7, 65536), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x07\x00\x01\x00\x00"),
    (Settings(((0, 4, 100),)), b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x64"),
    (Data(1, b"hi"), b"\x00\x00\x00\x01\x00\x00\x00\x02hi"),
    (Data(1, b"", fin=True), b"\x00\x00\x00\x01\x01\x00\x00\x00"),
])
def test_frames_without_headers_byte_for_byte(frame: object, wire: bytes) -> None:
    assert FrameEncoder().encode(frame) == wire  # type: ignore[arg-type]
    assert FrameDecoder().receive_data(wire) == [frame]


def test_a_header_block_byte_for_byte() -> None:
    block = encode_header_block((("Port", "8080"), ("streamType", "error")))
    assert block == (b"\x00\x00\x00\x02" b"\x00\x00\x00\x04port" b"\x00\x00\x00\x048080"
                     b"\x00\x00\x00\x0astreamtype" b"\x00\x00\x00\x05error")
    assert decode_header_block(block) == (("port", "8080"), ("streamtype", "error"))


def test_syn_stream_layout_and_a_zlib_stream_with_the_dictionary() -> None:
    wire = FrameEncoder().encode(SynStream(1, PORT_FORWARD_HEADERS, priority=0))
    assert wire[:4] == b"\x80\x03\x00\x01"
    assert int.from_bytes(wire[5:8], "big") == len(wire) - 8
    assert wire[8:18] == b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # stream 1, not associated, priority 0
    block = wire[18:]
    assert block[0] & 0x0F == 8 and block[1] & 0x20  # deflate, and FDICT: a preset dictionary
    assert int.from_bytes(block[2:6], "big") == zlib.adler32(DICTIONARY)
    inflate = zlib.decompressobj(zdict=DICTIONARY)
    assert decode_header_block(inflate.decompress(block)) == PORT_FORWARD_HEADERS


def test_one_compression_context_per_direction_across_frames() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    frames = [SynStream(n, (("streamtype", kind), ("port", "80"), ("requestid", str(n // 2))))
              for n, kind in ((1, "error"), (3, "data"), (5, "error"), (7, "data"))]
    wires = [encoder.encode(frame) for frame in frames]
    assert len(wires[2]) < len(wires[0])  # the shared context remembers what it has seen
    assert decoder.receive_data(b"".join(wires)) == frames
    # A fresh decoder cannot read the second frame alone: the contexts are the session's.
    with pytest.raises(WireError):
        FrameDecoder().receive_data(wires[1])


def test_replies_and_headers_round_trip() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    frames = [SynReply(1), SynReply(3, fin=True), HeadersFrame(3, (("x", "y"),))]
    assert decoder.receive_data(b"".join(encoder.encode(f) for f in frames)) == frames


def test_split_at_every_byte() -> None:
    encoder = FrameEncoder()
    frames = [SynStream(1, PORT_FORWARD_HEADERS), Data(1, b"GET / HTTP/1.1\r\n\r\n"), Data(1, b"", fin=True),
              Ping(2), RstStream(1, RstStatus.CANCEL)]
    wire = b"".join(encoder.encode(f) for f in frames)
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder()
        assert decoder.receive_data(wire[:cut]) + decoder.receive_data(wire[cut:]) == frames


def test_views_cut_three_ways_give_bytes_that_outlive_them() -> None:
    """The decoder reads memoryviews (the WebSocket carrier's) and keeps no view of its input."""
    encoder = FrameEncoder()
    frames = [Data(1, b"a" * 40), Data(3, b"b" * 70, fin=True), Ping(4)]
    wire = bytearray(b"".join(encoder.encode(f) for f in frames))
    for first in range(0, len(wire), 7):
        for second in range(first, len(wire), 11):
            decoder = FrameDecoder()
            got = []
            for start, end in ((0, first), (first, second), (second, len(wire))):
                with memoryview(wire)[start:end] as view:
                    got += decoder.receive_data(view)
            assert got == frames
            assert all(isinstance(f.data, bytes) for f in got if isinstance(f, Data))
    wire.clear()  # BufferError if the decoder still held a view of it


def test_an_unknown_control_frame_is_skipped() -> None:
    unknown = struct.pack(">II", 0x8003000A, 4) + b"abcd"
    assert FrameDecoder().receive_data(unknown + FrameEncoder().encode(Ping(1))) == [Ping(1)]


def test_a_frame_longer_than_the_limit_is_refused_from_its_header() -> None:
    header_only = struct.pack(">II", 1, 0xFFFFFF)  # a data frame that promises 16 MiB
    with pytest.raises(WireError, match="16,777,215 bytes"):
        FrameDecoder(max_frame=1024 * 1024).receive_data(header_only)


def test_another_version_and_short_frames_are_protocol_errors() -> None:
    with pytest.raises(WireError, match="version 2"):
        FrameDecoder().receive_data(struct.pack(">II", 0x80020006, 4) + b"\x00\x00\x00\x01")
    with pytest.raises(WireError, match="too short"):
        FrameDecoder().receive_data(struct.pack(">II", 0x80030003, 4) + b"\x00\x00\x00\x01")


def test_a_header_block_bomb_stops_at_the_cap() -> None:
    deflate = zlib.compressobj(zdict=DICTIONARY)
    huge = encode_header_block((("x", "a" * (1 << 20)),))
    block = deflate.compress(huge) + deflate.flush(zlib.Z_SYNC_FLUSH)
    frame = struct.pack(">II", 0x80030002, (4 + len(block))) + struct.pack(">I", 1) + block
    with pytest.raises(WireError, match="inflates past"):
        FrameDecoder().receive_data(frame)


def test_malformed_header_blocks() -> None:
    with pytest.raises(WireError):
        decode_header_block(b"\x00\x00\x00\x01\x00\x00\x00\x09port")  # a name longer than the block
    with pytest.raises(WireError):
        decode_header_block(encode_header_block((("a", "b"),)) + b"extra")
