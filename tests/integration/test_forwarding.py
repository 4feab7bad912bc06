"""Rules forwarding through the simulator end to end, over real sockets: every resource type,
named ports, service targetPort mapping, and waiting until a resource appears."""

from __future__ import annotations

import asyncio

import pytest

from trayapp.model import EventKind, ResourceType, Rule, Transport
from trayapp.sim import SimCluster


async def http_get(port: int, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), f"not an HTTP answer: {raw[:200]!r}"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def echo_roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    answer = await reader.readexactly(len(payload))
    writer.close()
    return answer


@pytest.mark.transports
async def test_service_rule_forwards_to_a_selected_pod(
    cluster: SimCluster, run_rules, unused_tcp_port: int, transport: Transport
) -> None:
    rule = Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)
    run, events = await run_rules([rule])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.local_port == unused_tcp_port
    assert forwarding.pod in cluster.pod_names("default", "app=web")
    status, headers, _ = await http_get(unused_tcp_port)
    assert status == 200
    assert headers["x-pod"] == forwarding.pod
    if transport != Transport.AUTO:  # the run really went over the transport it was told to use
        assert run.views()[0].transport == transport
        carrier = {Transport.SPDY_WS: "spdy-websocket"}.get(transport, transport.value)
        assert set(cluster.api.portforward_sessions) == {carrier}


@pytest.mark.parametrize(
    ("resource_type", "name", "port", "selector"),
    [
        (ResourceType.POD, "debug-shell", 7000, "app=debug"),
        (ResourceType.DEPLOYMENT, "web", 8080, "app=web"),
        (ResourceType.REPLICASET, "legacy", 8080, "app=legacy"),
        (ResourceType.STATEFULSET, "api", 8000, "app=api"),
        (ResourceType.REPLICATIONCONTROLLER, "old", 8080, "app=old"),
        (ResourceType.DAEMONSET, "agent", 9100, "app=agent"),
        (ResourceType.JOB, "migrate", 8080, "app=migrate"),
        (ResourceType.CRONJOB, "report", 8080, "app=report"),
        (ResourceType.SERVICE, "api", "web", "app=api"),
    ],
)
async def test_every_resource_type_reaches_one_of_its_pods(
    cluster: SimCluster, run_rules, unused_tcp_port: int, resource_type, name, port, selector
) -> None:
    rule = Rule(resource_type, name, port, local_port=unused_tcp_port)
    _, events = await run_rules([rule])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.pod in cluster.pod_names("default", selector)
    if resource_type == ResourceType.POD:
        assert await echo_roundtrip(unused_tcp_port, b"hello pod") == b"hello pod"
    else:
        status, headers, _ = await http_get(unused_tcp_port)
        assert (status, headers["x-pod"]) == (200, forwarding.pod)


async def test_named_port_without_local_port_listens_on_the_container_port(
    cluster: SimCluster, run_rules
) -> None:
    rule = Rule(ResourceType.STATEFULSET, "api", "http")
    _, events = await run_rules([rule])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.local_port is not None
    assert forwarding.requested_local_port is None
    status, headers, body = await http_get(forwarding.local_port)
    assert status == 200 and headers["x-pod"] == "api-0"
    assert b"port=8000" in body


async def test_service_port_name_maps_to_a_named_target_port(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    # service api: port "grpc" 9090 -> targetPort "grpc" -> container port 9090 (an echo backend)
    rule = Rule(ResourceType.SERVICE, "api", "grpc", local_port=unused_tcp_port)
    _, events = await run_rules([rule])
    await events.wait_for(EventKind.FORWARDING)
    assert await echo_roundtrip(unused_tcp_port, b"\x00\x01grpc-ish") == b"\x00\x01grpc-ish"


async def test_waiting_then_forwarding_when_the_service_appears(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    rule = Rule(ResourceType.SERVICE, "late", 80, local_port=unused_tcp_port)
    _, events = await run_rules([rule])
    waiting = await events.wait_for(EventKind.WAITING)
    assert "late" in waiting.message and waiting.local_port == unused_tcp_port
    # A connection made while waiting is held until the pod is there.
    pending = asyncio.ensure_future(http_get(unused_tcp_port))
    await asyncio.sleep(0.05)
    cluster.add_service("default", "late", {"app": "web"}, [{"port": 80, "targetPort": 8080}])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    status, headers, _ = await asyncio.wait_for(pending, 10)
    assert (status, headers["x-pod"]) == (200, forwarding.pod)


async def test_waiting_reports_missing_ready_pod(cluster: SimCluster, run_rules, unused_tcp_port: int) -> None:
    cluster.scale("deployments", "default", "web", 0)
    _, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    waiting = await events.wait_for(EventKind.WAITING)
    assert 'deployment "web" has no pods yet' in waiting.message
    cluster.scale("deployments", "default", "web", 1)
    (pod,) = cluster.pod_names("default", "app=web")
    cluster.set_ready("default", pod, False)
    unready = await events.wait_for(EventKind.WAITING, lambda e: "no ready pod" in e.message)
    assert "not Ready" in unready.message
    cluster.set_ready("default", pod, True)
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.pod == pod


@pytest.mark.transports
async def test_error_channel_text_fails_that_connection_only(
    cluster: SimCluster, run_rules, unused_tcp_port: int
) -> None:
    rule = Rule(ResourceType.POD, "debug-shell", 7002, local_port=unused_tcp_port)
    _, events = await run_rules([rule])
    await events.wait_for(EventKind.FORWARDING)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by kubetray
    writer.close()
    failed = await events.wait_for(EventKind.FAILED)
    assert "connection refused" in failed.message and "debug-shell" in failed.message
    # the tunnel is still there: the next connection is accepted (and fails the same way)
    reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
