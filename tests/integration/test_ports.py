"""Local ports through the whole engine: the fallback order when ports are taken, two rules that
want the same port, and the default address answering on both 127.0.0.1 and ::1."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import pytest

from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster

from .test_forwarding import http_get


def free_run(length: int) -> int:
    """A port p such that p..p+length-1 are all free right now (bound briefly to check)."""
    # Below Linux's ephemeral range (32768+), where client sockets of a busy machine do not land.
    for _ in range(200):
        start = random.randrange(20000, 32000 - length)
        held = []
        try:
            for port in range(start, start + length):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
            return start
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of free ports")


@pytest.fixture
def occupied() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def occupy(held: list[socket.socket], port: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    held.append(s)


async def test_busy_port_falls_back_to_the_next_one(cluster: SimCluster, run_rules, occupied) -> None:
    base = free_run(12)
    occupy(occupied, base)
    occupy(occupied, base + 1)
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=base)])
    fallback = await events.wait_for(EventKind.FALLBACK)
    assert (fallback.requested_local_port, fallback.local_port) == (base, base + 2)
    assert str(base) in fallback.message and str(base + 2) in fallback.message
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.local_port == base + 2
    status, _, _ = await http_get(base + 2)
    assert status == 200


async def test_after_the_next_ten_comes_the_4503_range(cluster: SimCluster, run_rules, occupied) -> None:
    base = free_run(11)
    for port in range(base, base + 11):
        occupy(occupied, port)
    with socket.socket() as probe:  # 4503 may be taken on a busy machine; then the next of the range
        free_4503 = probe.connect_ex(("127.0.0.1", 4503)) != 0
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=base)])
    fallback = await events.wait_for(EventKind.FALLBACK)
    assert fallback.local_port is not None
    if free_4503:
        assert fallback.local_port == 4503
    else:
        assert 4503 < fallback.local_port <= 4533 or fallback.local_port > 32768


async def test_two_rules_wanting_one_port(cluster: SimCluster, run_rules) -> None:
    base = free_run(3)
    first = Rule(ResourceType.SERVICE, "web", 80, local_port=base, name="first")
    second = Rule(ResourceType.STATEFULSET, "api", 8000, local_port=base, name="second")
    _, events = await run_rules([first, second])
    fallback = await events.wait_for(EventKind.FALLBACK)
    assert fallback.label == "second"
    assert (fallback.requested_local_port, fallback.local_port) == (base, base + 1)
    assert "another kubetray rule" in fallback.message
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "first" and e.local_port == base)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "second" and e.local_port == base + 1)
    _, web, _ = await http_get(base)
    _, api, _ = await http_get(base + 1)
    assert web["x-pod"].startswith("web-") and api["x-pod"] == "api-0"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def get_pod(host: str, port: int) -> str:
    """The pod that answered a GET on host:port (the simulator's x-pod header)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head = raw.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200"), head
    return next(line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("x-pod: "))


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_the_default_address_answers_on_both_loopbacks(cluster: SimCluster, run_rules) -> None:
    base = free_run(1)
    run, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=base)])
    forwarding = await events.wait_for(EventKind.FORWARDING)
    assert forwarding.local_port == base
    # A client that resolves localhost to ::1 first (Node 17+) gets the same tunnel as one on 127.0.0.1.
    assert (await get_pod("::1", base)).startswith("web-")
    assert (await get_pod("127.0.0.1", base)).startswith("web-")
    await run.stop()  # both listeners close with the tunnel
    for family, host in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
        with socket.socket(family) as probe:
            assert probe.connect_ex((host, base)) != 0


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_a_port_busy_on_ipv6_only_falls_back(cluster: SimCluster, run_rules, occupied) -> None:
    base = free_run(3)
    v6 = socket.socket(socket.AF_INET6)
    v6.bind(("::1", base))
    v6.listen()
    occupied.append(v6)
    _, events = await run_rules([Rule(ResourceType.SERVICE, "web", 80, local_port=base)])
    fallback = await events.wait_for(EventKind.FALLBACK)
    assert (fallback.requested_local_port, fallback.local_port) == (base, base + 1)
    await events.wait_for(EventKind.FORWARDING)
    assert (await get_pod("::1", base + 1)).startswith("web-")
