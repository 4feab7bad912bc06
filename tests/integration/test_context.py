"""Following the kubeconfig's current context: kubectl use-context, set-context --namespace, an
editor's rename-over, delete and recreate, garbage, KUBECONFIG with two files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml

from trayapp.engine.events import EventBus
from trayapp.engine.kubeconfig import EffectiveContext, set_current_context
from trayapp.engine.supervisor import Supervisor
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster
from trayapp.sim.runner import Simulator

from .conftest import SCENARIO, Events
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
async def supervised(paths: list[Path], rules_for: Callable[[EffectiveContext], list[Rule]]) -> AsyncIterator[tuple[Supervisor, Events]]:
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


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_set_context_namespace_restarts_and_unrelated_edits_do_not(
    two_clusters: Simulator, tmp_path: Path, unused_tcp_port: int
) -> None:
    path = tmp_path / "config"
    two_clusters.write_kubeconfig(path, current="dev")
    async with supervised([path], web_on(unused_tcp_port)) as (supervisor, events):
        await events.wait_for(EventKind.FORWARDING)
        await kubectl(str(path), "set-context", "--current", "--namespace", "team-a")
        changed = await events.wait_for(EventKind.CONTEXT)
        assert changed.namespace == "team-a" and changed.previous_context == changed.context == "dev"
        await events.wait_for(EventKind.FORWARDING, lambda e: len(events.of(EventKind.FORWARDING)) == 2)
        # an edit that leaves the effective context alone does nothing
        await kubectl(str(path), "set-context", "unrelated", "--cluster", "prod", "--user", "prod-user")
        await asyncio.sleep(0.5)
        assert len(events.of(EventKind.CONTEXT)) == 1
        assert supervisor.effective is not None and supervisor.effective.namespace == "team-a"


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
