"""inotify records parsed byte for byte, and the fd adapter against the real kernel (Linux only)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from trayapp.engine import inotify
from trayapp.engine.inotify import EventParser, Inotify, InotifyEvent

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="the literal records are little-endian")

# wd=1, mask=IN_CLOSE_WRITE, cookie=0, len=16, "config" NUL-padded to 16 bytes (as the kernel pads).
CLOSE_WRITE_CONFIG = (
    b"\x01\x00\x00\x00" b"\x08\x00\x00\x00" b"\x00\x00\x00\x00" b"\x10\x00\x00\x00"
    b"config" + b"\x00" * 10
)
# wd=2, mask=IN_DELETE_SELF, no name: an event about the watched directory itself.
DELETE_SELF = b"\x02\x00\x00\x00" b"\x00\x04\x00\x00" b"\x00\x00\x00\x00" b"\x00\x00\x00\x00"
# wd=-1, mask=IN_Q_OVERFLOW: the kernel's queue was full and events were dropped.
OVERFLOW = b"\xff\xff\xff\xff" b"\x00\x40\x00\x00" b"\x00\x00\x00\x00" b"\x00\x00\x00\x00"
# A rename inside one directory: MOVED_FROM ".config.swp" and MOVED_TO "config", same cookie 0x1234.
RENAME = (
    b"\x01\x00\x00\x00" b"\x40\x00\x00\x00" b"\x34\x12\x00\x00" b"\x10\x00\x00\x00"
    b".config.swp" + b"\x00" * 5
    + b"\x01\x00\x00\x00" b"\x80\x00\x00\x00" b"\x34\x12\x00\x00" b"\x10\x00\x00\x00"
    b"config" + b"\x00" * 10
)


@little_endian
def test_one_record_with_a_padded_name() -> None:
    parser = EventParser()
    assert parser.feed(CLOSE_WRITE_CONFIG) == [InotifyEvent(1, inotify.IN_CLOSE_WRITE, 0, b"config")]
    assert parser.pending == 0


@little_endian
def test_a_record_without_a_name_and_an_overflow() -> None:
    events = EventParser().feed(DELETE_SELF + OVERFLOW)
    assert events == [InotifyEvent(2, inotify.IN_DELETE_SELF, 0, b""), InotifyEvent(-1, inotify.IN_Q_OVERFLOW, 0, b"")]
    assert [e.overflow for e in events] == [False, True]


@little_endian
def test_a_rename_pair_keeps_its_cookie() -> None:
    assert EventParser().feed(RENAME) == [
        InotifyEvent(1, inotify.IN_MOVED_FROM, 0x1234, b".config.swp"),
        InotifyEvent(1, inotify.IN_MOVED_TO, 0x1234, b"config"),
    ]


@little_endian
def test_records_split_anywhere_come_out_whole() -> None:
    stream = CLOSE_WRITE_CONFIG + DELETE_SELF + RENAME + OVERFLOW
    whole = EventParser().feed(stream)
    assert len(whole) == 5
    for cut in range(1, len(stream)):
        parser = EventParser()
        first = parser.feed(stream[:cut])
        assert parser.pending == cut - sum(16 + len(_padded(e)) for e in first)
        assert first + parser.feed(stream[cut:]) == whole
        assert parser.pending == 0
    parser = EventParser()
    assert [e for byte in stream for e in parser.feed(bytes([byte]))] == whole


def _padded(event: InotifyEvent) -> bytes:
    return b"" if not event.name else event.name + b"\0" * (16 - len(event.name))


def test_the_kernel_queues_events_for_a_watched_directory(tmp_path: Path) -> None:
    watch = Inotify()
    try:
        wd = watch.add_watch(tmp_path, inotify.IN_CREATE | inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO)
        assert watch.read() == []  # non-blocking: nothing queued, no wait
        (tmp_path / "new").write_text("x")
        os.replace(tmp_path / "new", tmp_path / "config")
        events = watch.read()  # fsnotify queues during the syscall: no waiting needed
        assert [(e.wd, e.mask, e.name) for e in events] == [
            (wd, inotify.IN_CREATE, b"new"), (wd, inotify.IN_CLOSE_WRITE, b"new"), (wd, inotify.IN_MOVED_TO, b"config"),
        ]
    finally:
        watch.close()


def test_add_watch_errors_are_the_usual_oserrors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    watch = Inotify()
    try:
        with pytest.raises(FileNotFoundError):
            watch.add_watch(tmp_path / "missing", inotify.IN_CREATE)
        with pytest.raises(NotADirectoryError):
            watch.add_watch(tmp_path / "file", inotify.IN_CREATE | inotify.IN_ONLYDIR)
    finally:
        watch.close()


def test_close_releases_the_fd() -> None:
    watch = Inotify()
    fd = watch.fileno()
    open_before = len(os.listdir("/proc/self/fd"))
    assert os.get_inheritable(fd) is False  # IN_CLOEXEC: kubectl and exec plugins do not inherit it
    assert os.get_blocking(fd) is False
    watch.close()
    watch.close()  # twice is fine
    assert len(os.listdir("/proc/self/fd")) == open_before - 1
    with pytest.raises(ValueError):
        watch.fileno()
