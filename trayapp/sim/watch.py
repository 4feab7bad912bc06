"""One watch response: store events written as JSON lines on a chunked HTTP response, with
periodic BOOKMARK events and a clean end after `timeoutSeconds`.

Driven entirely by callbacks (the store's sink, loop timers), so a watch costs no task.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from trayapp.sim.http import HttpConnection
from trayapp.sim.objects import Kind, Obj, status
from trayapp.sim.store import Expired, Store, Watcher, WatchFilter


@dataclass(frozen=True)
class WatchOptions:
    since: int | None  # None: start with ADDED for every current object
    bookmarks: bool
    timeout: float | None
    bookmark_interval: float


class WatchStream:
    def __init__(self, store: Store, kind: Kind, filter_: WatchFilter, conn: HttpConnection,
                 options: WatchOptions) -> None:
        self._store = store
        self._kind = kind
        self._filter = filter_
        self._conn = conn
        self._options = options
        self._watcher: Watcher | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._last_rv = store.rv
        self._done = False

    def start(self) -> None:
        self._conn.start_stream(200, "application/json")
        self._conn.on_close(self._stop)
        try:
            self._watcher = self._store.watch(self._filter, self._send, self._options.since)
        except Expired as exc:
            # The API server answers 200 and puts the 410 in the stream, which is what clients expect.
            self._send("ERROR", status(exc.code, exc.reason, exc.message))
            self.finish()
            return
        loop = asyncio.get_running_loop()
        if self._options.timeout is not None:
            self._timers.append(loop.call_later(self._options.timeout, self.finish))
        if self._options.bookmarks:
            self._schedule_bookmark()

    def _schedule_bookmark(self) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self._options.bookmark_interval, self._bookmark))

    def _bookmark(self) -> None:
        if self._done:
            return
        # A bookmark carries only the kind and the current resourceVersion of the whole store.
        self._send("BOOKMARK", {"kind": self._kind.kind, "apiVersion": self._kind.api_version,
                                "metadata": {"resourceVersion": str(self._store.rv),
                                             "annotations": {"k8s.io/initial-events-end": "true"}}})
        self._schedule_bookmark()

    def _send(self, type_: str, obj: Obj) -> None:
        if self._done:
            return
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n"
        self._conn.send_chunk(line.encode())

    def finish(self) -> None:
        """End the response normally (the chunked terminator), as after timeoutSeconds."""
        if self._done:
            return
        self._stop()
        self._conn.end_stream()

    def _stop(self) -> None:
        if self._done:
            return
        self._done = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._watcher is not None:
            self._store.unwatch(self._watcher)
            self._watcher = None
