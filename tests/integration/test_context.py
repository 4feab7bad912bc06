"""Following the kubeconfig's current context: kubectl use-context, set-context --namespace, an
editor's rename-over, delete and recreate, garbage, KUBECONFIG with two files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from trayapp.config.auto import AutoSettings
from trayapp.engine.events import EventBus
from trayapp.engine.kube.kubeconfig import EffectiveContext, set_current_context
from trayapp.engine.runtime import RunPlan
from trayapp.engine.supervisor import Supervisor
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster
from trayapp.sim.runner import Simulator

from .conftest import SCENARIO, Events
from .test_forwarding import echo_roundtrip, http_get

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
async def supervised(
    paths: list[Path], rules_for: Callable[[EffectiveContext], Sequence[Rule] | RunPlan]
) -> AsyncIterator[tuple[Supervisor, Events]]:
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    supervisor = Supervisor(paths, bus, rules_for)
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervisor.serve(stop))
    try:
        yield supervisor, events
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def kubectl(kubeconfig: str, *args: str) -> None:
    """Run kubectl without blocking the loop: this kubectl build asks the API server (the simulator,
    served by this very loop) for its version before it edits the file."""
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "KUBECONFIG": kubeconfig}
    process = await asyncio.create_subprocess_exec(
        KUBECTL, "config", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()


async def use_context(path: Path, name: str) -> None:
    """As `kubectl config use-context` does; with the real kubectl where it is installed."""
    if KUBECTL:
        await kubectl(str(path), "use-context", name)
    else:
        set_current_context([path], name)


def web_on(port: int) -> Callable[[EffectiveContext], list[Rule]]:
    return lambda effective: [Rule(ResourceType.SERVICE, "web", 80, local_port=port, name=f"web@{effective.name}")]


async def test_use_context_switches_tunnels_on_the_same_port(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    async with supervised([path], web_on(unused_tcp_port)) as (_, events):
        dev = await events.wait_for(EventKind.FORWARDING)
        assert dev.context == "dev"
        assert (await http_get(unused_tcp_port))[1]["x-pod"] == dev.pod
        await use_context(path, "prod")
        switched = await events.wait_for(EventKind.CONTEXT)
        assert (switched.previous_context, switched.context) == ("dev", "prod")
        await events.wait_for(EventKind.STOPPED, lambda e: e.context == "dev")
        prod = await events.wait_for(EventKind.FORWARDING, lambda e: e.context == "prod")
        assert prod.local_port == unused_tcp_port  # the old listener was closed first
        assert (await http_get(unused_tcp_port))[1]["x-pod"] == prod.pod
        assert prod.pod in two_clusters["prod"].pod_names("default", "app=web")
        assert len(events.of(EventKind.CONTEXT)) == 1


def skaffold_service(name: str, namespace: str, port: int) -> dict[str, Any]:
    return {"kind": "Service",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "skaffold"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": port, "targetPort": 8080, "protocol": "TCP"}]}}


async def set_namespace(path: Path, namespace: str) -> None:
    """As `kubectl config set-context --current --namespace` does; with the real kubectl where it is."""
    if KUBECTL:
        await kubectl(str(path), "set-context", "--current", "--namespace", namespace)
        return
    data = yaml.safe_load(path.read_text())
    for entry in data["contexts"]:
        if entry["name"] == data["current-context"]:
            entry["context"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(data))


async def test_set_context_namespace_keeps_the_tunnels_and_moves_only_automatic_forwarding(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port_factory
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    web_port, echo_port, here, there = (unused_tcp_port_factory() for _ in range(4))
    dev = two_clusters["dev"]
    dev.create(skaffold_service("auto-here", "default", here))
    dev.create(skaffold_service("auto-there", "team-a", there))

    def plan(effective: EffectiveContext) -> RunPlan:
        rules = (Rule(ResourceType.SERVICE, "web", 80, local_port=web_port, name="web"),
                 Rule(ResourceType.POD, "debug-shell", 7000, local_port=echo_port, name="echo"))
        return RunPlan(rules, AutoSettings())

    async with supervised([path], plan) as (supervisor, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "web")
        await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "echo")
        await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "auto-here")
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"

        await set_namespace(path, "team-a")
        changed = await events.wait_for(EventKind.CONTEXT)
        assert changed.namespace == "team-a" and changed.previous_context == changed.context == "dev"
        assert changed.message.endswith(
            "kubetray keeps the 2 tunnels of your rules, each of which names its own namespace; "
            "automatic forwarding now looks in namespace 'team-a'.")
        # Automatic forwarding follows the namespace; the rules, which name their own, stay put.
        await events.wait_for(EventKind.STOPPED, lambda e: e.resource_name == "auto-here")
        await events.wait_for(EventKind.WAITING, lambda e: e.resource_name == "auto-there")
        assert [e.resource_name for e in events.of(EventKind.STOPPED)] == ["auto-here"]
        writer.write(b"after")  # the connection opened before the edit still works
        assert await reader.readexactly(5) == b"after"
        writer.close()
        assert (await http_get(web_port))[0] == 200
        assert supervisor.effective is not None and supervisor.effective.namespace == "team-a"

        # an edit that leaves the effective context alone does nothing
        if KUBECTL:
            await kubectl(str(path), "set-context", "unrelated", "--cluster", "prod", "--user", "prod-user")
            await asyncio.sleep(0.5)
            assert len(events.of(EventKind.CONTEXT)) == 1


async def test_automatic_forwarding_with_its_own_namespace_stays_when_the_context_namespace_changes(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    two_clusters["dev"].create(skaffold_service("auto-here", "default", unused_tcp_port))
    async with supervised([path], lambda _: RunPlan((), AutoSettings(namespace="default"))) as (_, events):
        await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "auto-here")
        await set_namespace(path, "team-a")
        changed = await events.wait_for(EventKind.CONTEXT)
        assert changed.message.endswith("kubetray keeps its 1 tunnel: each rule names its own namespace.")
        assert (await http_get(unused_tcp_port))[0] == 200
        await set_namespace(path, "default")  # back again: a second event, still nothing stopped
        await events.wait_for(EventKind.CONTEXT, lambda e: e.namespace == "default")
        assert not events.of(EventKind.STOPPED)


async def test_another_user_for_the_context_is_still_a_switch(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    async with supervised([path], web_on(unused_tcp_port)) as (_, events):
        await events.wait_for(EventKind.FORWARDING)
        data = yaml.safe_load(path.read_text())
        for entry in data["contexts"]:
            if entry["name"] == "dev":
                entry["context"]["user"] = "prod-user"
        path.write_text(yaml.safe_dump(data))
        switched = await events.wait_for(EventKind.CONTEXT)
        assert "its cluster, user or namespace changed" in switched.message
        await events.wait_for(EventKind.STOPPED)
        await events.wait_for(EventKind.FORWARDING, lambda e: len(events.of(EventKind.FORWARDING)) == 2)


async def test_a_token_rewritten_in_place_keeps_the_tunnels_and_new_connections_use_it(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    async with SimCluster("tokens", scenario=SCENARIO, token="first") as cluster:
        path = cluster.write_kubeconfig(tmp_path / "config", context="dev", token="first")
        refreshed = asyncio.Condition()

        async def tell() -> None:
            async with refreshed:
                refreshed.notify_all()

        events = Events()
        bus = EventBus()
        bus.subscribe(events)
        rule = Rule(ResourceType.POD, "debug-shell", 7000, local_port=unused_tcp_port, name="echo")
        supervisor = Supervisor([path], bus, lambda _: [rule],
                                on_change=lambda: asyncio.get_running_loop().create_task(tell()))
        stop = asyncio.Event()
        task = asyncio.ensure_future(supervisor.serve(stop))
        try:
            await events.wait_for(EventKind.FORWARDING)
            reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"
            assert supervisor.effective is not None
            before = supervisor.effective.fingerprint

            # An auth provider refreshes the token: the cluster takes only the new one now, and the
            # kubeconfig is rewritten in place (same file, not renamed over).
            cluster.set_token("second")
            text = path.read_text().replace("first", "second")
            with path.open("r+", encoding="utf-8") as handle:
                handle.write(text)
                handle.truncate()
            async with refreshed:
                await asyncio.wait_for(refreshed.wait_for(
                    lambda: supervisor.effective is not None and supervisor.effective.fingerprint != before), 15)

            assert await echo_roundtrip(unused_tcp_port, b"new connection") == b"new connection"
            writer.write(b"after")  # the connection opened with the old token is still there
            assert await reader.readexactly(5) == b"after"
            writer.close()
            assert not events.of(EventKind.STOPPED) and not events.of(EventKind.CONTEXT)
            assert not events.of(EventKind.FAILED)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def test_context_flag_naming_a_missing_context_says_the_flag_is_wrong(
    two_clusters: Simulator, tmp_path: Path
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    supervisor = Supervisor([path], bus, lambda _: [], pinned_context="nope")
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervisor.serve(stop))
    try:
        failed = await events.wait_for(EventKind.FAILED)
        assert failed.message.startswith(
            f"The context 'nope' named by --context does not exist in the kubeconfig {path} "
            "(it has: dev, prod).")
        assert "once the file is fixed" not in failed.message
        assert "--context set to one of those" in failed.message
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_editor_rename_over_and_delete_then_recreate(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    original = path.read_text()
    async with supervised([path], web_on(unused_tcp_port)) as (_, events):
        await events.wait_for(EventKind.FORWARDING)
        # an editor writes a new file and renames it over the old one
        data = yaml.safe_load(original)
        data["current-context"] = "prod"
        temp = tmp_path / ".config.swp"
        temp.write_text(yaml.safe_dump(data))
        os.replace(temp, path)
        await events.wait_for(EventKind.CONTEXT, lambda e: e.context == "prod")
        # deleted: one clear failure, the prod tunnels keep running
        path.unlink()
        failed = await events.wait_for(EventKind.FAILED)
        assert str(path) in failed.message and "keeps the current tunnels" in failed.message
        assert (await http_get(unused_tcp_port))[0] == 200
        # recreated with dev current: back to dev
        path.write_text(original)
        back = await events.wait_for(EventKind.CONTEXT, lambda e: e.context == "dev")
        assert back.previous_context == "prod"
        await events.wait_for(EventKind.FORWARDING, lambda e: e.context == "dev" and e.local_port == unused_tcp_port)


async def test_garbage_is_one_failure_and_fixing_it_recovers_without_a_switch(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    good = path.read_text()
    async with supervised([path], web_on(unused_tcp_port)) as (_, events):
        await events.wait_for(EventKind.FORWARDING)
        path.write_text("clusters: [ {{{ garbage")
        failed = await events.wait_for(EventKind.FAILED)
        assert str(path) in failed.message and "YAML" in failed.message
        path.write_text("clusters: [ {{{ garbage, again")  # a second bad write: no second message for it
        path.write_text(good)
        await asyncio.sleep(0.5)
        assert (await http_get(unused_tcp_port))[0] == 200
        assert not events.of(EventKind.CONTEXT)  # same effective context as before: nothing to do
        assert len([e for e in events.of(EventKind.FAILED) if "garbage" in e.message or "YAML" in e.message]) <= 2


async def test_kubeconfig_variable_with_two_files(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    """Clusters and users in one file, current-context in another, as KUBECONFIG=a:b merges them."""
    full = tmp_path / "full"
    two_clusters.write_kubeconfig(full, current="dev")
    data = yaml.safe_load(full.read_text())
    first = tmp_path / "a" / "current"
    first.parent.mkdir()
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "dev"}))
    second = tmp_path / "b" / "clusters"
    second.parent.mkdir()
    del data["current-context"]
    second.write_text(yaml.safe_dump(data))
    async with supervised([first, second], web_on(unused_tcp_port)) as (_, events):
        dev = await events.wait_for(EventKind.FORWARDING)
        assert dev.context == "dev"
        if KUBECTL:
            await kubectl(f"{first}{os.pathsep}{second}", "use-context", "prod")
        else:
            set_current_context([first, second], "prod")
        assert yaml.safe_load(first.read_text())["current-context"] == "prod"  # written where it was set
        await events.wait_for(EventKind.FORWARDING, lambda e: e.context == "prod")
