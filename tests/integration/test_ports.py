"""Local ports through the whole engine: the fallback order when ports are taken, two rules that
want the same port, and the default address answering on both 127.0.0.1 and ::1."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.config.rules import load_rules
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


async def test_two_rules_of_the_rules_file_asking_for_one_port_both_forward(
    cluster: SimCluster, run_rules, tmp_path: Path
) -> None:
    base = free_run(3)
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(
        "portForward:\n"
        f"  - {{resourceType: service, resourceName: web, port: 80, localPort: {base}, name: first}}\n"
        f"  - {{resourceType: statefulset, resourceName: api, port: 8000, localPort: {base}, name: second}}\n",
        encoding="utf-8",
    )
    ruleset = load_rules(rules_file)
    assert ruleset.problems == () and len(ruleset.warnings) == 1  # check warns; nothing is dropped
    _, events = await run_rules(ruleset.rules_for("sim"))
    fallback = await events.wait_for(EventKind.FALLBACK)
    assert fallback.label == "second" and (fallback.requested_local_port, fallback.local_port) == (base, base + 1)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "second" and e.local_port == base + 1)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "first" and e.local_port == base)
    assert (await http_get(base + 1))[1]["x-pod"] == "api-0"


async def test_one_target_on_two_local_ports_is_two_tunnels(cluster: SimCluster, run_rules) -> None:
    base = free_run(2)
    rules = [Rule(ResourceType.SERVICE, "web", 80, local_port=base, name="one"),
             Rule(ResourceType.SERVICE, "web", 80, local_port=base + 1, name="two")]
    run, events = await run_rules(rules)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "one" and e.local_port == base)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "two" and e.local_port == base + 1)
    assert not events.of(EventKind.FALLBACK)
    assert len({view.tunnel_id for view in run.views()}) == 2
    for port in (base, base + 1):
        assert (await http_get(port))[0] == 200


@pytest.mark.parametrize("named_first", [False, True], ids=["number-first", "name-first"])
async def test_a_port_named_and_numbered_is_one_tunnel(cluster: SimCluster, run_rules, named_first: bool) -> None:
    base = free_run(2)
    numbered = Rule(ResourceType.SERVICE, "web", 80, local_port=base, name="numbered")
    named = Rule(ResourceType.SERVICE, "web", "http", local_port=base, name="named")
    first, second = (named, numbered) if named_first else (numbered, named)
    run, events = await run_rules([first, second])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == first.name and e.local_port == base)
    # The service is listed now (the first tunnel resolved through it): applying the same rules
    # again decides with what the cache knows, and must keep one tunnel.
    await run.apply_rules([first, second])
    assert [view.rule.name for view in run.views()] == [first.name]
    assert (await http_get(base))[0] == 200
    assert not [e for e in events.seen if e.label == second.name]  # never started, never fell back
    # a different local port makes it a second tunnel for the same target
    other = Rule(ResourceType.SERVICE, "web", "http", local_port=base + 1, name="elsewhere")
    await run.apply_rules([first, second, other])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "elsewhere" and e.local_port == base + 1)
    assert [view.rule.name for view in run.views()] == [first.name, "elsewhere"]


async def test_a_port_name_the_service_does_not_have_is_a_tunnel_of_its_own(cluster: SimCluster, run_rules) -> None:
    base = free_run(2)
    numbered = Rule(ResourceType.SERVICE, "web", 80, local_port=base, name="numbered")
    named = Rule(ResourceType.SERVICE, "web", "admin", local_port=base, name="admin")
    # Held back until the services are listed, then started without anything else happening.
    _, events = await run_rules([numbered, named])
    fallback = await events.wait_for(EventKind.FALLBACK, lambda e: e.label == "admin")
    assert (fallback.requested_local_port, fallback.local_port) == (base, base + 1)
    waiting = await events.wait_for(EventKind.WAITING, lambda e: e.label == "admin")
    assert 'no port named "admin"' in waiting.message


async def test_a_held_back_rule_starts_when_the_services_cannot_be_listed(tmp_path: Path) -> None:
    from .conftest import SCENARIO, start_run

    async with SimCluster("refused", scenario=SCENARIO, token="right") as cluster:
        path = cluster.write_kubeconfig(tmp_path / "kc", context="sim", token="wrong")
        base = free_run(2)
        numbered = Rule(ResourceType.SERVICE, "web", 80, local_port=base, name="numbered")
        named = Rule(ResourceType.SERVICE, "web", "http", local_port=base, name="named")
        run, events = await start_run(path, [numbered, named])
        try:
            # Never listed, so never known to be one forward: it runs rather than stay hidden.
            fallback = await events.wait_for(EventKind.FALLBACK, lambda e: e.label == "named")
            assert fallback.local_port == base + 1
            assert [view.rule.name for view in run.views()] == ["numbered", "named"]
        finally:
            await run.stop()


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
