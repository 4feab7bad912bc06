"""Automatic rules against the simulator: Skaffold's services, annotated services, selectors;
resources appearing and disappearing; user rules winning; remembered ports across restarts; the
ports and addresses a cluster object may never take."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from trayapp.config.auto import AutoSettings, SelectorRule
from trayapp.engine.autoforward import AutoForwarder
from trayapp.engine.events import EventBus
from trayapp.engine.kube.auth import Credentials
from trayapp.engine.portmemory import PortKey, PortMemory
from trayapp.engine.runtime import ContextRun, RunPlan, Switches, tunnel_id
from trayapp.model import AutoSource, EventKind, ResourceType, Rule
from trayapp.selectors import parse_selector
from trayapp.sim import SimCluster

from .conftest import Events
from .test_forwarding import echo_roundtrip, http_get

SKAFFOLD = {"app.kubernetes.io/managed-by": "skaffold"}


async def start(kubeconfig: Path, plan: RunPlan, memory: PortMemory | None = None,
                switches: Switches | None = None) -> tuple[ContextRun, Events]:
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    credentials = Credentials([kubeconfig], None)
    access = await asyncio.to_thread(credentials.load)
    run = ContextRun(access, credentials, plan, bus, port_memory=memory, switches=switches)
    await run.start()
    return run, events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service(name: str, port: int, target: int | str, *, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"type": "ClusterIP", "selector": selector or {"app": "web"},
                     "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}]}}


async def test_skaffold_service_appears_forwards_and_disappears(cluster: SimCluster, kubeconfig: Path) -> None:
    port = free_port()
    run, events = await start(kubeconfig, RunPlan((), AutoSettings()))
    try:
        cluster.create(service("skaffold-web", port, 8080, labels=SKAFFOLD))
        forwarding = await events.wait_for(EventKind.FORWARDING)
        assert forwarding.resource_name == "skaffold-web" and forwarding.local_port == port
        # Every event of an automatic tunnel says so, and which source made it (--json too).
        assert (forwarding.auto, forwarding.source) == (True, AutoSource.SKAFFOLD)
        assert (forwarding.to_json()["auto"], forwarding.to_json()["source"]) == (True, "skaffold")
        assert (await http_get(port))[0] == 200
        cluster.remove_service("default", "skaffold-web")
        stopped = await events.wait_for(EventKind.STOPPED)
        assert stopped.local_port == port
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        await run.stop()


async def test_annotation_with_a_local_port(cluster: SimCluster, kubeconfig: Path) -> None:
    local = free_port()
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(annotation=True)))
    try:
        cluster.create(service("opted-in", 80, 8080, annotations={"kubetray.dev/forward": f"80:{local}"}))
        forwarding = await events.wait_for(EventKind.FORWARDING)
        assert (forwarding.resource_name, forwarding.local_port) == ("opted-in", local)
        assert forwarding.source == AutoSource.ANNOTATION
        assert (await http_get(local))[0] == 200
    finally:
        await run.stop()


async def test_selector_rule_on_pods(cluster: SimCluster, kubeconfig: Path) -> None:
    selector = SelectorRule(ResourceType.POD, None, parse_selector("app=debug"), "app=debug", (7000,))
    with socket.socket() as probe:
        busy_7000 = probe.connect_ex(("127.0.0.1", 7000)) == 0
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(skaffold=False, annotation=False, selectors=(selector,))))
    try:
        forwarding = await events.wait_for(EventKind.FORWARDING)
        assert forwarding.resource_name == "debug-shell"
        assert forwarding.local_port == 7000 or busy_7000
        assert forwarding.local_port is not None
        assert await echo_roundtrip(forwarding.local_port, b"auto") == b"auto"
    finally:
        await run.stop()


async def test_a_user_rule_and_an_automatic_rule_make_one_tunnel(cluster: SimCluster, kubeconfig: Path) -> None:
    port, user_port = free_port(), free_port()
    cluster.create(service("both", port, 8080, labels=SKAFFOLD))
    user = Rule(ResourceType.SERVICE, "both", port, local_port=user_port, name="mine")
    run, events = await start(kubeconfig, RunPlan((user,), AutoSettings()))
    try:
        await events.wait_for(EventKind.FORWARDING)
        await asyncio.sleep(0.3)  # let discovery run on the watched services
        assert len(run.forwarders) == 1
        (only,) = run.forwarders.values()
        assert (only.rule.name, only.local_port, only.rule.auto) == ("mine", user_port, False)
    finally:
        await run.stop()


async def test_remembered_port_comes_back_after_a_restart(cluster: SimCluster, kubeconfig: Path, tmp_path: Path) -> None:
    port = free_port()
    cluster.create(service("remember", port, 8080, labels=SKAFFOLD))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    memory_file = tmp_path / "state" / "ports.json"
    run, events = await start(kubeconfig, RunPlan((), AutoSettings()), PortMemory(memory_file))
    try:
        fallback = await events.wait_for(EventKind.FALLBACK)
        got = fallback.local_port
        assert got is not None and got != port
    finally:
        await run.stop()
    blocker.close()  # the service's own port is free again, but the bookmark is on the fallback
    run, events = await start(kubeconfig, RunPlan((), AutoSettings()), PortMemory(memory_file))
    try:
        again = await events.wait_for(EventKind.FORWARDING)
        assert again.local_port == got
        assert not events.of(EventKind.FALLBACK)
        assert (await http_get(got))[0] == 200
    finally:
        await run.stop()


async def test_all_namespaces_forbidden_falls_back_to_the_context_namespace(
    cluster: SimCluster, kubeconfig: Path
) -> None:
    cluster.settings.forbid_all_namespaces = True  # the user has Roles, no ClusterRole to list everything
    port = free_port()
    cluster.create(service("skaffold-web", port, 8080, labels=SKAFFOLD))
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(namespace="*")))
    try:
        told = await events.wait_for(EventKind.WAITING, lambda e: "all namespaces" in e.message)
        assert "'default'" in told.message
        forwarding = await events.wait_for(EventKind.FORWARDING)
        assert (forwarding.resource_name, forwarding.local_port) == ("skaffold-web", port)
        await asyncio.sleep(0.5)
        assert len([e for e in events.seen if "all namespaces" in e.message]) == 1
        assert not events.of(EventKind.FAILED)  # a 403 on "*" is not a credentials problem
    finally:
        await run.stop()


def debug_pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:debug",
                                     "ports": [{"name": "dlv", "containerPort": 8080, "protocol": "TCP"}]}]}}


async def test_debug_pod_and_annotated_pod_appear_and_disappear(cluster: SimCluster, kubeconfig: Path) -> None:
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(annotation=True)))
    try:
        cluster.create(debug_pod("debuggee", {"debug.cloud.google.com/config": '{"app":{"runtime":"go","ports":{"dlv":8080}}}'}))
        debug = await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "debuggee")
        assert debug.resource_type == ResourceType.POD and debug.port == 8080
        assert debug.local_port is not None and (await http_get(debug.local_port))[1]["x-pod"] == "debuggee"
        cluster.create(debug_pod("opted", {"kubetray.dev/forward": "true"}))
        opted = await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "opted")
        assert opted.local_port is not None and (await http_get(opted.local_port))[1]["x-pod"] == "opted"
        cluster.delete("pods", "default", "debuggee")
        await events.wait_for(EventKind.STOPPED, lambda e: e.resource_name == "debuggee")
        assert not [e for e in events.of(EventKind.STOPPED) if e.resource_name == "opted"]
    finally:
        await run.stop()


def debug_deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    template = debug_pod(name, {"debug.cloud.google.com/config": '{"app":{"runtime":"go","ports":{"dlv":8080}}}'})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": template["metadata"] | {"name": None}, "spec": template["spec"]}}}


async def test_a_debug_deployment_is_one_tunnel_that_outlives_its_pods(cluster: SimCluster, kubeconfig: Path,
                                                                       tmp_path: Path) -> None:
    # Skaffold debug's pods belong to a Deployment: the rule names it (`deploy/dbg dlv`), so its
    # replicas make one tunnel and a pod replaced is a reconnect on the same local port, which is
    # also the one remembered for next time.
    memory = PortMemory(tmp_path / "ports.json")
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(annotation=False)), memory)
    try:
        cluster.create(debug_deployment("dbg"))
        first = await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "dbg")
        assert (first.resource_type, first.label, first.source) == (ResourceType.DEPLOYMENT, "deploy/dbg dlv",
                                                                     AutoSource.DEBUG)
        assert first.local_port is not None and first.pod is not None
        assert (await http_get(first.local_port))[1]["x-pod"] == first.pod
        assert [f.rule.label for f in run.forwarders.values()] == ["deploy/dbg dlv"]
        replacement = cluster.delete_pod("default", first.pod)
        moved = await events.wait_for(EventKind.RECONNECTED, lambda e: e.old_pod == first.pod)
        assert moved.local_port == first.local_port and moved.pod != first.pod
        assert replacement is not None
        assert (await http_get(first.local_port))[1]["x-pod"] == moved.pod
        assert not events.of(EventKind.STOPPED)
        rule = next(iter(run.forwarders.values())).rule
        assert memory.get(PortKey.of(run.context, rule)) == first.local_port
    finally:
        await run.stop()


# ---- what a cluster object may never take ---------------------------------------------------


async def test_the_annotation_is_off_unless_asked_for(cluster: SimCluster, kubeconfig: Path) -> None:
    local = free_port()
    cluster.create(service("opted-in", 80, 8080, annotations={"kubetray.dev/forward": f"80:{local}"}))
    cluster.create(service("skaffold-web", free_port(), 8080, labels=SKAFFOLD))
    run, events = await start(kubeconfig, RunPlan((), AutoSettings()))
    try:
        await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "skaffold-web")
        assert [f.rule.resource_name for f in run.forwarders.values()] == ["skaffold-web"]
    finally:
        await run.stop()


async def test_a_cluster_object_never_takes_a_privileged_port(cluster: SimCluster, kubeconfig: Path) -> None:
    # Service port 80 asks for local port 80: refused even where this process could bind it
    # (root, macOS), as if it were busy, and the fallback event says why.
    cluster.create(service("skaffold-web", 80, 8080, labels=SKAFFOLD))
    run, events = await start(kubeconfig, RunPlan((), AutoSettings()))
    try:
        fallback = await events.wait_for(EventKind.FALLBACK)
        assert fallback.requested_local_port == 80
        assert fallback.local_port is not None and fallback.local_port >= 1024
        assert "80 is below 1024, which kubetray never gives to an automatic forward" in fallback.message
        assert (await http_get(fallback.local_port))[0] == 200
    finally:
        await run.stop()


async def test_a_cluster_object_never_takes_a_port_a_user_rule_names(cluster: SimCluster, kubeconfig: Path) -> None:
    # The user's rule for that port is stopped from the tray, so the port is free: still reserved.
    reserved = free_port()
    mine = Rule(ResourceType.SERVICE, "web", 80, local_port=reserved, name="mine")
    switches = Switches(disabled={tunnel_id("sim", mine)})
    cluster.create(service("opted-in", 80, 8080, annotations={"kubetray.dev/forward": f"80:{reserved}"}))
    run, events = await start(kubeconfig, RunPlan((mine,), AutoSettings(annotation=True)), switches=switches)
    try:
        fallback = await events.wait_for(EventKind.FALLBACK, lambda e: e.resource_name == "opted-in")
        assert fallback.requested_local_port == reserved and fallback.local_port != reserved
        assert f"{reserved} is named by one of your own rules" in fallback.message
        assert fallback.auto and fallback.source == AutoSource.ANNOTATION
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", reserved)) != 0  # nobody listens there
    finally:
        await run.stop()


def test_automatic_rules_listen_only_on_loopback_with_the_user_ports_reserved() -> None:
    asked = [Rule(ResourceType.SERVICE, "a", 8080, address="0.0.0.0", auto=True),
             Rule(ResourceType.SERVICE, "b", 8081, address="::1", auto=True),
             Rule(ResourceType.SERVICE, "c", 8082, address="192.168.1.5", auto=True)]
    user = [Rule(ResourceType.SERVICE, "x", 80, local_port=5432), Rule(ResourceType.SERVICE, "y", 8000),
            Rule(ResourceType.SERVICE, "z", "http")]  # a named port asks for no local port yet
    guarded = AutoForwarder.guard(asked, user)
    assert [rule.address for rule in guarded] == ["127.0.0.1", "::1", "127.0.0.1"]
    assert all(rule.reserved_ports == {5432, 8000} and rule.auto for rule in guarded)


async def test_a_user_rule_added_later_takes_its_port_back_from_an_automatic_tunnel(
    cluster: SimCluster, kubeconfig: Path
) -> None:
    wanted = free_port()
    cluster.create(service("opted-in", 80, 8080, annotations={"kubetray.dev/forward": f"80:{wanted}"}))
    run, events = await start(kubeconfig, RunPlan((), AutoSettings(annotation=True)))
    try:
        first = await events.wait_for(EventKind.FORWARDING, lambda e: e.resource_name == "opted-in")
        assert first.local_port == wanted
        # The user writes a rule for that port: the cluster object gives it up, the user gets it.
        mine = Rule(ResourceType.SERVICE, "web", 80, local_port=wanted, name="mine")
        await run.apply_rules([mine])
        moved = await events.wait_for(EventKind.FALLBACK, lambda e: e.resource_name == "opted-in")
        assert moved.local_port != wanted
        ours = await events.wait_for(EventKind.FORWARDING, lambda e: e.label == "mine")
        assert ours.local_port == wanted
    finally:
        await run.stop()
