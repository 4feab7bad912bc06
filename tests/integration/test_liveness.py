"""A tunnel never lies about its state and heals: an API server that stops answering, a view of
the cluster that went stale, a busy server, a rollout, a slow reader after a half-close."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from trayapp.engine.forward.pump import HALF_CLOSE_LINGER
from trayapp.engine.forward.tunnel import OUTAGE_GRACE
from trayapp.engine.runtime import ContextRun
from trayapp.model import EventKind, ResourceType, Rule, Transport, TunnelState
from trayapp.sim import SimCluster
from trayapp.sim.backends import pattern

from .conftest import SCENARIO, start_run
from .test_forwarding import http_get
from .test_reconnect import serving_pod

OUTAGE = 8.0  # seconds the API server refuses connections: told after two graces, then room to look


def freeze_watches(run: ContextRun) -> None:
    """Stand-in for watches on a dead path that nobody noticed yet: they deliver nothing more,
    so kubetray's view of the cluster goes stale while the server itself answers."""
    for informer in run.cache._informers.values():
        assert informer._task is not None
        informer._task.cancel()


async def connections_ended(run: ContextRun, timeout: float = 15.0) -> None:
    async def ended() -> None:
        for forwarder in run.forwarders.values():
            while forwarder._connections:
                await asyncio.gather(*forwarder._connections, return_exceptions=True)

    await asyncio.wait_for(ended(), timeout)


def state_of(run: ContextRun, port: int) -> TunnelState:
    return next(view.state for view in run.views() if view.local_port == port)


async def test_an_api_server_outage_is_told_once_and_the_port_stays_open(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    await cluster.drop_connections(down_for=OUTAGE)
    waiting = await events.wait_for(EventKind.WAITING, timeout=15)
    assert cluster.url in waiting.message and f"127.0.0.1:{unused_tcp_port} open" in waiting.message
    assert "has not answered for" in waiting.message and "reconnects when it answers" in waiting.message
    assert waiting.local_port == unused_tcp_port
    assert state_of(run, unused_tcp_port) == TunnelState.WAITING
    _, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)  # the listener stays
    writer.close()
    back = await events.wait_for(EventKind.FORWARDING, lambda e: e is not forwarding, timeout=30)
    assert back.pod == forwarding.pod and "answers again" in back.message
    assert state_of(run, unused_tcp_port) == TunnelState.FORWARDING
    assert await serving_pod(unused_tcp_port) == forwarding.pod
    assert len(events.of(EventKind.WAITING)) == 1  # one message per outage, not one per retry
    assert not events.of(EventKind.FAILED)


async def test_an_api_server_restart_that_is_over_at_once_says_nothing(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    await cluster.drop_connections(down_for=0.3)  # every watch breaks; the server is back at once
    # Nothing to wait for but time: longer than the grace and the relist that follows it.
    await asyncio.sleep(2 * OUTAGE_GRACE + 1.0)
    assert [e.kind for e in events.seen] == [EventKind.FORWARDING]
    assert state_of(run, unused_tcp_port) == TunnelState.FORWARDING
    assert await serving_pod(unused_tcp_port) == forwarding.pod


async def test_a_pod_replaced_during_an_outage_is_a_reconnect_to_the_new_pod(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    cluster.scale("deployments", "default", "web", 1)
    _, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    await cluster.drop_connections(down_for=OUTAGE)
    await events.wait_for(EventKind.WAITING, timeout=15)
    replacement = cluster.delete_pod("default", first.pod)
    moved = await events.wait_for(EventKind.RECONNECTED, timeout=30)
    assert (moved.old_pod, moved.pod, moved.local_port) == (first.pod, replacement, unused_tcp_port)
    assert await serving_pod(unused_tcp_port) == replacement


@pytest.mark.transports
async def test_a_connection_made_during_an_outage_is_served_when_the_server_answers(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)],
                                connect_timeout=OUTAGE + 20)
    await events.wait_for(EventKind.FORWARDING)
    await cluster.drop_connections(down_for=OUTAGE)
    status, _, _ = await asyncio.wait_for(http_get(unused_tcp_port), OUTAGE + 20)
    assert status == 200
    assert not events.of(EventKind.FAILED)


async def test_a_dial_failing_on_a_dead_path_turns_the_tunnel_waiting(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """Before any watch notices, a connection that cannot reach the server is enough."""
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)],
                                  connect_timeout=1.0)
    await events.wait_for(EventKind.FORWARDING)
    freeze_watches(run)  # nobody else would notice
    await cluster.drop_connections(down_for=OUTAGE)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 15) == b""  # given up after connect_timeout
    writer.close()
    waiting = await events.wait_for(EventKind.WAITING, timeout=15)
    assert cluster.url in waiting.message
    assert state_of(run, unused_tcp_port) == TunnelState.WAITING
    assert not events.of(EventKind.FAILED)  # the waiting tunnel says it all


@pytest.mark.transports
async def test_a_dial_finding_the_pod_gone_lists_again_and_the_connection_waits_for_the_new_pod(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    cluster.scale("deployments", "default", "web", 1)
    run, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    freeze_watches(run)
    replacement = cluster.delete_pod("default", first.pod)
    await asyncio.sleep(0.2)
    assert not events.of(EventKind.RECONNECTED)  # the stale view still shows the old pod
    # the dial gets 404: kubetray lists again at once and carries this connection to the new pod
    assert await asyncio.wait_for(serving_pod(unused_tcp_port), 10) == replacement
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert (moved.old_pod, moved.pod) == (first.pod, replacement)
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_a_lost_sandbox_on_the_error_channel_moves_the_connection_with_its_request(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """The API still shows the pod, the node says "failed to find sandbox": the request already
    sent goes to the pod kubetray moves to, and the client never notices."""
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    freeze_watches(run)
    cluster.lose_sandbox("default", first.pod)
    cluster.set_ready("default", first.pod, False)  # what the next list will show
    other = next(name for name in cluster.pod_names("default", "app=web") if name != first.pod)
    assert await asyncio.wait_for(serving_pod(unused_tcp_port), 10) == other
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert (moved.old_pod, moved.pod) == (first.pod, other)
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_a_rollout_shows_no_failure_for_connections_on_the_old_pods(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    # the kubelet reports the broken copy to each open stream, as the one in the issue did
    cluster.settings.stream_errors_on_pod_stop = True
    run, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    old_pods = set(cluster.pod_names("default", "app=web"))
    # Five long downloads on the old pod, each read as it comes, as their clients would: over
    # SPDY they share one session, and a stream nobody reads holds the others up once its bounded
    # buffer is full (the kubelet's SPDY has no flow control; see forward/spdysession.py).
    started = [asyncio.Event() for _ in range(5)]

    async def download(begun: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
        writer.write(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while data := await asyncio.wait_for(reader.read(1 << 20), 10):  # the old pod's end ends it
            received += len(data)
            if received >= 64 * 1024:
                begun.set()
        writer.close()

    downloads = asyncio.gather(*(download(begun) for begun in started))
    for begun in started:
        await asyncio.wait_for(begun.wait(), 30)
    cluster.rollout("default", "web", image="web:v2")
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert moved.old_pod == first.pod
    await downloads
    assert await serving_pod(unused_tcp_port) not in old_pods
    await connections_ended(run)
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_connections_on_a_deleted_pod_end_without_a_failure_even_when_the_watch_is_dead(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """The kubelet's error beats the news of the deletion: kubetray asks the server, sees the
    pod gone, and reports a reconnect, not a failed connection."""
    cluster.settings.stream_errors_on_pod_stop = True
    cluster.scale("deployments", "default", "web", 1)
    run, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(64 * 1024)
    freeze_watches(run)
    replacement = cluster.delete_pod("default", first.pod)
    while await asyncio.wait_for(reader.read(1 << 20), 10):
        pass
    writer.close()
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert (moved.old_pod, moved.pod) == (first.pod, replacement)
    await connections_ended(run)  # the connection's verdict is in once its task ended
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_a_port_the_pod_refuses_is_still_reported(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.POD, "debug-shell", 7002, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    failed = await events.wait_for(EventKind.FAILED)
    assert "connection refused" in failed.message and failed.pod == "debug-shell"


# v4 only: over SPDY the client's EOF reaches the source program, which then ends its side.
@pytest.mark.parametrize("transport", [Transport.V4], indirect=True, ids=["v4"])
async def test_a_slow_reader_after_a_half_close_gets_every_byte(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """v4's linger counts the pod's silence, not the time a slow reader takes: a download that
    the client reads slowly after shutting down its writing side must arrive whole."""
    _, events = await run_rules([Rule(ResourceType.POD, "debug-shell", 7001, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", unused_tcp_port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    writer.write_eof()  # nothing to say: only read from the source
    size = 8 * 1024 * 1024
    received = bytearray(await reader.readexactly(256 * 1024))
    # A reader busy with something else for longer than two lingers, so that no look at the
    # linger clock (one per linger) can see progress while it stalls.
    await asyncio.sleep(2 * HALF_CLOSE_LINGER + 0.5)
    while len(received) < size:
        chunk = await asyncio.wait_for(reader.read(min(64 * 1024, size - len(received))), 10)
        assert chunk, f"the download ended after {len(received)} of {size} bytes"
        received += chunk
    assert bytes(received) == pattern(size)
    writer.close()


async def test_a_failing_forwarder_stop_is_logged(
    cluster: SimCluster, run_rules, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    forwarder = next(iter(run.forwarders.values()))
    real_stop = forwarder.stop

    async def failing_stop() -> None:
        await real_stop()
        raise RuntimeError("listener would not close")

    forwarder.stop = failing_stop  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="trayapp.engine.runtime"):
        await run.apply_rules([])
    assert any("stopping tunnel" in r.getMessage() and r.exc_info for r in caplog.records)
    assert not run.forwarders


async def test_refused_credentials_say_what_to_do(tmp_path: Path, unused_tcp_port: int) -> None:
    async with SimCluster("auth", scenario=SCENARIO, token="the-right-one") as cluster:
        path = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim", token="a-wrong-one")
        run, events = await start_run(path, [Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
        try:
            failed = await events.wait_for(EventKind.FAILED, lambda e: e.tunnel_id is None)
            assert "`kubetray token set sim`" in failed.message
            assert "refresh the kubeconfig's credentials" in failed.message
            assert "a-wrong-one" not in failed.message
        finally:
            await run.stop()
