"""Changing a running context's rules: unchanged tunnels keep their listener and connections."""

from __future__ import annotations

import asyncio
import socket

from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster

from .test_forwarding import echo_roundtrip, http_get


async def test_apply_rules_adds_and_removes_without_touching_the_rest(
    cluster: SimCluster, run_rules, unused_tcp_port_factory
) -> None:
    echo_port, web_port, api_port = (unused_tcp_port_factory() for _ in range(3))
    echo = Rule(ResourceType.POD, "debug-shell", 7000, local_port=echo_port)
    web = Rule(ResourceType.SERVICE, "web", 80, local_port=web_port)
    run, events = await run_rules([echo, web])
    await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == web_port)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == echo_port)

    reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)  # stays open across the change
    writer.write(b"before")
    assert await reader.readexactly(6) == b"before"

    api = Rule(ResourceType.STATEFULSET, "api", 8000, local_port=api_port)
    await run.apply_rules([echo, api])
    await events.wait_for(EventKind.STOPPED, lambda e: e.local_port == web_port)
    await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == api_port)
    assert (await http_get(api_port))[1]["x-pod"] == "api-0"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web_port)) != 0  # web's listener is closed

    writer.write(b"after")
    assert await reader.readexactly(5) == b"after"  # the echo tunnel was not restarted
    writer.close()
    assert not [e for e in events.of(EventKind.STOPPED) if e.local_port == echo_port]
    assert await echo_roundtrip(echo_port, b"still there") == b"still there"


async def test_refused_credentials_are_one_event_for_the_context(tmp_path, unused_tcp_port_factory) -> None:
    from .conftest import SCENARIO, start_run

    async with SimCluster("auth", scenario=SCENARIO, token="right") as cluster:
        path = cluster.write_kubeconfig(tmp_path / "kc", context="prod", token="wrong")
        rules = [Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port_factory()),
                 Rule(ResourceType.STATEFULSET, "api", 8000, local_port=unused_tcp_port_factory()),
                 Rule(ResourceType.POD, "debug-shell", 7000, local_port=unused_tcp_port_factory())]
        run, events = await start_run(path, rules)
        try:
            failed = await events.wait_for(EventKind.FAILED)
            assert "'prod'" in failed.message and "new credentials" in failed.message
            await asyncio.sleep(1.0)  # the informers retry with backoff meanwhile
            assert len(events.of(EventKind.FAILED)) == 1
            assert all(view.state.value == "failed" for view in run.views())
        finally:
            await run.stop()
