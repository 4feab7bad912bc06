"""Per-tunnel counters over real sockets: what they count, how often they publish, and that the
forwarder's connections reach them (against the simulator)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import SCENARIO, start_run
from trayapp.engine.events import EventBus
from trayapp.engine.forward.stats import TunnelCounter
from trayapp.model import Event, EventKind, ResourceType, Rule, TunnelStats
from trayapp.sim import SimCluster


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.arrived.set()

    async def until(self, wanted: TunnelStats, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not self.events or self.events[-1].stats != wanted:
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"stats never reached {wanted}: {[e.stats for e in self.events]}") from None


async def echo_server(counter: TunnelCounter) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader, writer = counter.track(reader, writer)
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        finally:
            counter.closed()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def roundtrip(port: int, chunks: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        assert await reader.readexactly(len(chunk)) == chunk
    writer.close()
    await writer.wait_closed()


async def test_counts_connections_and_bytes_each_way_and_publishes_them() -> None:
    published = Published()
    counter = TunnelCounter("kind-dev", "kind-dev/default/svc/web:80@127.0.0.1", published, interval=0.2)
    async for port in echo_server(counter):
        await roundtrip(port, [b"x" * 1000, b"y" * 500])
        await published.until(TunnelStats(open_connections=0, connections=1, bytes_in=1500, bytes_out=1500))
        await asyncio.gather(roundtrip(port, [b"a" * 10]), roundtrip(port, [b"b" * 20]))
        await published.until(TunnelStats(open_connections=0, connections=3, bytes_in=1530, bytes_out=1530))
    last = published.events[-1]
    assert (last.kind, last.context, last.tunnel_id) == (EventKind.STATS, "kind-dev",
                                                         "kind-dev/default/svc/web:80@127.0.0.1")
    assert last.to_json()["stats"] == {"openConnections": 0, "connections": 3, "bytesIn": 1530, "bytesOut": 1530}


async def test_publishes_at_most_once_an_interval_and_nothing_when_nothing_moves() -> None:
    published = Published()
    interval = 0.3
    counter = TunnelCounter("ctx", "t", published, interval=interval)
    assert not counter.armed  # a new tunnel: no timer
    async for port in echo_server(counter):
        began = time.monotonic()
        await roundtrip(port, [bytes([n]) * 100 for n in range(200)])  # 400 counted changes
        await published.until(TunnelStats(0, 1, 20000, 20000))
        elapsed = time.monotonic() - began
        # One publication per interval the traffic lasted, however many reads and writes there were.
        assert 1 <= len(published.events) <= 1 + elapsed / interval
        assert not counter.armed  # quiet again: nothing scheduled
        seen = len(published.events)
        await asyncio.sleep(interval * 3)
        assert len(published.events) == seen


async def test_a_stopped_counter_schedules_nothing() -> None:
    published = Published()
    counter = TunnelCounter("ctx", "t", published, interval=0.05)
    async for port in echo_server(counter):
        await roundtrip(port, [b"z"])
        counter.stop()
        assert not counter.armed
        await roundtrip(port, [b"z"])
        assert not counter.armed
    assert published.events == []


def test_stats_events_stay_out_of_the_history_people_read() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    bus.publish(Event(EventKind.STATS, "", tunnel_id="t", stats=TunnelStats(1, 1, 2, 3)))
    bus.publish(Event(EventKind.FORWARDING, "Forwarding web."))
    assert [e.kind for e in seen] == [EventKind.STATS, EventKind.FORWARDING]
    assert [e.kind for e in bus.history] == [EventKind.FORWARDING]
    assert "stats" not in Event(EventKind.FORWARDING, "x").to_json()


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    c = SimCluster("stats", scenario=SCENARIO)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def test_a_tunnels_connections_are_counted_through_the_engine(cluster: SimCluster, tmp_path,
                                                                      unused_tcp_port: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    cluster.write_kubeconfig(kubeconfig, context="sim")
    rule = Rule(ResourceType.POD, "debug-shell", 7000, local_port=unused_tcp_port)  # an echo port
    run, events = await start_run(kubeconfig, [rule])
    try:
        await events.wait_for(EventKind.FORWARDING)
        await roundtrip(unused_tcp_port, [b"hello " * 100, b"again"])
        stats = await events.wait_for(EventKind.STATS, lambda e: e.stats == TunnelStats(0, 1, 605, 605))
        assert stats.tunnel_id == run.views()[0].tunnel_id and stats.context == "sim"
    finally:
        await run.stop()
