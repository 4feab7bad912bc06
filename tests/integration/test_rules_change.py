"""Changing a running context's rules: unchanged tunnels keep their listener and connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from trayapp.control import Controller, EngineOptions
from trayapp.engine.events import EventBus
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster

from .conftest import Events
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


@contextlib.asynccontextmanager
async def controlled(kubeconfig: Path, rules_file: Path) -> AsyncIterator[tuple[Controller, Events]]:
    """The whole engine as the tray and --headless run it, following the real rules file."""
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    controller = Controller(EngineOptions((kubeconfig,), rules_path=rules_file), bus)
    stop = asyncio.Event()
    task = asyncio.ensure_future(controller.serve(stop))
    try:
        yield controller, events
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def rules_text(*entries: str) -> str:
    return "portForward:\n" + "".join(f"  - {entry}\n" for entry in entries)


async def test_a_rules_file_that_does_not_parse_keeps_the_last_good_rules(
    cluster: SimCluster, kubeconfig: Path, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port, api_port = (unused_tcp_port_factory() for _ in range(3))
    web = f"{{resourceType: service, resourceName: web, port: 80, localPort: {web_port}}}"
    echo = f"{{resourceType: pod, resourceName: debug-shell, port: 7000, localPort: {echo_port}}}"
    api = f"{{resourceType: statefulset, resourceName: api, port: 8000, localPort: {api_port}}}"
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules_text(web, echo), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (_, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == web_port)
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == echo_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"

        # Saved with one line indented wrong: not YAML any more.
        broken = (
            "portForward:\n"
            "  - resourceType: service\n"
            "    resourceName: web\n"
            "   port: 80\n"
        )
        rules_file.write_text(broken, encoding="utf-8")
        failed = await events.wait_for(EventKind.FAILED)
        assert f"{rules_file}:4" in failed.message
        assert failed.message.endswith(
            "kubetray keeps the 2 tunnels of the last good version until the file is fixed.")
        assert "skipped that rule" not in failed.message
        writer.write(b"during")  # the open connection and the listeners stay
        assert await reader.readexactly(6) == b"during"
        assert not events.of(EventKind.STOPPED)
        rules_file.write_text(broken + "\n", encoding="utf-8")  # saved again, still broken: not said again

        # Fixed, with the echo rule replaced: only that tunnel changes.
        rules_file.write_text(rules_text(web, api), encoding="utf-8")
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == api_port)
        await events.wait_for(EventKind.STOPPED, lambda e: e.local_port == echo_port)
        assert [e.local_port for e in events.of(EventKind.STOPPED)] == [echo_port]
        assert len(events.of(EventKind.FAILED)) == 1
        assert (await http_get(web_port))[0] == 200
        writer.close()


async def test_a_rule_level_problem_skips_just_that_rule(
    cluster: SimCluster, kubeconfig: Path, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    web = f"{{resourceType: service, resourceName: web, port: 80, localPort: {web_port}}}"
    echo = f"{{resourceType: pod, resourceName: debug-shell, port: 7000, localPort: {echo_port}}}"
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules_text(web, echo), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (_, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == web_port)
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == echo_port)
        rules_file.write_text(rules_text(web, echo.replace("resourceType: pod", "resourceType: pdo")),
                              encoding="utf-8")
        failed = await events.wait_for(EventKind.FAILED)
        assert f"{rules_file}:3" in failed.message and failed.message.endswith(
            "kubetray skipped that rule; the others work.")
        await events.wait_for(EventKind.STOPPED, lambda e: e.local_port == echo_port)
        assert [e.local_port for e in events.of(EventKind.STOPPED)] == [echo_port]
        assert (await http_get(web_port))[0] == 200


async def test_a_rules_file_broken_from_the_start_says_so_and_starts_once_fixed(
    cluster: SimCluster, kubeconfig: Path, tmp_path: Path, unused_tcp_port: int
) -> None:
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text("portForward:\n  - [\n", encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (_, events):
        failed = await events.wait_for(EventKind.FAILED)
        assert str(rules_file) in failed.message
        assert failed.message.endswith("kubetray starts the file's rules once it is fixed.")
        rules_file.write_text(
            rules_text(f"{{resourceType: service, resourceName: web, port: 80, localPort: {unused_tcp_port}}}"),
            encoding="utf-8")
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == unused_tcp_port)
