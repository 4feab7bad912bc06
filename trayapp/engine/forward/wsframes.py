"""WebSocket framing for SPDY carried in a WebSocket (RFC 6455 section 5; spdylink.py), sans-I/O:
the frames a server sends to kubetray, read, and our binary data frames, written.

The websockets library writes our control frames and did the handshake's checks. Its reader copies
every byte into a buffer and out again to assemble whole messages, which the SPDY session does
not need: a binary message's bytes are a stretch of the SPDY byte stream wherever the message
boundaries fall. So data frames are passed on as views of what arrived, even before a frame's
last byte came, and only headers and control frames (at most 125 bytes) are ever buffered.
Its writer joins a message's bytes, masks them and copies them twice more; `client_binary_frame`
masks each piece of the message as it is (the key turned to the piece's offset), one copy.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

try:  # the websockets library's masking: its C speedup where it was built, as its own frames use
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the extension
    from websockets.utils import apply_mask

from trayapp.errors import WireError

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (CONTINUATION, BINARY)
_CONTROL = (CLOSE, PING, PONG)
MAX_CONTROL = 125


@dataclass(frozen=True)
class Control:
    """A control frame (close, ping, pong), or a text frame's start: what the carrier answers."""

    opcode: int
    payload: bytes


class ServerFrameReader:
    """Bytes from the server in; stream bytes (memoryviews of the input) and control frames out."""

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._head = bytearray()  # a frame header cut by the end of a read
        self._left = 0  # payload bytes of the current frame still to come
        self._opcode = BINARY
        self._control = bytearray()
        self._in_frame = False  # a header was read and its payload has not all come
        self.closed = False  # a close frame came: nothing after it is read

    def receive_data(self, data: bytes | memoryview) -> tuple[list[memoryview], list[Control]]:
        """Raises WireError on a frame no server may send (masked, reserved bits, too long); nothing
        is read after that."""
        try:
            return self._receive(data)
        except WireError:
            self.closed = True
            raise

    def _receive(self, data: bytes | memoryview) -> tuple[list[memoryview], list[Control]]:
        stream: list[memoryview] = []
        controls: list[Control] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end and not self.closed:
            if not self._in_frame:
                pos = self._read_header(view, pos, controls)
                continue
            take = min(self._left, end - pos)
            if self._opcode in _DATA:
                stream.append(view[pos:pos + take])
            else:
                self._control += view[pos:pos + take]
            pos += take
            self._left -= take
            if self._left == 0:
                self._in_frame = False
                if self._opcode not in _DATA:
                    self._finish_control(controls)
        return stream, controls

    def _read_header(self, view: memoryview, pos: int, controls: list[Control]) -> int:
        """Reads one header at `pos` (with what an earlier read left); returns the new position."""
        held = len(self._head)
        if held:
            self._head += view[pos:pos + _MAX_HEAD - held]
            parsed = _header(self._head)
            if parsed is None:
                return len(view)
            size, opcode, length = parsed
            pos += size - held
            self._head.clear()
        else:
            parsed = _header(view[pos:pos + _MAX_HEAD])
            if parsed is None:
                self._head += view[pos:]
                return len(view)
            size, opcode, length = parsed
            pos += size
        self._begin(opcode, length, controls)
        return pos

    def _begin(self, opcode: int, length: int, controls: list[Control]) -> None:
        if opcode in _CONTROL:
            if length > MAX_CONTROL:
                raise WireError(f"The server sent a WebSocket control frame of {length} bytes (at most 125).")
        elif opcode not in _DATA and opcode != TEXT:
            raise WireError(f"The server sent a WebSocket frame with the unknown opcode {opcode}.")
        elif length > self._max_frame:
            raise WireError(f"The server sent a WebSocket frame of {length:,} bytes, more than kubetray accepts "
                            f"({self._max_frame:,}).")
        if opcode == TEXT:
            # The SPDY tunnel carries binary messages only: the carrier ends it (close 1003).
            controls.append(Control(TEXT, b""))
            self.closed = True
            return
        self._opcode = opcode
        self._left = length
        self._control.clear()
        self._in_frame = length > 0
        if length == 0 and opcode in _CONTROL:
            self._finish_control(controls)

    def _finish_control(self, controls: list[Control]) -> None:
        controls.append(Control(self._opcode, bytes(self._control)))
        self._control.clear()
        if self._opcode == CLOSE:
            self.closed = True


_MAX_HEAD = 10  # 2 bytes, then up to 8 of extended length; a server's frames carry no mask


def _header(head: bytes | bytearray | memoryview) -> tuple[int, int, int] | None:
    """(header size, opcode, payload length) of the frame starting `head`; None while incomplete."""
    if len(head) < 2:
        return None
    first, second = head[0], head[1]
    if first & 0x70:
        raise WireError("The server sent a WebSocket frame with reserved bits set (no extension was agreed).")
    if second & 0x80:
        raise WireError("The server sent a masked WebSocket frame; servers never mask.")
    opcode = first & 0x0F
    if opcode >= 0x8 and not first & 0x80:
        raise WireError("The server sent a fragmented WebSocket control frame.")
    length = second & 0x7F
    if length == 126:
        if len(head) < 4:
            return None
        return 4, opcode, struct.unpack_from(">H", head, 2)[0]
    if length == 127:
        if len(head) < 10:
            return None
        return 10, opcode, struct.unpack_from(">Q", head, 2)[0]
    return 2, opcode, length


def client_binary_frame(pieces: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """One masked binary frame holding `pieces` in order, as pieces to write (writelines); []
    when they hold nothing."""
    size = sum(len(piece) for piece in pieces)
    if not size:
        return []
    key = secrets.token_bytes(4)  # section 5.3: a fresh unpredictable key per frame
    if size < 126:
        head = struct.pack("!BB", 0x80 | BINARY, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | BINARY, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | BINARY, 0x80 | 127, size)
    out: list[bytes | memoryview] = [head + key]
    offset = 0
    for piece in pieces:
        turn = offset % 4
        out.append(apply_mask(piece, key[turn:] + key[:turn]))
        offset += len(piece)
    return out
