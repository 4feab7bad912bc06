"""Linux inotify: the kernel's event records parsed without I/O, and a thin non-blocking fd around them.

The parser is sans-I/O so its byte layout is tested exactly; `Inotify` only makes the three libc
calls (there is no inotify in the standard library) and reads whatever the kernel queued. Nothing
here waits or runs a thread: the owner puts `fileno()` on its event loop with `add_reader`, so an
idle watch costs no wake-up at all.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# From <sys/inotify.h>; stable kernel ABI.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[len]; },
# in the machine's own byte order; `name` is NUL-terminated and NUL-padded up to `len`.
_HEADER = struct.Struct("=iIII")
# One read must fit at least one record with the longest name (NAME_MAX 255 + NUL); a larger buffer
# drains a burst in fewer calls.
READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One record: `wd` is -1 for a queue overflow; `name` is empty for an event on the watched directory itself."""

    wd: int
    mask: int
    cookie: int
    name: bytes

    @property
    def overflow(self) -> bool:
        return bool(self.mask & IN_Q_OVERFLOW)


class EventParser:
    """Bytes read from an inotify fd in, events out; keeps a partial record until the rest arrives."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[InotifyEvent]:
        buffer = self._buffer + data if self._buffer else data
        events: list[InotifyEvent] = []
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length
            if end > len(buffer):
                break
            name = buffer[offset + _HEADER.size : end].split(b"\0", 1)[0]
            events.append(InotifyEvent(wd, mask, cookie, name))
            offset = end
        self._buffer = buffer[offset:]
        return events

    @property
    def pending(self) -> int:
        """Bytes of a record not yet complete."""
        return len(self._buffer)


class _Libc:
    """The libc entry points, loaded once; a libc without them (not Linux) raises OSError(ENOSYS)."""

    _loaded: _Libc | None = None

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            self.init1 = libc.inotify_init1
            self.add_watch = libc.inotify_add_watch
        except AttributeError as exc:
            raise OSError(errno.ENOSYS, "This C library has no inotify.") from exc
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int

    @classmethod
    def get(cls) -> _Libc:
        if cls._loaded is None:
            cls._loaded = cls()
        return cls._loaded


def _raise_errno(what: str, path: Path | None = None) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"{what}: {os.strerror(code)}", None if path is None else str(path))


class Inotify:
    """One inotify instance: a non-blocking, close-on-exec fd with watches added by path."""

    def __init__(self) -> None:
        self._libc = _Libc.get()
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            _raise_errno("inotify_init1")
        self._fd: int | None = fd
        self._parser = EventParser()

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("This inotify instance is closed.")
        return self._fd

    def add_watch(self, path: Path, mask: int) -> int:
        """The watch descriptor; raises FileNotFoundError / NotADirectoryError (with IN_ONLYDIR) as os.stat would."""
        wd = self._libc.add_watch(self.fileno(), os.fsencode(path), mask)
        if wd < 0:
            _raise_errno("inotify_add_watch", path)
        return int(wd)

    def read(self, limit: int = 16) -> list[InotifyEvent]:
        """Every event queued now (up to `limit` reads, so one busy directory cannot hold the loop)."""
        events: list[InotifyEvent] = []
        for _ in range(limit):
            try:
                data = os.read(self.fileno(), READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            events += self._parser.feed(data)
        return events

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # frees every watch with it
