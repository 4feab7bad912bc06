"""A tunnel survives what a cluster does to it, keeping its local port: pod deletion,
unreadiness, a rollout, a container restart, an API server restart, an expired watch."""

from __future__ import annotations

import asyncio

import pytest

from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster

from .test_forwarding import http_get


async def serving_pod(port: int) -> str:
    status, headers, _ = await http_get(port)
    assert status == 200
    return headers["x-pod"]


@pytest.mark.transports
async def test_deleted_pod_is_replaced_on_the_same_local_port(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    cluster.scale("deployments", "default", "web", 1)
    _, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    assert await serving_pod(unused_tcp_port) == first.pod
    # a connection open on the dying pod is closed, not left hanging
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    replacement = cluster.delete_pod("default", first.pod)
    reconnected = await events.wait_for(EventKind.RECONNECTED)
    assert (reconnected.old_pod, reconnected.pod, reconnected.local_port) == (first.pod, replacement, unused_tcp_port)
    assert await asyncio.wait_for(reader.read(), 10) is not None  # ends (EOF) rather than hangs
    writer.close()
    assert await serving_pod(unused_tcp_port) == replacement


async def test_unready_pod_hands_over_to_a_ready_one(cluster: SimCluster, run_rules, unused_tcp_port: int) -> None:
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    cluster.set_ready("default", first.pod, False)
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert moved.old_pod == first.pod and moved.pod != first.pod
    assert await serving_pod(unused_tcp_port) == moved.pod


@pytest.mark.transports
async def test_a_connection_waits_for_the_replacement_when_none_is_ready(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    cluster.scale("deployments", "default", "web", 1)
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    cluster.set_ready("default", first.pod, False)
    await events.wait_for(EventKind.WAITING, lambda e: e.old_pod == first.pod)
    pending = asyncio.ensure_future(serving_pod(unused_tcp_port))  # arrives while nothing is ready
    await asyncio.sleep(0.1)
    assert not pending.done()
    cluster.set_ready("default", first.pod, True)
    assert await asyncio.wait_for(pending, 10) == first.pod


@pytest.mark.transports
async def test_rollout_moves_to_the_new_version_once_ready(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    old_pods = set(cluster.pod_names("default", "app=web"))
    cluster.rollout("default", "web", image="web:v2", scale_down_delay=-1)  # old pods stay until finished
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert moved.old_pod == first.pod and moved.pod not in old_pods
    assert await serving_pod(unused_tcp_port) == moved.pod
    cluster.finish_rollout("default", "web")


async def test_container_restart_is_reported_and_the_port_keeps_working(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    _, events = await run_rules([Rule(ResourceType.STATEFULSET, "api", 8000, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    cluster.restart_container("default", "api-0")
    restarted = await events.wait_for(EventKind.RECONNECTED)
    assert restarted.pod == "api-0" and "restarted" in restarted.message
    assert await serving_pod(unused_tcp_port) == "api-0"


@pytest.mark.transports
async def test_api_server_restart_mid_transfer_spares_the_other_tunnels(
    cluster: SimCluster, run_rules, unused_tcp_port_factory
) -> None:
    web_port, api_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=web_port),
                                 Rule(ResourceType.STATEFULSET, "api", 8000, local_port=api_port)])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == web_port)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == api_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", web_port)
    writer.write(b"GET /bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")  # a long download
    await reader.readexactly(1024 * 1024)
    await cluster.drop_connections(down_for=0.5)
    # the cut stream ends the transfer; listeners stay open and work once the server is back
    while await asyncio.wait_for(reader.read(1 << 20), 10):
        pass
    writer.close()
    assert (await http_get(api_port))[0] == 200
    assert (await http_get(web_port))[0] == 200
    # and the watches came back: a change in the cluster still reaches the tunnel
    pod = (await http_get(api_port))[1]["x-pod"]
    cluster.delete_pod("default", pod)
    await events.wait_for(EventKind.RECONNECTED, lambda e: e.local_port == api_port)
    assert not [e for e in events.of(EventKind.STOPPED)]


async def test_expired_watch_lists_again(cluster: SimCluster, run_rules, unused_tcp_port: int) -> None:
    _, events = await run_rules([Rule(ResourceType.STATEFULSET, "api", 8000, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    cluster.compact_history()
    await cluster.drop_connections()  # the watch resumes from an RV the server no longer has: 410
    cluster.delete_pod("default", "api-0")
    await events.wait_for(EventKind.RECONNECTED)
    assert await serving_pod(unused_tcp_port) == "api-0"


async def keep_alive_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """One request on an open keep-alive connection; returns the pod that answered."""
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head.split("\r\n")[1:] if line)}
    await reader.readexactly(int(headers["content-length"]))
    return headers["x-pod"]


@pytest.mark.transports
async def test_an_unready_pod_keeps_its_open_connections_and_new_ones_move(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    """As kubectl does: a pod that stops being Ready but keeps running keeps the connections it
    has, also across a wait for another pod; only new connections go to the new pod."""
    cluster.scale("deployments", "default", "web", 1)
    _, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    assert await keep_alive_get(reader, writer) == first.pod
    cluster.set_ready("default", first.pod, False)  # no pod ready: the tunnel waits
    await events.wait_for(EventKind.WAITING, lambda e: e.old_pod == first.pod)
    cluster.scale("deployments", "default", "web", 2)  # another pod becomes ready
    moved = await events.wait_for(EventKind.RECONNECTED)
    assert moved.old_pod == first.pod and moved.pod != first.pod
    assert await serving_pod(unused_tcp_port) == moved.pod  # new connections move
    assert await keep_alive_get(reader, writer) == first.pod  # the open one still works
    # it ends when the pod ends it: deleting the pod closes it, and that is no failure
    cluster.delete_pod("default", first.pod)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert await serving_pod(unused_tcp_port) == moved.pod
    assert not events.of(EventKind.FAILED)


@pytest.mark.transports
async def test_network_change_ends_open_connections_and_lists_again(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    informers = list(run.cache._informers.values())
    tasks_before = [informer._task for informer in informers]
    run.network_changed()
    # the open connection ends (its path may be dead for good) rather than hanging
    assert await asyncio.wait_for(reader.read(), 10) is not None
    writer.close()
    # every watch started over, and the tunnel serves on the same local port
    assert all(informer._task is not before for informer, before in zip(informers, tasks_before, strict=True))
    await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), 10)
    assert await serving_pod(unused_tcp_port)
