"""Stop, start, restart and pause tunnels, as the tray's menu asks, on real listeners."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Callable

import pytest

from trayapp.model import EventKind, ResourceType, Rule, TunnelState


async def answers(port: int) -> str:
    """An HTTP answer through the tunnel, fetched off the loop the engine runs on."""
    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            return response.headers["X-Pod"]

    return await asyncio.to_thread(fetch)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def two_rules(unused_tcp_port_factory: Callable[[], int]) -> tuple[Rule, Rule]:
    web = Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port_factory())
    legacy = Rule(ResourceType.REPLICASET, "legacy", 8080, local_port=unused_tcp_port_factory())
    return web, legacy


async def test_stop_and_start_one_tunnel(run_rules, two_rules) -> None:
    web, legacy = two_rules
    run, events = await run_rules([web, legacy])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "web")
    await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "legacy")
    web_id = next(v.tunnel_id for v in run.views() if v.rule.resource_name == "web")

    run.switches.disabled.add(web_id)
    await run.switches_changed()
    assert refused(web.local_port)
    assert await answers(legacy.local_port)  # the other tunnel is untouched
    stopped = {v.tunnel_id: v for v in run.views()}[web_id]
    assert stopped.state == TunnelState.STOPPED and stopped.reason == "Stopped from the tray."
    assert [v.rule.resource_name for v in run.views()] == ["web", "legacy"]  # still listed, in rule order

    run.switches.disabled.discard(web_id)
    await run.switches_changed()
    await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "web" and e is not events.of(
        EventKind.FORWARDING)[0])
    assert await answers(web.local_port)


async def test_pause_all_frees_every_port_and_resume_brings_them_back(run_rules, two_rules) -> None:
    web, legacy = two_rules
    run, events = await run_rules([web, legacy])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "legacy")
    await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "web")
    run.switches.paused = True
    await run.switches_changed()
    assert refused(web.local_port) and refused(legacy.local_port)
    assert {v.state for v in run.views()} == {TunnelState.STOPPED}
    assert {v.reason for v in run.views()} == {"Paused from the tray."}
    run.switches.paused = False
    await run.switches_changed()
    assert {v.local_port for v in run.views()} == {web.local_port, legacy.local_port}
    assert await answers(web.local_port) and await answers(legacy.local_port)


async def test_restart_keeps_the_local_port_even_after_a_fallback(run_rules, unused_tcp_port: int) -> None:
    # The wanted port is busy, so the tunnel falls back; a restart must keep the port it got,
    # not go back to asking for the busy one.
    busy = socket.socket()
    busy.bind(("127.0.0.1", unused_tcp_port))
    busy.listen()
    try:
        rule = Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)
        run, events = await run_rules([rule])
        first = await events.wait_for(EventKind.FORWARDING)
        assert first.local_port != unused_tcp_port
        (view,) = run.views()
        assert await run.restart(view.tunnel_id)
        stopped = await events.wait_for(EventKind.STOPPED)
        assert stopped.local_port == first.local_port
        second = await events.wait_for(EventKind.FORWARDING, lambda e: e is not first)
        assert second.local_port == first.local_port
        assert await answers(first.local_port)
        assert not await run.restart("no-such-tunnel")
    finally:
        busy.close()
