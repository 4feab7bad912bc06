"""Tell the engine when any of a few files (the kubeconfig files) is written, replaced or deleted.

Built on `watchfiles.awatch` (Rust notify: inotify, FSEvents, ReadDirectoryChangesW); no timers
of our own. The watch is on each file's parent DIRECTORY, not the file, because an editor's
write-temp-then-rename and a delete-then-create replace the file's inode, and a watch on the old
inode would go deaf. Directories are watched non-recursively and events are filtered to the files.
A symlinked file (a dotfile manager's ~/.kube/config) is watched in its target's directory too and
reported under the name it was given.

A file whose directory does not exist yet (no ~/.kube on a fresh machine) is watched through its
nearest existing ancestor, still non-recursively: recursing from $HOME would cost a watch per
subdirectory. When a batch shows that the set of directories to watch changed (one appeared, one
was deleted, or one was replaced by a new directory of the same name), the watch is re-armed on
the new set. Changes made while re-arming cannot be seen, so after every re-arm all paths are
reported once; the caller re-reads them, which is what it does for any report.

Start-up without a lost change: `await watcher.start()` (or `async with FileWatcher(...)`)
returns only once the OS watch is armed, so the caller reads the files after `start()` returns
and then iterates `changes()`; anything written after the read is in the next batch. Arming is
observed through awatch's `stop_event`: watchfiles polls `stop_event.is_set()` from inside the
Rust watch loop, which runs only after the notify watcher and its directory watches exist.

Stopping sets that same stop event; the Rust loop sees it within one step (`debounce_ms`),
awatch returns, and `aclose()` waits for that, so no watch thread outlives the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from watchfiles import awatch

log = logging.getLogger(__name__)

_MAX_BATCH_MS = (
    500  # a burst of writes is still reported at least this often (well within a second)
)


class _StopSignal:
    """awatch's stop event: thread-safe, and its first poll tells the event loop the watch is armed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_armed: Callable[[], None]) -> None:
        self._loop = loop
        self._on_armed: Callable[[], None] | None = on_armed
        self._stop = threading.Event()

    def is_set(self) -> bool:  # called by watchfiles from its worker thread, every step
        if self._on_armed is not None:
            on_armed, self._on_armed = self._on_armed, None
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody to tell
                self._loop.call_soon_threadsafe(on_armed)
        return self._stop.is_set()

    def set(self) -> None:
        self._stop.set()


class FileWatcher:
    """Reports which of `paths` were created, modified, deleted or renamed over."""

    def __init__(self, paths: Sequence[Path], debounce_ms: int = 50) -> None:
        self._paths = tuple(dict.fromkeys(Path(p).expanduser().absolute() for p in paths))
        self._debounce_ms = max(1, int(debounce_ms))
        self._queue: asyncio.Queue[set[Path] | BaseException] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._signal: _StopSignal | None = None
        self._closing = False
        self._start_error: BaseException | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    async def start(self) -> None:
        """Arm the OS watch; returns once changes from now on will be reported. Idempotent."""
        if self._closing:
            raise RuntimeError("This FileWatcher is closed.")
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="filewatch:pump")
        await self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    async def changes(self) -> AsyncIterator[set[Path]]:
        """Each debounced batch of changed paths, until cancelled or closed."""
        await self.start()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                while not self._queue.empty():  # the consumer was busy: hand over one merged batch
                    more = self._queue.get_nowait()
                    if isinstance(more, BaseException):
                        raise more
                    item |= more
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop watching and wait for the watch thread to finish (one debounce step at most)."""
        self._closing = True
        if self._signal is not None:
            self._signal.set()
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            await pump
        self._ready.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        try:
            while not self._closing:
                directories = _anchors(_watched_files(self._paths))
                identities = _identities(directories)
                signal = _StopSignal(loop, self._armed if first else self._rearmed)
                self._signal = signal
                log.debug("watching %s for %s", directories, self._paths)
                try:
                    rearm = await self._session(directories, identities, signal)
                except FileNotFoundError:
                    # A directory vanished between choosing it and arming the watch: choose again.
                    rearm = True
                first = False
                if not rearm:
                    return
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits for changes
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                self._queue.put_nowait(exc)

    async def _session(
        self,
        directories: tuple[Path, ...],
        identities: dict[Path, tuple[int, int] | None],
        signal: _StopSignal,
    ) -> bool:
        """Watch `directories` until stopped (False) or until they need re-arming (True)."""
        by_key = _event_keys(self._paths)
        batches = awatch(
            *directories,
            watch_filter=None,  # our own filter below also needs the events about the directories
            debounce=max(self._debounce_ms, _MAX_BATCH_MS),
            step=self._debounce_ms,
            stop_event=signal,
            rust_timeout=0,  # no timeout wake-ups: stopping goes through the stop event
            recursive=False,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                changed = {by_key[key] for key in _keys(path for _, path in batch) if key in by_key}
                replanned = _anchors(_watched_files(self._paths))
                if (
                    replanned != directories
                    or _identities(directories) != identities
                    or _event_keys(self._paths) != by_key
                ):
                    if changed:
                        self._queue.put_nowait(changed)
                    return True
                if changed:
                    self._queue.put_nowait(changed)
        return False

    def _armed(self) -> None:
        self._ready.set()

    def _rearmed(self) -> None:
        self._queue.put_nowait(set(self._paths))


def _watched_files(paths: Iterable[Path]) -> list[Path]:
    """The files and, for a symlinked file (dotfile managers link ~/.kube/config), its target too."""
    files: list[Path] = []
    for path in paths:
        files.append(path)
        resolved = Path(os.path.realpath(path))
        if resolved != path:
            files.append(resolved)
    return files


def _anchors(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The directories to watch: each file's parent, or its nearest existing ancestor."""
    found: dict[Path, None] = {}
    for path in paths:
        directory = path.parent
        while not directory.is_dir() and directory.parent != directory:
            directory = directory.parent
        found[directory] = None
    return tuple(sorted(found))


def _identities(directories: Iterable[Path]) -> dict[Path, tuple[int, int] | None]:
    """(device, inode) of each directory: a directory deleted and made again is a new one to watch."""
    result: dict[Path, tuple[int, int] | None] = {}
    for directory in directories:
        try:
            info = os.stat(directory)
        except OSError:
            result[directory] = None
        else:
            result[directory] = (info.st_dev, info.st_ino)
    return result


def _keys(paths: Iterable[str]) -> Iterable[str]:
    return (os.path.normcase(os.path.normpath(p)) for p in paths)


def _event_keys(paths: Iterable[Path]) -> dict[str, Path]:
    """Event path -> watched path: as given, with the directory's symlinks resolved, and resolved.

    inotify reports paths under the directory as we named it; FSEvents reports resolved paths
    (/private/var/... for /var/...); a symlinked file changes where its target lives.
    """
    keys: dict[str, Path] = {}
    for path in paths:
        spellings = (
            str(path),
            os.path.join(os.path.realpath(path.parent), path.name),
            os.path.realpath(path),
        )
        for spelling in spellings:
            keys.setdefault(next(iter(_keys([spelling]))), path)
    return keys
