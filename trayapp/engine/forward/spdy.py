"""SPDY/3.1 framing, as `kubectl port-forward` and the kubelet speak it: sans-I/O, in the style of wire.py.

`FrameEncoder.encode(frame)` gives the bytes of one frame; `FrameDecoder.receive_data(data)` takes
bytes as they arrive and returns the frames they complete. Name/value header blocks are compressed
with zlib and the SPDY/3 dictionary, one compression context per direction for the session's life
(so the encoder and the decoder are objects, not functions). Nothing here touches a socket.

The portforward.k8s.io protocol on top (a data and an error stream per connection, paired by
`requestID`) belongs to the session, not to the framing.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from trayapp.errors import WireError

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02  # SYN_STREAM only
_CONTROL = 0x8000
_HEAD = struct.Struct(">II")
# The largest frame kubetray accepts. The kubelet's frames are at most 32 KiB of data (its copy
# buffer) and a header block of a few hundred bytes; 1 MiB leaves room and refuses a hostile
# length from the frame header, before anything is buffered.
MAX_FRAME = 1024 * 1024
# A header block never needs more than this once inflated: a decompression bomb stops here.
MAX_HEADER_BLOCK = 64 * 1024


def _dictionary() -> bytes:
    """The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1), 1423 bytes."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date etag "
        "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
        "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
        "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
        "method get status 200_OK version HTTP/1.1 url public set-cookie keep-alive origin"
    ).split()
    prefixed = b"".join(struct.pack(">I", len(word)) + word.replace("_", " ").encode() for word in words)
    rest = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + rest.encode()


DICTIONARY = _dictionary()


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    fin: bool = False
    unidirectional: bool = False
    associated_to: int = 0
    priority: int = 0  # 0 (highest) to 7


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int  # an RstStatus, kept as a number: a peer may send one we do not know


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0  # 0 OK, 1 protocol error, 2 internal error


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: a count, then length-prefixed names and values."""
    parts = [struct.pack(">I", len(headers))]
    for name, value in headers:
        raw_name, raw_value = name.lower().encode(), value.encode()
        parts += [struct.pack(">I", len(raw_name)), raw_name, struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    """Name/value pairs from an uncompressed block; a value with NULs is several values, kept joined."""
    view = memoryview(block)
    try:
        (count,) = struct.unpack_from(">I", view, 0)
        offset, pairs = 4, []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", view, offset)
            name = bytes(view[offset + 4:offset + 4 + size])
            offset += 4 + size
            (size,) = struct.unpack_from(">I", view, offset)
            value = bytes(view[offset + 4:offset + 4 + size])
            offset += 4 + size
            if offset > len(view):
                raise struct.error("past the end")
            pairs.append((name.decode(), value.decode()))
    except (struct.error, UnicodeDecodeError) as exc:
        raise WireError("A SPDY header block is malformed.") from exc
    if offset != len(view):
        raise WireError("A SPDY header block has bytes after its last pair.")
    return tuple(pairs)


def data_header(stream_id: int, length: int, fin: bool = False) -> bytes:
    """The 8 bytes before a DATA frame's payload, which follows as it is: a caller sending a large
    buffer writes header and slice side by side instead of copying it into frames first."""
    if length > 0xFFFFFF:
        raise ValueError("a SPDY data frame carries at most 16 MiB - 1")
    return _HEAD.pack(stream_id & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | length)


class FrameEncoder:
    """Frames to bytes for one direction of one session (it owns that direction's zlib context)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)

    def _compressed(self, headers: Headers) -> bytes:
        raw = encode_header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            return data_header(frame.stream_id, len(frame.data), frame.fin) + frame.data
        kind, flags, payload = self._control(frame)
        return _HEAD.pack((_CONTROL | VERSION) << 16 | kind, flags << 24 | len(payload)) + payload

    def _control(self, frame: Frame) -> tuple[int, int, bytes]:
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_to, (frame.priority & 7) << 5, 0)
            return FrameType.SYN_STREAM, flags, head + self._compressed(frame.headers)
        if isinstance(frame, SynReply):
            body = struct.pack(">I", frame.stream_id) + self._compressed(frame.headers)
            return FrameType.SYN_REPLY, FLAG_FIN if frame.fin else 0, body
        if isinstance(frame, HeadersFrame):
            body = struct.pack(">I", frame.stream_id) + self._compressed(frame.headers)
            return FrameType.HEADERS, FLAG_FIN if frame.fin else 0, body
        if isinstance(frame, RstStream):
            return FrameType.RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", flags << 24 | ident, value) for flags, ident, value in frame.entries)
            return FrameType.SETTINGS, 1 if frame.clear else 0, body
        if isinstance(frame, Ping):
            return FrameType.PING, 0, struct.pack(">I", frame.ping_id)
        if isinstance(frame, GoAway):
            return FrameType.GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status)
        if isinstance(frame, WindowUpdate):
            return FrameType.WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta)
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Bytes to frames for the other direction of one session; linear in what it is given."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._buffer = bytearray()
        self._max_frame = max_frame

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        # Whole frames are cut straight out of `data`; only a frame it ends in the middle of is
        # kept for the next call (the usual read holds several 32 KiB frames and a part of one),
        # so most bytes are copied once, into their frame, rather than through a buffer too.
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray | memoryview = self._buffer
        else:
            source = data
        frames: list[Frame] = []
        offset = 0
        end = len(source)
        with memoryview(source) as view:
            while end - offset >= 8:
                first, second = _HEAD.unpack_from(view, offset)
                length = second & 0xFFFFFF
                if length > self._max_frame:
                    raise WireError(f"The peer sent a SPDY frame of {length:,} bytes, more than kubetray accepts "
                                    f"({self._max_frame:,}).")
                if end - offset < 8 + length:
                    break
                payload = bytes(view[offset + 8:offset + 8 + length])
                offset += 8 + length
                frame = self._frame(first, second >> 24, payload)
                if frame is not None:
                    frames.append(frame)
            rest = bytes(view[offset:]) if source is data and offset < end else b""
        if source is data:
            self._buffer = bytearray(rest)
        else:
            del self._buffer[:offset]
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise WireError("A SPDY header block does not decompress.") from exc
        if self._inflate.unconsumed_tail:
            raise WireError(f"A SPDY header block inflates past {MAX_HEADER_BLOCK:,} bytes.")
        return decode_header_block(raw)

    def _frame(self, first: int, flags: int, payload: bytes) -> Frame | None:
        if not first & 0x80000000:
            return Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise WireError(f"The peer speaks SPDY version {version}, not 3.")
        try:
            return self._control(kind, flags, payload)
        except struct.error as exc:
            raise WireError(f"A SPDY control frame of type {kind} is too short.") from exc

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        if kind == FrameType.SYN_STREAM:
            stream_id, associated, priority, _slot = struct.unpack_from(">IIBB", payload)
            return SynStream(stream_id & 0x7FFFFFFF, self._headers(payload[10:]), fin,
                             bool(flags & FLAG_UNIDIRECTIONAL), associated & 0x7FFFFFFF, priority >> 5)
        if kind == FrameType.SYN_REPLY:
            (stream_id,) = struct.unpack_from(">I", payload)
            return SynReply(stream_id & 0x7FFFFFFF, self._headers(payload[4:]), fin)
        if kind == FrameType.HEADERS:
            (stream_id,) = struct.unpack_from(">I", payload)
            return HeadersFrame(stream_id & 0x7FFFFFFF, self._headers(payload[4:]), fin)
        if kind == FrameType.RST_STREAM:
            stream_id, status = struct.unpack_from(">II", payload)
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if kind == FrameType.SETTINGS:
            (count,) = struct.unpack_from(">I", payload)
            if len(payload) != 4 + 8 * count:
                raise WireError("A SPDY SETTINGS frame's length does not match its entries.")
            entries = tuple(
                (word >> 24, word & 0xFFFFFF, value)
                for word, value in struct.iter_unpack(">II", payload[4:])
            )
            return Settings(entries, bool(flags & 1))
        if kind == FrameType.PING:
            (ping_id,) = struct.unpack_from(">I", payload)
            return Ping(ping_id)
        if kind == FrameType.GOAWAY:
            last, status = struct.unpack_from(">II", payload) if len(payload) >= 8 else (
                *struct.unpack_from(">I", payload), 0)  # SPDY/2-style GOAWAY without a status
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == FrameType.WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from(">II", payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # a control frame type we do not know is ignored, as the draft asks
