"""The supervisor with pinned contexts, driven directly: automatic forwarding follows only the
current context (a pinned one gains and loses it without touching its pinned tunnels), a pinned
context moved to another server starts again there, and pausing and restarting reach every context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import yaml

from trayapp.config.auto import AutoSettings
from trayapp.engine.events import EventBus
from trayapp.engine.kube.kubeconfig import EffectiveContext, set_current_context
from trayapp.engine.runtime import RunPlan
from trayapp.engine.supervisor import Supervisor
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim.kubeconfig import write_kubeconfig
from trayapp.sim.runner import Simulator

from .conftest import Events
from .test_context import skaffold_service
from .test_forwarding import http_get
from .test_pinned import two_clusters  # noqa: F401  (the fixture)


@contextlib.asynccontextmanager
async def supervised(
    path: Path, plan: RunPlan, pinned: Mapping[str, Sequence[Rule]]
) -> AsyncIterator[tuple[Supervisor, Events]]:
    events = Events()
    bus = EventBus()
    bus.subscribe(events)

    def plan_for(_effective: EffectiveContext) -> RunPlan:
        return plan

    supervisor = Supervisor([path], bus, plan_for, pinned_for=lambda: pinned)
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervisor.serve(stop))
    try:
        yield supervisor, events
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_pinned_context_gains_and_loses_automatic_forwarding_as_it_becomes_current(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory  # noqa: F811
) -> None:
    echo_port, auto_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    path = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    two_clusters["prod"].create(skaffold_service("auto-prod", "default", auto_port))
    echo = Rule(ResourceType.POD, "debug-shell", 7000, local_port=echo_port, name="prod-echo")
    async with supervised(path, RunPlan((), AutoSettings()), {"prod": [echo]}) as (supervisor, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "prod-echo")
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        assert not [e for e in events.seen if e.resource_name == "auto-prod"]  # prod is not current

        set_current_context([path], "prod")
        found = await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "auto-prod")
        assert found.context == "prod" and found.auto
        assert (await http_get(auto_port))[0] == 200
        writer.write(b"two")
        assert await reader.readexactly(3) == b"two"

        set_current_context([path], "dev")
        await events.wait_for(EventKind.STOPPED, lambda e: e.resource_name == "auto-prod")
        writer.write(b"three")
        assert await reader.readexactly(5) == b"three"
        writer.close()
        assert [e.label for e in events.of(EventKind.FORWARDING) if e.label == "prod-echo"] == ["prod-echo"]
        assert [v.rule.label for v in supervisor.views()] == ["prod-echo"]


async def test_a_pinned_context_moved_to_another_server_starts_again_there(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int  # noqa: F811
) -> None:
    dev, prod = two_clusters["dev"], two_clusters["prod"]
    path = write_kubeconfig(tmp_path / "kubeconfig", [dev.kubeconfig_entry("dev"), prod.kubeconfig_entry("prod")],
                            current="dev")
    web = Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port, name="prod-web")
    async with supervised(path, RunPlan(()), {"prod": [web]}) as (_, events):
        first = await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "prod-web")
        assert first.pod in prod.pod_names("default", "app=web")
        # The context "prod" now leads to the dev cluster: its tunnels stop and start there.
        write_kubeconfig(path, [dev.kubeconfig_entry("dev"), dev.kubeconfig_entry("prod")], current="dev")
        await events.wait_for(EventKind.STOPPED, lambda e: e.label == "prod-web")
        moved = await events.wait_for(
            EventKind.FORWARDING, lambda e: e.label == "prod-web" and e.pod in dev.pod_names("default", "app=web"))
        assert moved.context == "prod" and moved.local_port == unused_tcp_port
        assert (await http_get(unused_tcp_port))[1]["x-pod"] == moved.pod


async def test_pause_and_restart_reach_the_pinned_contexts(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory  # noqa: F811
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    path = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    web = Rule(ResourceType.SERVICE, "web", 80, local_port=web_port, name="web")
    echo = Rule(ResourceType.POD, "debug-shell", 7000, local_port=echo_port, name="prod-echo")
    async with supervised(path, RunPlan((web,)), {"prod": [echo]}) as (supervisor, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "web")
        started = await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "prod-echo")
        assert started.tunnel_id is not None
        await supervisor.set_paused(True)
        assert {(v.context, v.state.value) for v in supervisor.views()} == {("dev", "stopped"), ("prod", "stopped")}
        await supervisor.set_paused(False)
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "prod-echo" and e is not started)
        assert await supervisor.restart(started.tunnel_id)  # stops it and starts it on the same port

        def echo_starts() -> int:
            return sum(1 for e in events.of(EventKind.FORWARDING) if e.label == "prod-echo")

        again = await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "prod-echo" and echo_starts() == 3)
        assert again.local_port == echo_port
        assert sum(1 for e in events.of(EventKind.STOPPED) if e.label == "prod-echo") == 2
        await supervisor.set_enabled(started.tunnel_id, False)
        assert [v.state.value for v in supervisor.views() if v.context == "prod"] == ["stopped"]
        assert [v.context for v in supervisor.views()] == ["dev", "prod"]


async def test_a_pinned_context_whose_credentials_cannot_be_loaded_is_told_once(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory  # noqa: F811
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    path = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    data = yaml.safe_load(path.read_text())
    for user in data["users"]:
        if user["name"].startswith("prod"):
            user["user"] = {"tokenFile": str(tmp_path / "missing-token")}
    path.write_text(yaml.safe_dump(data))
    web = Rule(ResourceType.SERVICE, "web", 80, local_port=web_port, name="web")
    echo = Rule(ResourceType.POD, "debug-shell", 7000, local_port=echo_port, name="prod-echo")
    async with supervised(path, RunPlan((web,)), {"prod": [echo]}) as (supervisor, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "web")
        told = await events.wait_for(EventKind.FAILED, lambda e: e.context == "prod")
        assert told.message.startswith("Context prod is pinned in the rules file, but kubetray cannot use it: ")
        assert told.message.endswith("kubetray starts its tunnels once the context can be used.")
        await supervisor.reload_rules()  # tried again, not told again
        await supervisor.refresh()
        assert len([e for e in events.of(EventKind.FAILED) if e.context == "prod"]) == 1
        assert [v.context for v in supervisor.views()] == ["dev"]
        assert supervisor.problem is None  # the current context is fine
