"""The engine's event bus: fans events out to subscribers and coalesces repeated failures.

A failure that repeats with the same message (a refused credential retried with backoff, a pod
that keeps refusing connections) is published once per window; the next one after the window
carries the count of those held back, so subscribers see how often it happened without a flood.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from trayapp.model import Event, EventKind

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]

COALESCE_WINDOW = 60.0  # seconds during which an identical failure is counted, not repeated
_MAX_KEYS = 1000


@dataclass
class _Seen:
    published_at: float
    held_back: int = 0


class FailureCoalescer:
    """Pure: decides whether a failure is new, a repeat to hold back, or a repeat to publish."""

    def __init__(self, window: float = COALESCE_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str | None, str | None, str], _Seen] = {}

    def admit(self, event: Event) -> Event | None:
        if event.kind != EventKind.FAILED:
            return event
        key = (event.context, event.tunnel_id, event.message)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.published_at < self.window:
            seen.held_back += 1
            return None
        count = 1 + (seen.held_back if seen else 0)
        self._seen[key] = _Seen(now)
        if len(self._seen) > _MAX_KEYS:
            self._forget_oldest()
        if count == 1:
            return event
        return replace(event, count=count, message=f"{event.message} (This happened {count} times.)")

    def _forget_oldest(self) -> None:
        for key, _ in sorted(self._seen.items(), key=lambda item: item[1].published_at)[: _MAX_KEYS // 2]:
            del self._seen[key]


class EventBus:
    """Fans events out to subscribers; a failing subscriber is logged, never fatal."""

    def __init__(self, coalescer: FailureCoalescer | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._coalescer = coalescer or FailureCoalescer()
        self.history: list[Event] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        admitted = self._coalescer.admit(event)
        if admitted is None:
            log.debug("held back a repeated failure: %s", event.message)
            return
        if admitted.kind != EventKind.STATS:  # counters once a second would crowd out what people read
            self.history.append(admitted)
            del self.history[:-500]
        for subscriber in list(self._subscribers):
            try:
                subscriber(admitted)
            except Exception:
                log.exception("an event subscriber failed on %s", admitted.kind.value)
