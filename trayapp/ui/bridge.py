"""Engine thread -> GUI thread: every callback from the engine becomes a queued Qt signal.

The Bridge lives on the GUI thread. The engine calls its emitters from its own (non-Qt) thread:
each call is put on a queue and the Bridge is woken with QCoreApplication.postEvent, the one Qt
call documented as safe from any thread; the Bridge then emits the signal on the GUI thread, so
every slot runs there whatever kind of callable it is. Nothing polls in either direction:
commands go the other way through EngineThread.submit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Signal, SignalInstance

from trayapp.control import Snapshot
from trayapp.engine.aio import deadline
from trayapp.model import Event, Notice


class Bridge(QObject):
    snapshot = Signal(object)  # Snapshot
    engine_event = Signal(object)  # Event
    request = Signal(object, object)  # (request dict, concurrent.futures.Future for the answer)
    notice_fallback = Signal(object)  # Notice the platform service did not take
    tell_later = Signal(object)  # Notice to send (a command failed on the engine thread)
    notice_clicked = Signal(object)  # Notice
    engine_finished = Signal(object)  # exit status, or the exception the engine died of

    _WAKE = QEvent.Type(QEvent.registerEventType())

    def __init__(self) -> None:
        super().__init__()
        self._queue: collections.deque[tuple[SignalInstance, tuple[Any, ...]]] = collections.deque()

    def later(self, signal: SignalInstance, *args: Any) -> None:
        """Emit `signal(*args)` on the GUI thread; callable from any thread."""
        self._queue.append((signal, args))  # deque.append is atomic
        QCoreApplication.postEvent(self, QEvent(self._WAKE))

    def event(self, event: QEvent) -> bool:
        if event.type() == self._WAKE:
            while self._queue:
                signal, args = self._queue.popleft()
                signal.emit(*args)
            return True
        return super().event(event)

    # Called on the engine thread.

    def push_snapshot(self, snapshot: Snapshot) -> None:
        self.later(self.snapshot, snapshot)

    def push_event(self, event: Event) -> None:
        self.later(self.engine_event, event)

    def clicked(self, notice: Notice) -> None:
        self.later(self.notice_clicked, notice)

    async def ask_ui(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another kubetray process asks the tray something only the GUI thread knows."""
        answer: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self.later(self.request, request, answer)
        try:
            async with deadline(5.0):
                return await asyncio.wrap_future(answer)
        except TimeoutError:
            return {"error": "busy", "message": "kubetray is running but its window did not answer in time."}
