"""Failure coalescing with an injected clock: no sleeps."""

from trayapp.engine.events import EventBus, FailureCoalescer
from trayapp.model import Event, EventKind


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def failed(message: str = "refused", tunnel: str = "t1") -> Event:
    return Event(EventKind.FAILED, message, context="c", tunnel_id=tunnel)


def test_repeats_within_the_window_are_held_back_then_counted() -> None:
    clock = Clock()
    coalescer = FailureCoalescer(window=60, clock=clock)
    assert coalescer.admit(failed()) == failed()
    clock.now = 10
    assert coalescer.admit(failed()) is None
    clock.now = 20
    assert coalescer.admit(failed()) is None
    clock.now = 61
    later = coalescer.admit(failed())
    assert later is not None and later.count == 3
    assert "3 times" in later.message


def test_different_messages_and_tunnels_are_not_merged() -> None:
    coalescer = FailureCoalescer(clock=Clock())
    assert coalescer.admit(failed("a")) is not None
    assert coalescer.admit(failed("b")) is not None
    assert coalescer.admit(failed("a", tunnel="t2")) is not None


def test_other_kinds_always_pass() -> None:
    coalescer = FailureCoalescer(clock=Clock())
    waiting = Event(EventKind.WAITING, "w", tunnel_id="t1")
    assert coalescer.admit(waiting) is waiting
    assert coalescer.admit(waiting) is waiting


def test_bus_delivers_admitted_events_and_survives_a_broken_subscriber() -> None:
    bus = EventBus(FailureCoalescer(clock=Clock()))
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.publish(failed())
    bus.publish(failed())
    assert seen == [failed()]
    assert bus.history == [failed()]
