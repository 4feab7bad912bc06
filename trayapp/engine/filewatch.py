"""Tell the engine when any of a few files (the kubeconfig files, the rules file) is written, replaced or deleted.

The watch is on each file's parent DIRECTORY, not the file, because an editor's or kubectl's
write-temp-then-rename and a delete-then-create replace the file's inode, and a watch on the old
inode would go deaf. Directories are watched non-recursively and events are filtered to the files.
A symlinked file (a dotfile manager's ~/.kube/config) is watched in its target's directory too and
reported under the name it was given.

A file whose directory does not exist yet (no ~/.kube on a fresh machine) is watched through its
nearest existing ancestor, still non-recursively: recursing from $HOME would cost a watch per
subdirectory. When the set of directories to watch changes (one appeared, one was deleted, or one
was replaced by a new directory of the same name), the watch is re-armed on the new set. Changes
made while re-arming cannot be seen, so after every re-arm all paths are reported once; the caller
re-reads them, which is what it does for any report.

Changes are batched: a batch is handed over once `debounce_ms` passed without another change to a
watched file, or at the latest `_MAX_BATCH_MS` after its first change, so a burst of writes is
still reported well within a second.

Start-up without a lost change: `await watcher.start()` (or `async with FileWatcher(...)`) returns
only once the OS watch is armed, so the caller reads the files after `start()` returns and then
iterates `changes()`; anything written after the read is in the next batch.

Two backends behind the same interface:
- Linux: inotify (engine/inotify.py) read on the event loop with `add_reader`. Idle means idle: no
  thread, no timer; the only timer is the debounce of a batch that is pending. The watches exist
  when `start()` returns. A kernel queue overflow means events were lost: every path is reported.
- macOS, Windows: `watchfiles.awatch` (Rust notify: FSEvents, ReadDirectoryChangesW) in its worker
  thread. Its loop wakes every `step` to check the stop event (see _WATCHFILES_STEP_MS).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

from trayapp.engine import inotify
from trayapp.engine.inotify import Inotify

log = logging.getLogger(__name__)

_MAX_BATCH_MS = 500  # a burst of writes is still reported at least this often (well within a second)

# watchfiles' Rust loop wakes every `step` and takes the GIL to poll the stop event, whether or not
# anything changed: 50 ms cost 20 wake-ups a second per watcher, most of kubetray's idle CPU. 200 ms
# keeps that to 5, while start() (which returns after the first step) and the report of a change
# (about two steps after the write) stay well inside the 1 s context-switch goal.
_WATCHFILES_STEP_MS = 200

# What a watched directory reports: content writes (MODIFY for each write, CLOSE_WRITE at the end, so
# a slow writer is re-read once done), chmod/touch (ATTRIB), and every way a name appears or goes
# (CREATE, DELETE, both halves of a rename), plus the directory's own end (DELETE_SELF, MOVE_SELF).
# ONLYDIR: a directory replaced by a file between planning and arming fails instead of being watched.
_DIRECTORY_MASK = (
    inotify.IN_MODIFY | inotify.IN_ATTRIB | inotify.IN_CLOSE_WRITE | inotify.IN_CREATE
    | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO | inotify.IN_DELETE_SELF
    | inotify.IN_MOVE_SELF | inotify.IN_ONLYDIR
)
# Events after which the directories to watch may differ (a directory or a symlink came or went).
_RESHAPING = (
    inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO
    | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_IGNORED | inotify.IN_UNMOUNT
    | inotify.IN_Q_OVERFLOW
)
_ARM_ATTEMPTS = 20  # directories vanishing while being armed, again and again: give up, say so

_BACKEND: Literal["inotify", "watchfiles"] = "inotify" if sys.platform == "linux" else "watchfiles"

Report = Callable[[set[Path] | BaseException], None]


class _Pump(Protocol):
    """Feeds batches (or the error that ended the watch) to the watcher's queue."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class FileWatcher:
    """Reports which of `paths` were created, modified, deleted or renamed over."""

    def __init__(self, paths: Sequence[Path], debounce_ms: int = 50) -> None:
        self._paths = tuple(dict.fromkeys(Path(p).expanduser().absolute() for p in paths))
        self._debounce_ms = max(1, int(debounce_ms))
        self._queue: asyncio.Queue[set[Path] | BaseException] = asyncio.Queue()
        self._pump: _Pump | None = None
        self._closing = False

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    async def start(self) -> None:
        """Arm the OS watch; returns once changes from now on will be reported. Idempotent."""
        if self._closing:
            raise RuntimeError("This FileWatcher is closed.")
        if self._pump is None:
            self._pump = self._new_pump(_BACKEND)
        try:
            await self._pump.start()
        except OSError as exc:
            if exc.errno != errno.ENOSYS or not isinstance(self._pump, _InotifyPump):
                raise
            log.info("This system has no inotify (%s); kubetray watches %s through watchfiles instead.",
                     exc.strerror, ", ".join(map(str, self._paths)))
            self._pump = self._new_pump("watchfiles")
            await self._pump.start()

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
        """Stop watching; with watchfiles, wait for its thread to finish (one step at most)."""
        self._closing = True
        pump, self._pump = self._pump, None
        if pump is not None:
            await pump.aclose()

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

    def _new_pump(self, backend: Literal["inotify", "watchfiles"]) -> _Pump:
        if backend == "inotify":
            return _InotifyPump(self._paths, self._debounce_ms, self._queue.put_nowait)
        return _WatchfilesPump(self._paths, self._debounce_ms, self._queue.put_nowait)


@dataclass(frozen=True)
class _Plan:
    """What to watch for `paths` as the file system is now; a different plan means re-arming."""

    directories: tuple[Path, ...]
    identities: tuple[tuple[int, int] | None, ...]  # taken before arming: a later swap shows up as a change
    keys: Mapping[str, Path]  # event path -> watched path

    @classmethod
    def of(cls, paths: Sequence[Path]) -> _Plan:
        directories = _anchors(_watched_files(paths))
        return cls(directories, tuple(_identity(d) for d in directories), _event_keys(paths))

    def changed(self, events: Iterable[str]) -> set[Path]:
        return {self.keys[key] for key in _keys(events) if key in self.keys}


class _InotifyPump:
    """inotify on the event loop: a reader callback while armed, a timer only while a batch is pending."""

    def __init__(self, paths: tuple[Path, ...], debounce_ms: int, report: Report) -> None:
        self._paths = paths
        self._debounce = debounce_ms / 1000
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inotify: Inotify | None = None
        self._plan = _Plan((), (), {})
        self._directories: dict[int, tuple[Path, ...]] = {}  # wd -> the names it was added under
        self._pending: set[Path] = set()
        self._first = self._last = self._timer_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        if self._inotify is None:
            self._loop = asyncio.get_running_loop()
            self._arm()

    async def aclose(self) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = set()

    def _arm(self) -> None:
        """(Re)open the inotify fd on the current plan; a directory that vanishes meanwhile means planning again."""
        assert self._loop is not None
        self._disarm()  # a fresh fd: nothing queued for the old watches can be mistaken for the new ones
        for _ in range(_ARM_ATTEMPTS):
            plan = _Plan.of(self._paths)
            watch = Inotify()
            directories: dict[int, tuple[Path, ...]] = {}
            try:
                for directory in plan.directories:
                    wd = watch.add_watch(directory, _DIRECTORY_MASK)
                    directories[wd] = (*directories.get(wd, ()), directory)  # two names, one inode
            except (FileNotFoundError, NotADirectoryError):
                watch.close()
                continue
            except BaseException:
                watch.close()
                raise
            self._inotify, self._plan, self._directories = watch, plan, directories
            self._loop.add_reader(watch.fileno(), self._on_readable)
            log.debug("watching %s for %s", plan.directories, self._paths)
            return
        raise OSError(errno.ENOENT, "The directories of the watched files kept disappearing while kubetray "
                      "armed the watch.", str(self._paths[0]) if self._paths else None)

    def _disarm(self) -> None:
        watch, self._inotify = self._inotify, None
        if watch is not None:
            assert self._loop is not None
            self._loop.remove_reader(watch.fileno())
            watch.close()

    def _on_readable(self) -> None:
        if self._inotify is None:  # closed by an earlier callback of this same loop iteration
            return
        try:
            events = self._inotify.read()
        except OSError as exc:
            self._fail(exc)
            return
        changed: set[Path] = set()
        reshaped = False
        for event in events:
            reshaped = reshaped or bool(event.mask & _RESHAPING)
            if event.overflow:
                log.info("The kernel dropped file events for %s (its queue was full); kubetray re-reads "
                         "every watched file.", ", ".join(map(str, self._paths)))
                changed.update(self._paths)
            elif event.name:
                name = os.fsdecode(event.name)
                changed |= self._plan.changed(os.path.join(d, name) for d in self._directories.get(event.wd, ()))
        if reshaped and _Plan.of(self._paths) != self._plan:
            try:
                self._arm()
            except OSError as exc:
                self._fail(exc)
                return
            changed.update(self._paths)
        if changed:
            self._add(changed)

    def _add(self, changed: set[Path]) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if not self._pending:
            self._first = now
        self._pending |= changed
        self._last = now
        if self._timer is None:
            self._timer_at = self._due()
            self._timer = self._loop.call_at(self._timer_at, self._on_timer)

    def _due(self) -> float:
        return min(self._last + self._debounce, self._first + _MAX_BATCH_MS / 1000)

    def _on_timer(self) -> None:
        assert self._loop is not None
        due = self._due()
        if due > self._timer_at:  # more changes came in since the timer was set: wait for quiet
            self._timer_at = due
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        self._timer = None
        batch, self._pending = self._pending, set()
        self._report(batch)

    def _fail(self, exc: BaseException) -> None:
        self._disarm()
        self._report(exc)


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


class _WatchfilesPump:
    """watchfiles' awatch in its worker thread, re-armed when the plan changes.

    Arming is observed through awatch's `stop_event`: watchfiles polls `stop_event.is_set()` from
    inside the Rust watch loop, which runs only after the notify watcher and its directory watches
    exist. Stopping sets that same event; the Rust loop sees it within one step, awatch returns, and
    `aclose()` waits for that, so no watch thread outlives the watcher.
    """

    def __init__(self, paths: tuple[Path, ...], debounce_ms: int, report: Report) -> None:
        self._paths = paths
        self._step_ms = max(debounce_ms, _WATCHFILES_STEP_MS)
        self._report = report
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._signal: _StopSignal | None = None
        self._closing = False
        self._start_error: BaseException | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="filewatch:pump")
        await self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    async def aclose(self) -> None:
        self._closing = True
        if self._signal is not None:
            self._signal.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            await task
        self._ready.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        try:
            while not self._closing:
                plan = _Plan.of(self._paths)
                signal = _StopSignal(loop, self._ready.set if first else self._rearmed)
                self._signal = signal
                log.debug("watching %s for %s", plan.directories, self._paths)
                try:
                    rearm = await self._session(plan, signal)
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
                self._report(exc)

    async def _session(self, plan: _Plan, signal: _StopSignal) -> bool:
        """Watch the plan's directories until stopped (False) or until they need re-arming (True)."""
        from watchfiles import awatch  # imported here: Linux runs without it

        batches = awatch(
            *plan.directories,
            watch_filter=None,  # our own filter below also needs the events about the directories
            debounce=max(self._step_ms, _MAX_BATCH_MS),
            step=self._step_ms,
            stop_event=signal,
            rust_timeout=0,  # no timeout wake-ups: stopping goes through the stop event
            recursive=False,
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                changed = plan.changed(path for _, path in batch)
                if changed:
                    self._report(changed)
                if _Plan.of(self._paths) != plan:
                    return True
        return False

    def _rearmed(self) -> None:
        self._report(set(self._paths))


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


def _identity(directory: Path) -> tuple[int, int] | None:
    """(device, inode): a directory deleted and made again is a new one to watch."""
    try:
        info = os.stat(directory)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


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
