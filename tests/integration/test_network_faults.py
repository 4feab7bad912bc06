"""The engine against the simulator through the fault proxy: what a dropped VPN, a sleeping laptop
or a reset storm does to the path to the API server, and what kubetray must say and do about it.

The engine never talks to the simulator directly here: the kubeconfig's server is the proxy.
These tests check behaviour, not timings (tests/bench/bench_faults.py measures those). The
engine tells a dead watch from a quiet one with a read deadline; a test asks for a short one
when ContextRun accepts it (`liveness_kwargs`), so it need not wait the default out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.faultproxy import FaultProxy
from trayapp.engine.events import EventBus
from trayapp.engine.kube.auth import Credentials
from trayapp.engine.runtime import ContextRun
from trayapp.model import Event, EventKind, ResourceType, Rule, Transport, TunnelState
from trayapp.sim import SimCluster
from trayapp.sim.kubeconfig import write_kubeconfig

from .conftest import Events
from .test_forwarding import http_get

# ContextRun keywords under which the liveness work may accept "how long a silent watch or an
# unanswered API server may go before the path counts as dead", in seconds. The first one the
# constructor has is given SHORT_DEADLINE; without any, the engine's own default applies.
SHORT_DEADLINE = 2.0  # the watch-silence ceiling: the tests need no minute-long outages


def liveness_kwargs() -> dict[str, float]:
    return {"watch_silence": SHORT_DEADLINE}


# How long a test waits to be told the path is dead: generous for a short deadline on a loaded
# machine; with the engine's default, the goal (45 s) plus a margin.
TOLD_TIMEOUT = 30.0
HEAL_TIMEOUT = 30.0


@pytest.fixture
async def proxy(cluster: SimCluster) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(("127.0.0.1", cluster.port)) as p:
        yield p


@pytest.fixture
def proxied_kubeconfig(cluster: SimCluster, proxy: FaultProxy, tmp_path: Path) -> Path:
    entry = dataclasses.replace(cluster.kubeconfig_entry("sim"), server=proxy.url)
    return write_kubeconfig(tmp_path / "kubeconfig", [entry], current="sim")


@pytest.fixture
async def engine(proxied_kubeconfig: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts a ContextRun on the proxied kubeconfig with the rules given; stopped at the end."""
    runs: list[ContextRun] = []

    async def start(rules: Sequence[Rule]) -> tuple[ContextRun, Events]:
        events = Events()
        bus = EventBus()
        bus.subscribe(events)
        credentials = Credentials([proxied_kubeconfig], None)
        access = await asyncio.to_thread(credentials.load)
        run = ContextRun(access, credentials, rules, bus, 10.0, **liveness_kwargs())
        runs.append(run)
        await run.start()
        return run, events

    yield start
    for run in runs:
        await run.stop()


async def event_after(
    events: Events, start: int, kinds: Sequence[EventKind], where: Callable[[Event], bool], timeout: float
) -> Event:
    """The first event of one of `kinds` among those seen after the first `start` ones."""
    def later(event: Event) -> bool:
        return any(seen is event for seen in events.seen[start:]) and where(event)

    waiters = [asyncio.ensure_future(events.wait_for(kind, later, timeout)) for kind in kinds]
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for waiter in done:
        if waiter.exception() is None:
            return waiter.result()
    raise AssertionError(
        f"no {'/'.join(k.value for k in kinds)} event within {timeout:.0f} s; "
        f"after it: {[e.kind.value + ': ' + e.message for e in events.seen[start:]]}"
    )


def tunnel_view(run: ContextRun, port: int) -> Any:
    return next(view for view in run.views() if view.local_port == port)


async def serving_pod(port: int) -> str:
    status, headers, _ = await asyncio.wait_for(http_get(port), HEAL_TIMEOUT)
    assert status == 200
    return headers["x-pod"]


async def one_pod_forwarding(
    cluster: SimCluster, engine: Callable[..., Any], port: int, transport: Transport = Transport.AUTO
) -> tuple[ContextRun, Events, str]:
    """`web` scaled to one pod, so a deleted pod has exactly one replacement; forwarding on `port`."""
    cluster.scale("deployments", "default", "web", 1)
    run, events = await engine([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=port, transport=transport)])
    first = await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == port)
    assert first.pod is not None
    assert await serving_pod(port) == first.pod
    return run, events, first.pod


async def test_a_reset_of_every_api_connection_heals_by_itself(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    _, events, pod = await one_pod_forwarding(cluster, engine, port)
    await proxy.wait_until(lambda c: c.open >= 1, 10)  # at least the watch is open through the proxy
    proxy.reset_all()
    replacement = cluster.delete_pod("default", pod)
    moved = await events.wait_for(EventKind.RECONNECTED, lambda e: e.pod == replacement, HEAL_TIMEOUT)
    assert moved.local_port == port
    assert await serving_pod(port) == replacement
    assert proxy.counts().resets >= 2


async def test_a_slow_link_still_moves_the_tunnel_to_the_replacement(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    _, events, pod = await one_pod_forwarding(cluster, engine, port)
    proxy.slow(latency=0.2, bandwidth=256_000)
    replacement = cluster.delete_pod("default", pod)
    moved = await events.wait_for(EventKind.RECONNECTED, lambda e: e.pod == replacement, HEAL_TIMEOUT)
    assert moved.local_port == port
    assert await serving_pod(port) == replacement


async def test_a_blackholed_api_server_is_reported_as_waiting_and_the_tunnel_heals(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    run, events, pod = await one_pod_forwarding(cluster, engine, port)
    start = len(events.seen)
    proxy.blackhole()
    waiting = await event_after(events, start, [EventKind.WAITING],
                                lambda e: e.local_port == port, TOLD_TIMEOUT)
    assert f"127.0.0.1:{proxy.port}" in waiting.message, "the message names the API server"
    assert tunnel_view(run, port).state == TunnelState.WAITING
    _, writer = await asyncio.open_connection("127.0.0.1", port)  # the listener stays open
    writer.close()
    start = len(events.seen)
    proxy.pass_through()  # the path comes back
    back = await event_after(events, start, [EventKind.FORWARDING, EventKind.RECONNECTED],
                             lambda e: e.local_port == port, HEAL_TIMEOUT)
    assert back.pod == pod
    assert await serving_pod(port) == pod
    assert tunnel_view(run, port).state == TunnelState.FORWARDING


async def test_after_a_reset_storm_the_replacement_is_served_on_the_same_port(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    run, events, pod = await one_pod_forwarding(cluster, engine, port)
    start = len(events.seen)
    proxy.refuse()  # every new connection is reset as it arrives...
    proxy.reset_all()  # ...and every open one now
    replacement = cluster.delete_pod("default", pod)
    waiting = await event_after(events, start, [EventKind.WAITING],
                                lambda e: e.local_port == port, TOLD_TIMEOUT)
    assert f"127.0.0.1:{proxy.port}" in waiting.message, "the message names the API server"
    assert tunnel_view(run, port).state == TunnelState.WAITING
    start = len(events.seen)
    proxy.pass_through()
    back = await event_after(events, start, [EventKind.FORWARDING, EventKind.RECONNECTED],
                             lambda e: e.pod == replacement, HEAL_TIMEOUT)
    assert back.local_port == port
    assert await serving_pod(port) == replacement
    view = tunnel_view(run, port)
    assert (view.state, view.pod) == (TunnelState.FORWARDING, replacement)


async def test_a_pod_deleted_while_asleep_is_not_shown_as_forwarding_after_the_wake(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    run, events, pod = await one_pod_forwarding(cluster, engine, port)
    proxy.sleep()
    replacement = cluster.delete_pod("default", pod)  # unseen: the watch's path is dead
    assert replacement is not None
    start = len(events.seen)
    proxy.wake()  # a new network: the old connections, the watch among them, are dead for good
    # A user's request right after the wake reaches the replacement on the same port: the dial to
    # the deleted pod fails (404), which tells kubetray its view is stale; it lists again and the
    # connection waits for the new pod instead of being reset.
    assert await serving_pod(port) == replacement
    back = await event_after(events, start, [EventKind.FORWARDING, EventKind.RECONNECTED],
                             lambda e: e.pod == replacement, HEAL_TIMEOUT)
    assert back.local_port == port
    view = tunnel_view(run, port)
    assert (view.state, view.pod) == (TunnelState.FORWARDING, replacement)
    lies = [e for e in events.seen[start:] if e.kind == EventKind.FORWARDING and e.pod == pod]
    assert not lies, f"claimed forwarding to the deleted pod after the wake: {lies}"


@pytest.mark.parametrize("transport", [Transport.V4, Transport.SPDY_WS], ids=["v4", "spdy-ws"])
async def test_a_connection_during_a_503_waits_for_the_server_instead_of_failing(
    cluster: SimCluster, proxy: FaultProxy, engine: Callable[..., Any], unused_tcp_port: int, transport: Transport
) -> None:
    port = unused_tcp_port
    _, events, pod = await one_pod_forwarding(cluster, engine, port, transport)
    if transport != Transport.V4:
        # A session carries every connection to the pod: end it, so the next connection needs a
        # new one (the connection may first meet the dying session: it is sent again, unharmed).
        proxy.reset_all()
    proxy.unavailable(retry_after=1)  # the port-forward dial of the next connection gets a 503
    request = asyncio.ensure_future(serving_pod(port))
    await proxy.wait_until(lambda c: c.unavailable >= 1, HEAL_TIMEOUT)
    proxy.pass_through()  # the server is back: the waiting connection goes through
    assert await request == pod
    assert not events.of(EventKind.FAILED)  # a server briefly away is no failure of the connection
