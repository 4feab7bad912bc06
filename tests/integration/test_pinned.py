"""Pinned contexts against two simulated clusters: one kubeconfig with contexts dev and prod,
switched with the real `kubectl config use-context`. Pinned tunnels keep serving and keep their
open connections across switches; top-level rules follow the current context; a local port two
contexts want falls back with the usual notice; a pinned context leaving the kubeconfig stops and
comes back; pinning and unpinning in the rules file start and stop that context."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trayapp.control import Controller, EngineOptions, snapshot_json
from trayapp.engine.events import EventBus
from trayapp.engine.kube.kubeconfig import set_current_context
from trayapp.model import Event, EventKind
from trayapp.sim import SimCluster
from trayapp.sim.runner import Simulator
from trayapp.status import status_text

from .conftest import SCENARIO, Events
from .test_context import use_context
from .test_forwarding import http_get

KUBECTL = shutil.which("kubectl")


@pytest.fixture
async def two_clusters() -> AsyncIterator[Simulator]:
    sim = Simulator({"dev": SimCluster("dev", scenario=SCENARIO), "prod": SimCluster("prod", scenario=SCENARIO)})
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def controlled(kubeconfig: Path, rules_file: Path) -> AsyncIterator[tuple[Controller, Events]]:
    """The whole engine as the tray and --headless run it, following the real files."""
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


def rules(web_port: int, echo_port: int, pinned: str = "true", prod_web_port: int | None = None) -> str:
    """Top-level web (follows the current context); prod pins an echo pod and maybe its own web."""
    prod_web = ("\n      - {resourceType: service, resourceName: web, port: 80, "
                f"localPort: {prod_web_port}, name: prod-web}}" if prod_web_port else "")
    return f"""\
# top-level rules follow the current context
portForward:
  - {{resourceType: service, resourceName: web, port: 80, localPort: {web_port}, name: web}}
contexts:
  prod:
    pinned: {pinned}   # forward these whatever the current context is
    portForward:
      - {{resourceType: pod, resourceName: debug-shell, port: 7000, localPort: {echo_port}, name: prod-echo}}{prod_web}
"""


def labelled(label: str, context: str) -> object:
    return lambda e: e.label == label and e.context == context


def count(events: Events, kind: EventKind, label: str) -> int:
    return sum(1 for e in events.of(kind) if e.label == label)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload


async def serves_web_from(port: int, cluster: SimCluster, forwarding: Event) -> None:
    _, headers, _ = await http_get(port)
    assert headers["x-pod"] == forwarding.pod
    assert forwarding.pod in cluster.pod_names("default", "app=web")


@pytest.mark.skipif(KUBECTL is None, reason="needs the real kubectl to switch contexts")
async def test_pinned_tunnels_keep_their_connections_while_kubectl_switches_contexts(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    kubeconfig = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules(web_port, echo_port), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (controller, events):
        dev_web = await events.wait_for(EventKind.FORWARDING, labelled("web", "dev"))
        pinned = await events.wait_for(EventKind.FORWARDING, labelled("prod-echo", "prod"))
        assert pinned.local_port == echo_port
        assert pinned.pod in two_clusters["prod"].pod_names("default")
        await serves_web_from(web_port, two_clusters["dev"], dev_web)
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        await echo(reader, writer, b"before any switch")

        # To the pinned context: its run grows, the pinned tunnel is not restarted.
        await use_context(kubeconfig, "prod")
        switched = await events.wait_for(EventKind.CONTEXT, lambda e: e.context == "prod")
        assert switched.previous_context == "dev"
        assert switched.message.endswith(
            "kubetray stopped 1 tunnel and starts 2 for prod (1 of them pinned and already running) "
            "plus what automatic forwarding finds.")
        prod_web = await events.wait_for(EventKind.FORWARDING, labelled("web", "prod"))
        assert prod_web.local_port == web_port  # dev's listener was closed first
        await serves_web_from(web_port, two_clusters["prod"], prod_web)
        await echo(reader, writer, b"after switching to prod")
        assert {(v.rule.label, v.context) for v in controller.snapshot().tunnels} == {
            ("prod-echo", "prod"), ("web", "prod")}

        # Away from it again: the run shrinks to the pinned rules, the connection stays.
        await use_context(kubeconfig, "dev")
        back = await events.wait_for(EventKind.CONTEXT, lambda e: e.context == "dev")
        assert "keeps forwarding the 1 pinned tunnel of prod" in back.message
        await events.wait_for(EventKind.STOPPED, labelled("web", "prod"))
        dev_again = await events.wait_for(
            EventKind.FORWARDING, lambda e: e.label == "web" and e.context == "dev" and e is not dev_web)
        await serves_web_from(web_port, two_clusters["dev"], dev_again)
        await echo(reader, writer, b"after switching back to dev")
        writer.close()

        assert count(events, EventKind.FORWARDING, "prod-echo") == 1
        assert count(events, EventKind.STOPPED, "prod-echo") == 0
        assert all(e.context for e in events.seen), [e.message for e in events.seen if not e.context]


async def test_a_port_two_contexts_want_falls_back_for_the_later_one(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    kubeconfig = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules(web_port, echo_port, prod_web_port=web_port), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (controller, events):
        dev_web = await events.wait_for(EventKind.FORWARDING, labelled("web", "dev"))
        assert dev_web.local_port == web_port
        fallback = await events.wait_for(EventKind.FALLBACK, labelled("prod-web", "prod"))
        assert fallback.requested_local_port == web_port and fallback.local_port != web_port
        prod_web = await events.wait_for(EventKind.FORWARDING, labelled("prod-web", "prod"))
        await serves_web_from(web_port, two_clusters["dev"], dev_web)
        assert prod_web.local_port is not None
        await serves_web_from(prod_web.local_port, two_clusters["prod"], prod_web)

        answer = snapshot_json(controller.snapshot())
        assert answer["pinnedContexts"] == ["prod"]
        assert sorted((t["rule"], t["context"]) for t in answer["tunnels"]) == [
            ("prod-echo", "prod"), ("prod-web", "prod"), ("web", "dev")]
        text = status_text(answer)
        assert "context dev, namespace default" in text
        assert "pinned context prod" in text
        assert text.index("web") < text.index("pinned context prod") < text.index("prod-web")

        # prod becomes current: its pinned web wins over the top-level rule for the same target,
        # and keeps running on the port it fell back to.
        set_current_context([kubeconfig], "prod")
        await events.wait_for(EventKind.CONTEXT, lambda e: e.context == "prod")
        await events.wait_for(EventKind.STOPPED, labelled("web", "dev"))
        await serves_web_from(prod_web.local_port, two_clusters["prod"], prod_web)
        assert count(events, EventKind.FORWARDING, "prod-web") == 1
        assert [v.rule.label for v in controller.snapshot().tunnels] == ["prod-echo", "prod-web"]


async def test_a_pinned_context_leaving_the_kubeconfig_stops_and_comes_back(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    kubeconfig = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules(web_port, echo_port), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (_, events):
        await events.wait_for(EventKind.FORWARDING, labelled("prod-echo", "prod"))
        two_clusters["dev"].write_kubeconfig(kubeconfig, context="dev")  # prod's entry is gone
        gone = await events.wait_for(EventKind.FAILED, lambda e: e.context == "prod")
        assert gone.message.startswith("Context prod is pinned in the rules file, but the kubeconfig")
        assert "has no context of that name" in gone.message
        assert "stopped its 1 tunnel and starts them again" in gone.message
        await events.wait_for(EventKind.STOPPED, labelled("prod-echo", "prod"))
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", echo_port)

        two_clusters.write_kubeconfig(kubeconfig, current="dev")  # and back
        await events.wait_for(
            EventKind.FORWARDING, lambda e: e.label == "prod-echo" and count(events, EventKind.FORWARDING, "prod-echo") == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        await echo(reader, writer, b"back")
        writer.close()
        assert count(events, EventKind.FORWARDING, "web") == 1  # the current context never moved


async def test_pinning_and_unpinning_in_the_rules_file_starts_and_stops_the_context(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory
) -> None:
    web_port, echo_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    kubeconfig = two_clusters.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    rules_file = tmp_path / "config.yaml"
    rules_file.write_text(rules(web_port, echo_port, pinned="false"), encoding="utf-8")
    async with controlled(kubeconfig, rules_file) as (controller, events):
        await events.wait_for(EventKind.FORWARDING, labelled("web", "dev"))
        assert controller.snapshot().pinned_contexts == ()
        assert [v.context for v in controller.snapshot().tunnels] == ["dev"]

        rules_file.write_text(rules(web_port, echo_port, pinned="true"), encoding="utf-8")
        await events.wait_for(EventKind.FORWARDING, labelled("prod-echo", "prod"))
        assert controller.snapshot().pinned_contexts == ("prod",)

        rules_file.write_text(rules(web_port, echo_port, pinned="false"), encoding="utf-8")
        await events.wait_for(EventKind.STOPPED, labelled("prod-echo", "prod"))
        assert [v.context for v in controller.snapshot().tunnels] == ["dev"]
        assert count(events, EventKind.FORWARDING, "web") == 1  # the current context's tunnel stayed

        rules_file.write_text(rules(web_port, echo_port, pinned="maybe"), encoding="utf-8")
        problem = await events.wait_for(EventKind.FAILED, lambda e: e.context == "prod")
        assert f'{rules_file}:6: contexts["prod"].pinned: "pinned" must be true or false' in problem.message
        assert controller.snapshot().pinned_contexts == ()
